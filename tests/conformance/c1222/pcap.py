"""A minimal pcap reader for the conformance tests: classic pcap, Ethernet or
Linux SLL, IPv4/IPv6, TCP and UDP payloads per direction, in capture order."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113


@dataclass(frozen=True)
class Segment:
    src: tuple[str, int]
    dst: tuple[str, int]
    transport: str  # "tcp" or "udp"
    payload: bytes


def _ip_payload(frame: bytes, linktype: int) -> bytes | None:
    if linktype == LINKTYPE_ETHERNET:
        ethertype, offset = struct.unpack("!H", frame[12:14])[0], 14
    elif linktype == LINKTYPE_LINUX_SLL:
        ethertype, offset = struct.unpack("!H", frame[14:16])[0], 16
    else:
        raise ValueError(f"unsupported pcap link type {linktype}")
    if ethertype not in (0x0800, 0x86DD):
        return None
    return frame[offset:]


def segments(path: Path) -> Iterator[Segment]:
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path.name}: not a classic pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[pos + 8:pos + 12])[0]
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ip = _ip_payload(frame, linktype)
        if ip is None:
            continue
        if ip[0] >> 4 == 4:
            header = (ip[0] & 0x0F) * 4
            proto = ip[9]
            total = struct.unpack("!H", ip[2:4])[0]
            src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
            body = ip[header:total]
        else:
            proto = ip[6]
            length = struct.unpack("!H", ip[4:6])[0]
            src, dst = ip[8:24].hex(), ip[24:40].hex()
            body = ip[40:40 + length]
        if proto == 6:
            sport, dport = struct.unpack("!HH", body[:4])
            payload = body[(body[12] >> 4) * 4:]
            transport = "tcp"
        elif proto == 17:
            sport, dport = struct.unpack("!HH", body[:4])
            payload = body[8:]
            transport = "udp"
        else:
            continue
        if payload:
            yield Segment((src, sport), (dst, dport), transport, payload)


def streams(path: Path) -> dict[tuple[tuple[str, int], tuple[str, int]], bytes]:
    """Concatenated payload per (src, dst) direction, in capture order (captures are in order)."""
    out: dict[tuple[tuple[str, int], tuple[str, int]], bytes] = {}
    for seg in segments(path):
        out[(seg.src, seg.dst)] = out.get((seg.src, seg.dst), b"") + seg.payload
    return out
