"""A-XDR encoding of COSEM data (IEC 61334-6, DLMS UA Green Book 9.5).

Decoded data keeps its type tag (:class:`Data`), so ``encode(decode(x)) == x``.
Every length claim is checked against the bytes that remain before anything is
allocated, and nesting is capped, so garbage ends in :class:`DlmsProtocolError`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from adapters.dlms.errors import DlmsFrameTooLarge, DlmsProtocolError

# Deeper nesting than any COSEM attribute needs is garbage (and would exhaust the stack).
MAX_DEPTH = 16


class Tag(enum.IntEnum):
    NULL = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    BCD = 13
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    FLOAT32 = 23
    FLOAT64 = 24
    DATE_TIME = 25
    DATE = 26
    TIME = 27


# tag -> (size in bytes, signed)
INTEGER_TAGS: dict[Tag, tuple[int, bool]] = {
    Tag.DOUBLE_LONG: (4, True),
    Tag.DOUBLE_LONG_UNSIGNED: (4, False),
    Tag.BCD: (1, True),
    Tag.INTEGER: (1, True),
    Tag.LONG: (2, True),
    Tag.UNSIGNED: (1, False),
    Tag.LONG_UNSIGNED: (2, False),
    Tag.LONG64: (8, True),
    Tag.LONG64_UNSIGNED: (8, False),
    Tag.ENUM: (1, False),
}
# Types carried as raw bytes of a fixed size (floats are never used for energy here).
FIXED_BYTES_TAGS: dict[Tag, int] = {Tag.FLOAT32: 4, Tag.FLOAT64: 8, Tag.DATE_TIME: 12, Tag.DATE: 5, Tag.TIME: 4}

DataValue = None | bool | int | bytes | str | tuple["Data", ...]


@dataclass(frozen=True, slots=True)
class Data:
    """One typed COSEM value. ``value`` is None (null), bool, int, bytes (octet string,
    floats, date-time), str (visible / UTF-8 string, bit string as '0'/'1' digits) or a
    tuple of Data (array, structure)."""

    tag: Tag
    value: DataValue = None

    @property
    def items(self) -> tuple[Data, ...]:
        if not isinstance(self.value, tuple):
            raise DlmsProtocolError(f"expected array or structure, got {self.tag.name}", reason="DLMS_BAD_VALUE")
        return self.value

    @property
    def integer(self) -> int:
        if self.tag not in INTEGER_TAGS or isinstance(self.value, bool) or not isinstance(self.value, int):
            raise DlmsProtocolError(f"expected an integer type, got {self.tag.name}", reason="DLMS_BAD_VALUE")
        return self.value

    @property
    def octets(self) -> bytes:
        if not isinstance(self.value, bytes):
            raise DlmsProtocolError(f"expected an octet string, got {self.tag.name}", reason="DLMS_BAD_VALUE")
        return self.value


def null() -> Data:
    return Data(Tag.NULL)


def array(*items: Data) -> Data:
    return Data(Tag.ARRAY, tuple(items))


def structure(*items: Data) -> Data:
    return Data(Tag.STRUCTURE, tuple(items))


def octet_string(value: bytes) -> Data:
    return Data(Tag.OCTET_STRING, bytes(value))


def integer(tag: Tag, value: int) -> Data:
    return Data(tag, value)


def boolean(value: bool) -> Data:
    return Data(Tag.BOOLEAN, value)


# ---------------------------------------------------------------- lengths


def encode_length(length: int) -> bytes:
    """A-XDR length: one byte below 128, else 0x80 | n followed by n big-endian bytes."""
    if length < 0:
        raise DlmsProtocolError(f"negative length {length}", remote=False, reason="DLMS_BAD_VALUE")
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    if size > 4:
        raise DlmsFrameTooLarge(f"length {length} does not fit in 4 bytes", remote=False)
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def decode_length(buf: bytes, pos: int) -> tuple[int, int]:
    """Returns (length, position after it). Raises when it claims more than ``buf`` holds."""
    if pos >= len(buf):
        raise DlmsProtocolError("truncated length", reason="DLMS_TRUNCATED")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 4:
            raise DlmsProtocolError(f"length of {size} bytes", reason="DLMS_BAD_LENGTH")
        if pos + size > len(buf):
            raise DlmsProtocolError("truncated length", reason="DLMS_TRUNCATED")
        length = int.from_bytes(buf[pos:pos + size], "big")
        pos += size
    return length, pos


# ---------------------------------------------------------------- encode


def encode(data: Data) -> bytes:
    out = bytearray()
    _encode_into(data, out)
    return bytes(out)


def _encode_into(data: Data, out: bytearray) -> None:
    tag = data.tag
    value = data.value
    out.append(tag)
    if tag is Tag.NULL:
        return
    if tag in (Tag.ARRAY, Tag.STRUCTURE):
        items = data.items
        out += encode_length(len(items))
        for item in items:
            _encode_into(item, out)
        return
    if tag is Tag.BOOLEAN:
        out.append(0x01 if value else 0x00)
        return
    if tag in INTEGER_TAGS:
        size, signed = INTEGER_TAGS[tag]
        try:
            out += data.integer.to_bytes(size, "big", signed=signed)
        except OverflowError as exc:
            raise DlmsProtocolError(f"{value!r} does not fit {tag.name}", remote=False,
                                    reason="DLMS_BAD_VALUE") from exc
        return
    if tag in FIXED_BYTES_TAGS:
        raw = data.octets
        if len(raw) != FIXED_BYTES_TAGS[tag]:
            raise DlmsProtocolError(f"{tag.name} needs {FIXED_BYTES_TAGS[tag]} bytes", remote=False,
                                    reason="DLMS_BAD_VALUE")
        out += raw
        return
    if tag is Tag.OCTET_STRING:
        raw = data.octets
        out += encode_length(len(raw))
        out += raw
        return
    if tag in (Tag.VISIBLE_STRING, Tag.UTF8_STRING):
        if not isinstance(value, str):
            raise DlmsProtocolError(f"{tag.name} needs str", remote=False, reason="DLMS_BAD_VALUE")
        raw = value.encode("ascii" if tag is Tag.VISIBLE_STRING else "utf-8")
        out += encode_length(len(raw))
        out += raw
        return
    if tag is Tag.BIT_STRING:
        if not isinstance(value, str) or set(value) - {"0", "1"}:
            raise DlmsProtocolError("bit string needs '0'/'1' digits", remote=False, reason="DLMS_BAD_VALUE")
        out += encode_length(len(value))
        padded = value + "0" * (-len(value) % 8)
        out += int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""
        return
    raise DlmsProtocolError(f"cannot encode {tag!r}", remote=False, reason="DLMS_BAD_VALUE")


# ---------------------------------------------------------------- decode


def decode(buf: bytes) -> Data:
    """Decode exactly one value that fills ``buf``."""
    data, pos = decode_prefix(buf, 0)
    if pos != len(buf):
        raise DlmsProtocolError(f"{len(buf) - pos} trailing bytes after data", reason="DLMS_TRAILING_BYTES")
    return data


def decode_prefix(buf: bytes, pos: int = 0) -> tuple[Data, int]:
    """Decode one value starting at ``pos``; returns it and the position after it."""
    return _decode(bytes(buf), pos, 0)


def _take(buf: bytes, pos: int, size: int) -> bytes:
    if size > len(buf) - pos:
        raise DlmsProtocolError(f"claims {size} bytes, {len(buf) - pos} remain", reason="DLMS_TRUNCATED")
    return buf[pos:pos + size]


def _decode(buf: bytes, pos: int, depth: int) -> tuple[Data, int]:
    if pos >= len(buf):
        raise DlmsProtocolError("truncated data", reason="DLMS_TRUNCATED")
    raw_tag = buf[pos]
    pos += 1
    try:
        tag = Tag(raw_tag)
    except ValueError:
        raise DlmsProtocolError(f"unknown data tag {raw_tag}", reason="DLMS_UNKNOWN_TAG") from None
    if tag is Tag.NULL:
        return Data(tag), pos
    if tag in (Tag.ARRAY, Tag.STRUCTURE):
        if depth >= MAX_DEPTH:
            raise DlmsProtocolError("data nested too deeply", reason="DLMS_TOO_DEEP")
        count, pos = decode_length(buf, pos)
        # Each element takes at least one byte: a larger count is a lie, refused before the loop.
        if count > len(buf) - pos:
            raise DlmsProtocolError(f"{tag.name} claims {count} elements, {len(buf) - pos} bytes remain",
                                    reason="DLMS_TRUNCATED")
        items = []
        for _ in range(count):
            item, pos = _decode(buf, pos, depth + 1)
            items.append(item)
        return Data(tag, tuple(items)), pos
    if tag is Tag.BOOLEAN:
        return Data(tag, _take(buf, pos, 1)[0] != 0), pos + 1
    if tag in INTEGER_TAGS:
        size, signed = INTEGER_TAGS[tag]
        return Data(tag, int.from_bytes(_take(buf, pos, size), "big", signed=signed)), pos + size
    if tag in FIXED_BYTES_TAGS:
        size = FIXED_BYTES_TAGS[tag]
        return Data(tag, _take(buf, pos, size)), pos + size
    length, pos = decode_length(buf, pos)
    if tag is Tag.BIT_STRING:
        raw = _take(buf, pos, (length + 7) // 8)
        bits = "".join(format(b, "08b") for b in raw)[:length]
        return Data(tag, bits), pos + len(raw)
    raw = _take(buf, pos, length)
    pos += length
    if tag is Tag.OCTET_STRING:
        return Data(tag, raw), pos
    try:
        text = raw.decode("ascii" if tag is Tag.VISIBLE_STRING else "utf-8")
    except UnicodeDecodeError as exc:
        raise DlmsProtocolError(f"undecodable {tag.name}", reason="DLMS_BAD_VALUE") from exc
    return Data(tag, text), pos


def float_value(data: Data) -> float:
    """Floats are decoded for display only; energy never goes through here."""
    fmt = {Tag.FLOAT32: ">f", Tag.FLOAT64: ">d"}.get(data.tag)
    if fmt is None:
        raise DlmsProtocolError(f"expected a float, got {data.tag.name}", reason="DLMS_BAD_VALUE")
    return float(struct.unpack(fmt, data.octets)[0])
