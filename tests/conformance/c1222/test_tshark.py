"""Adapter <-> simulator traffic, written to pcap with text2pcap and dissected by tshark.

Any malformed packet, expert error/warning or failed MAC in Wireshark's C12.22
dissector fails the test; tshark must be installed (Debian package), never skipped.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.c1222 import create_adapter
from adapters.c1222.codec import KeyRing, apdu_length, decode_apdu
from simulators.c1222.meter import FaultRates, MeterSpec
from simulators.c1222.server import FleetConfig, FleetServer
from tests.support.recording_port import RecordingPort

START = datetime(2024, 3, 1, tzinfo=UTC)
NOW = START + timedelta(days=1, hours=3)
KEY_ID = 3
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install tshark (provides {name})")
    return path


class RecordingProxy:
    """A TCP proxy that records every APDU and its direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.apdus: list[tuple[bool, bytes]] = []  # (to meter?, bytes)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RecordingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to_meter: bool) -> None:
        buffer = b""
        while data := await reader.read(65536):
            buffer += data
            while (size := apdu_length(buffer)) is not None and size <= len(buffer):
                self.apdus.append((to_meter, buffer[:size]))
                buffer = buffer[size:]
            writer.write(data)
            await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pump(reader, up_writer, True), self._pump(up_reader, writer, False))
        await up_writer.wait_closed()
        await writer.wait_closed()


def write_pcap(apdus: list[tuple[bool, bytes]], path: Path) -> None:
    """One TCP segment per APDU (meter port 1153) via text2pcap."""
    lines = []
    for to_meter, apdu in apdus:
        lines.append("I" if to_meter else "O")
        lines.extend(f"{i:06x} " + " ".join(f"{b:02x}" for b in apdu[i:i + 16]) for i in range(0, len(apdu), 16))
    text = path.with_suffix(".txt")
    text.write_text("\n".join(lines) + "\n")
    subprocess.run([_tool("text2pcap"), "-q", "-D", "-4", "10.0.0.1,10.0.0.2", "-T", "40000,1153", str(text),
                    str(path)], check=True, capture_output=True)


def dissect(path: Path, config_home: Path) -> tuple[list[dict[str, object]], str]:
    env = {"XDG_CONFIG_HOME": str(config_home), "HOME": str(config_home), "PATH": "/usr/bin:/bin"}
    args = [_tool("tshark"), "-r", str(path), "-d", "tcp.port==1153,c1222", "-o", "c1222.decrypt:TRUE",
            "-o", "c1222.baseoid:2.16.124.113620.1.22.0"]
    packets = json.loads(subprocess.run([*args, "-T", "json"], check=True, capture_output=True, env=env).stdout)
    expert = subprocess.run([*args, "-q", "-z", "expert"], check=True, capture_output=True, env=env,
                            text=True).stdout
    return packets, expert


@pytest.fixture
async def traffic() -> AsyncIterator[list[tuple[bool, bytes]]]:
    spec = MeterSpec(lp_start=START, faults=FaultRates(gap=0.02, power_fail=0.02, overflow=0.01))
    config = FleetConfig(3, spec, lambda: NOW, KeyRing({KEY_ID: KEY}), b"secret")
    async with FleetServer(config, "127.0.0.1", 0) as server, RecordingProxy(server.port) as proxy:
        runs = [{}, {"security_mode": "authenticated", "key_id": KEY_ID, "key": KEY.hex()},
                {"security_mode": "ciphered", "key_id": KEY_ID, "key": KEY.hex()}]
        for extra in runs:
            adapter = create_adapter("conf", {"type": "c1222", "fleet": {"port": proxy.port, "count": 3},
                                              "password": "secret", "concurrency": 1, "read_chunk_bytes": 400,
                                              **extra}, RecordingPort())
            adapter.clock = lambda: NOW
            outcome = await adapter.poll_once()
            assert outcome.meters_read == 3
        yield proxy.apdus


def _fields(node: object, out: dict[str, list[object]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.setdefault(key, []).append(value)
            _fields(value, out)
    elif isinstance(node, list):
        for item in node:
            _fields(item, out)


async def test_tshark_dissects_our_traffic_cleanly(traffic: list[tuple[bool, bytes]], tmp_path: Path) -> None:
    assert len(traffic) > 20
    config = tmp_path / "wireshark"
    config.mkdir()
    # Wireshark's UAT: key number in hex (quoted), key bytes as bare hex
    (config / "c1222_decryption_table").write_text(f'"{KEY_ID:x}",{KEY.hex()}\n')
    pcap = tmp_path / "c1222.pcap"
    write_pcap(traffic, pcap)
    packets, expert = dissect(pcap, tmp_path)
    assert len(packets) == len(traffic)
    for packet in packets:
        fields: dict[str, list[object]] = {}
        _fields(packet["_source"]["layers"], fields)  # type: ignore[index]
        assert "c1222" in fields, "tshark did not dissect a frame as C12.22"
        assert "_ws.malformed" not in fields, f"tshark: malformed packet {packet}"
        assert "_ws.expert" not in fields, f"tshark expert info: {fields.get('_ws.expert')}"
        assert "c1222.calling_AP_invocation_id" in fields
        if "c1222.epsem.mac" in fields:
            assert fields["c1222.crypto_good"] == ["1"], "Wireshark's EAX' check disagrees with ours"
    for severity in ("Errors", "Warns"):
        assert severity not in expert, expert
    secured = sum(1 for _, apdu in traffic if decode_apdu(apdu).user_information[0] & 0x0C)
    assert secured > 0
    assert sum(1 for p in packets if "c1222.epsem.mac" in json.dumps(p)) == secured
