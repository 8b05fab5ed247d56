"""ANSI C12.19 standard tables the adapter reads, encoded and decoded. Pure.

Table contents follow ST0's DATA_ORDER (most meters are little-endian) while
the C12.22 service fields around them are big-endian. Load profile blocks are
decoded a whole read at a time with numpy structured arrays.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from adapters.c1222.errors import TableError, UnsupportedFormat

ST_GEN_CONFIG = 0
ST_GENERAL_MFG_ID = 1
ST_ED_MODE_STATUS = 3
ST_DEVICE_IDENT = 5
ST_ACT_REGS = 21
ST_DATA_SELECTION = 22
ST_CURRENT_REG_DATA = 23
ST_CLOCK = 52
ST_DIM_LP = 60
ST_ACT_LP = 61
ST_LP_CTRL = 62
ST_LP_STATUS = 63
ST_LP_DATA_SET1 = 64

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ByteOrder = Literal["little", "big"]


class _Reader:
    """Cursor over table bytes with the table's byte order; short data raises TableError."""

    __slots__ = ("data", "order", "pos", "what")

    def __init__(self, data: bytes, order: ByteOrder, what: str) -> None:
        self.data = data
        self.order: ByteOrder = order
        self.pos = 0
        self.what = what

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise TableError(f"{self.what}: needs {self.pos + size} bytes, got {len(self.data)}")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), self.order)

    def sint(self, size: int) -> int:
        return int.from_bytes(self.take(size), self.order, signed=True)


def _u(value: int, size: int, order: ByteOrder) -> bytes:
    return value.to_bytes(size, order)


def _text(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip(" \x00")


def _fixed_text(value: str, size: int) -> bytes:
    return value.encode("latin-1")[:size].ljust(size, b" ")


# --------------------------------------------------------------------------- ST0

class TimeFormat(enum.IntEnum):
    NONE = 0
    BCD = 1
    UINT8 = 2
    UINT32_MINUTES = 3
    UINT32_SECONDS = 4


class NiFormat(enum.IntEnum):
    """NI_FMAT codes (FORMAT_CONTROL_3); only the exact integer ones are decodable."""

    FLOAT64 = 0
    FLOAT32 = 1
    FLOAT_CHAR12 = 2
    FLOAT_CHAR6 = 3
    INT32_DIV10000 = 4
    FIXED_BCD6 = 5
    FIXED_BCD4 = 6
    INT24 = 7
    INT32 = 8
    INT40 = 9
    INT48 = 10
    INT64 = 11
    FIXED_BCD8 = 12
    FLOAT_CHAR21 = 13


_NI_SIZES = {NiFormat.INT32_DIV10000: 4, NiFormat.INT24: 3, NiFormat.INT32: 4, NiFormat.INT40: 5,
             NiFormat.INT48: 6, NiFormat.INT64: 8}


def ni_size(fmt: int) -> int:
    try:
        return _NI_SIZES[NiFormat(fmt)]
    except (ValueError, KeyError):
        raise UnsupportedFormat(f"NI format {fmt} is not an exact integer format") from None


def ni_decimal_exponent(fmt: int) -> int:
    """Power of ten the raw NI integer is scaled by (INT32 with 4 implied decimals is -4)."""
    return -4 if fmt == NiFormat.INT32_DIV10000 else 0


@dataclass(frozen=True, slots=True)
class GenConfig:
    """ST0 GEN_CONFIG_TBL (fixed part, and the tables-used sets)."""

    data_order_msb_first: bool = False
    char_format: int = 1
    time_format: TimeFormat = TimeFormat.UINT32_SECONDS
    data_access_method: int = 3
    id_form: int = 0
    int_format: int = 0
    ni_format1: int = NiFormat.INT48
    ni_format2: int = NiFormat.INT32
    device_class: bytes = b"\x00\x00\x00\x00"
    nameplate_type: int = 2
    default_set_used: int = 0
    max_proc_parm_length: int = 0
    max_resp_data_len: int = 0
    std_version_no: int = 2
    std_revision_no: int = 0
    std_tbls_used: frozenset[int] = frozenset()
    mfg_tbls_used: frozenset[int] = frozenset()
    dim_std_tbls_used: int = 10
    dim_mfg_tbls_used: int = 0
    dim_std_proc_used: int = 0
    dim_mfg_proc_used: int = 0
    dim_mfg_status_used: int = 0
    nbr_pending: int = 0

    @property
    def order(self) -> ByteOrder:
        return "big" if self.data_order_msb_first else "little"

    def encode(self) -> bytes:
        fc1 = int(self.data_order_msb_first) | (self.char_format & 0x07) << 1
        fc2 = (int(self.time_format) & 0x07) | (self.data_access_method & 0x03) << 3 \
            | (self.id_form & 1) << 5 | (self.int_format & 0x03) << 6
        fc3 = (self.ni_format1 & 0x0F) | (self.ni_format2 & 0x0F) << 4
        head = bytes([fc1, fc2, fc3]) + self.device_class + bytes([
            self.nameplate_type, self.default_set_used, self.max_proc_parm_length, self.max_resp_data_len,
            self.std_version_no, self.std_revision_no, self.dim_std_tbls_used, self.dim_mfg_tbls_used,
            self.dim_std_proc_used, self.dim_mfg_proc_used, self.dim_mfg_status_used, self.nbr_pending])
        std = _encode_set(self.std_tbls_used, self.dim_std_tbls_used)
        mfg = _encode_set(self.mfg_tbls_used, self.dim_mfg_tbls_used)
        # STD_TBLS_USED, MFG_TBLS_USED, STD_PROC_USED, MFG_PROC_USED, STD_TBLS_WRITE, MFG_TBLS_WRITE
        return head + std + mfg + bytes(self.dim_std_proc_used + self.dim_mfg_proc_used) \
            + bytes(self.dim_std_tbls_used + self.dim_mfg_tbls_used)

    @classmethod
    def decode(cls, data: bytes) -> GenConfig:
        r = _Reader(data, "little", "ST0")
        fc1, fc2, fc3 = r.take(3)
        device_class = r.take(4)
        fixed = r.take(12)
        std = _decode_set(r.take(fixed[6]))
        mfg = _decode_set(r.take(fixed[7]))
        try:
            time_format = TimeFormat(fc2 & 0x07)
        except ValueError:
            raise UnsupportedFormat(f"ST0 TM_FORMAT {fc2 & 0x07}") from None
        return cls(data_order_msb_first=bool(fc1 & 1), char_format=(fc1 >> 1) & 0x07, time_format=time_format,
                   data_access_method=(fc2 >> 3) & 0x03, id_form=(fc2 >> 5) & 1, int_format=(fc2 >> 6) & 0x03,
                   ni_format1=fc3 & 0x0F, ni_format2=fc3 >> 4, device_class=device_class,
                   nameplate_type=fixed[0], default_set_used=fixed[1], max_proc_parm_length=fixed[2],
                   max_resp_data_len=fixed[3], std_version_no=fixed[4], std_revision_no=fixed[5],
                   std_tbls_used=std, mfg_tbls_used=mfg, dim_std_tbls_used=fixed[6], dim_mfg_tbls_used=fixed[7],
                   dim_std_proc_used=fixed[8], dim_mfg_proc_used=fixed[9], dim_mfg_status_used=fixed[10],
                   nbr_pending=fixed[11])


def _encode_set(members: frozenset[int], size: int) -> bytes:
    out = bytearray(size)
    for m in members:
        if m < 8 * size:
            out[m // 8] |= 1 << (m % 8)
    return bytes(out)


def _decode_set(raw: bytes) -> frozenset[int]:
    return frozenset(i * 8 + b for i, byte in enumerate(raw) for b in range(8) if byte >> b & 1)


# --------------------------------------------------------------------------- ST1, ST3, ST5, ST52

@dataclass(frozen=True, slots=True)
class ManufacturerIdent:
    """ST1 GENERAL_MFG_ID_TBL (ID_FORM string)."""

    manufacturer: str
    model: str
    hw_version: int
    hw_revision: int
    fw_version: int
    fw_revision: int
    serial_number: str

    def encode(self) -> bytes:
        return (_fixed_text(self.manufacturer, 4) + _fixed_text(self.model, 8)
                + bytes([self.hw_version, self.hw_revision, self.fw_version, self.fw_revision])
                + _fixed_text(self.serial_number, 16))

    @classmethod
    def decode(cls, data: bytes) -> ManufacturerIdent:
        r = _Reader(data, "little", "ST1")
        manufacturer, model = _text(r.take(4)), _text(r.take(8))
        hw_v, hw_r, fw_v, fw_r = r.take(4)
        return cls(manufacturer, model, hw_v, hw_r, fw_v, fw_r, _text(r.take(16)))


class EdStatus(enum.IntFlag):
    """ST3 ED_STD_STATUS1 bits."""

    UNPROGRAMMED = 1 << 0
    CONFIGURATION_ERROR = 1 << 1
    SELF_CHECK_ERROR = 1 << 2
    RAM_FAILURE = 1 << 3
    ROM_FAILURE = 1 << 4
    NONVOL_MEM_FAILURE = 1 << 5
    CLOCK_ERROR = 1 << 6
    MEASUREMENT_ERROR = 1 << 7
    LOW_BATTERY = 1 << 8
    LOW_LOSS_POTENTIAL = 1 << 9
    DEMAND_OVERLOAD = 1 << 10
    POWER_FAILURE = 1 << 11
    TAMPER_DETECT = 1 << 12
    REVERSE_ROTATION = 1 << 13


@dataclass(frozen=True, slots=True)
class EdModeStatus:
    """ST3 ED_MODE_STATUS_TBL."""

    ed_mode: int
    std_status1: EdStatus
    std_status2: int = 0
    mfg_status: bytes = b""

    def encode(self, order: ByteOrder) -> bytes:
        return bytes([self.ed_mode]) + _u(int(self.std_status1), 2, order) + bytes([self.std_status2]) \
            + self.mfg_status

    @classmethod
    def decode(cls, data: bytes, order: ByteOrder, dim_mfg_status_used: int = 0) -> EdModeStatus:
        r = _Reader(data, order, "ST3")
        return cls(r.uint(1), EdStatus(r.uint(2)), r.uint(1), r.take(dim_mfg_status_used))


@dataclass(frozen=True, slots=True)
class DeviceIdent:
    """ST5 DEVICE_IDENT_TBL (ID_FORM string): the utility's meter id."""

    identification: str

    def encode(self) -> bytes:
        return _fixed_text(self.identification, 20)

    @classmethod
    def decode(cls, data: bytes) -> DeviceIdent:
        return cls(_text(_Reader(data, "little", "ST5").take(20)))


def stime_size(fmt: TimeFormat) -> int:
    if fmt in (TimeFormat.BCD, TimeFormat.UINT8):
        return 5
    if fmt in (TimeFormat.UINT32_MINUTES, TimeFormat.UINT32_SECONDS):
        return 4
    raise UnsupportedFormat(f"TM_FORMAT {int(fmt)} has no STIME_DATE")


def _bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _from_bcd(byte: int, what: str) -> int:
    high, low = byte >> 4, byte & 0x0F
    if high > 9 or low > 9:
        raise TableError(f"{what}: 0x{byte:02X} is not BCD")
    return high * 10 + low


def encode_stime(moment: datetime, fmt: TimeFormat, order: ByteOrder) -> bytes:
    """STIME_DATE (no seconds), UTC."""
    moment = moment.astimezone(UTC)
    if fmt is TimeFormat.UINT32_SECONDS:
        return _u(int((moment - _EPOCH).total_seconds()), 4, order)
    if fmt is TimeFormat.UINT32_MINUTES:
        return _u(int((moment - _EPOCH).total_seconds()) // 60, 4, order)
    fields = (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute)
    if fmt is TimeFormat.BCD:
        return bytes(_bcd(f) for f in fields)
    if fmt is TimeFormat.UINT8:
        return bytes(fields)
    raise UnsupportedFormat(f"TM_FORMAT {int(fmt)} has no STIME_DATE")


def _after_epoch(seconds: int, what: str) -> datetime:
    """A UINT32 count of seconds or minutes; minutes reach past the year 9999."""
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise TableError(f"{what}: {seconds} s after 1970 is past the year 9999") from exc


def decode_stime(raw: bytes, fmt: TimeFormat, order: ByteOrder) -> datetime:
    if len(raw) != stime_size(fmt):
        raise TableError(f"STIME_DATE of {len(raw)} bytes, TM_FORMAT {int(fmt)} has {stime_size(fmt)}")
    if fmt is TimeFormat.UINT32_SECONDS:
        return _after_epoch(int.from_bytes(raw, order), "STIME_DATE")
    if fmt is TimeFormat.UINT32_MINUTES:
        return _after_epoch(int.from_bytes(raw, order) * 60, "STIME_DATE")
    if fmt in (TimeFormat.BCD, TimeFormat.UINT8):
        fields = [_from_bcd(b, "STIME_DATE") for b in raw] if fmt is TimeFormat.BCD else list(raw)
        try:
            return datetime(2000 + fields[0], fields[1], fields[2], fields[3], fields[4], tzinfo=UTC)
        except ValueError as exc:
            raise TableError(f"STIME_DATE {raw.hex()}: {exc}") from exc
    raise UnsupportedFormat(f"TM_FORMAT {int(fmt)} has no STIME_DATE")


@dataclass(frozen=True, slots=True)
class Clock:
    """ST52 CLOCK_TBL: LTIME_DATE (UTC here) and TIME_DATE_QUAL."""

    time: datetime
    dst: bool = False
    gmt: bool = True

    def encode(self, fmt: TimeFormat, order: ByteOrder) -> bytes:
        t = self.time.astimezone(UTC)
        if fmt is TimeFormat.UINT32_SECONDS:
            raw = _u(int((t - _EPOCH).total_seconds()), 4, order)
        elif fmt is TimeFormat.UINT32_MINUTES:
            raw = _u(int((t - _EPOCH).total_seconds()) // 60, 4, order) + bytes([t.second])
        else:
            raw = encode_stime(t, fmt, order) + bytes([_bcd(t.second) if fmt is TimeFormat.BCD else t.second])
        weekday = (t.weekday() + 1) % 7  # C12.19 counts from Sunday = 0
        return raw + bytes([weekday | int(self.dst) << 3 | int(self.gmt) << 4])

    @classmethod
    def decode(cls, data: bytes, fmt: TimeFormat, order: ByteOrder) -> Clock:
        r = _Reader(data, order, "ST52")
        if fmt is TimeFormat.UINT32_SECONDS:
            t = _after_epoch(r.uint(4), "ST52")
        elif fmt is TimeFormat.UINT32_MINUTES:
            t = _after_epoch(r.uint(4) * 60 + r.uint(1), "ST52")
        else:
            t = decode_stime(r.take(5), fmt, order)
            sec = r.uint(1)
            t += timedelta(seconds=_from_bcd(sec, "ST52 seconds") if fmt is TimeFormat.BCD else sec)
        qual = r.uint(1)
        return cls(t, bool(qual & 0x08), bool(qual & 0x10))


# --------------------------------------------------------------------------- ST60-ST64 load profile

class LpFlag(enum.IntFlag):
    """LP_FLAGS of ST60/ST61."""

    SET1_INHIBIT_OVF = 1 << 0
    SET2_INHIBIT_OVF = 1 << 1
    SET3_INHIBIT_OVF = 1 << 2
    SET4_INHIBIT_OVF = 1 << 3
    BLK_END_READ = 1 << 4
    BLK_END_PULSE = 1 << 5
    SCALAR_DIVISOR_SET1 = 1 << 6
    SCALAR_DIVISOR_SET2 = 1 << 7
    SCALAR_DIVISOR_SET3 = 1 << 8
    SCALAR_DIVISOR_SET4 = 1 << 9
    EXTENDED_INT_STATUS = 1 << 10
    SIMPLE_INT_STATUS = 1 << 11
    BLK_END_RD_INDICATOR = 1 << 12


class IntFormat(enum.IntEnum):
    """INT_FMT_CDE of ST62."""

    UINT8 = 1
    UINT16 = 2
    UINT32 = 4
    INT8 = 8
    INT16 = 16
    INT32 = 32
    NI_FMAT1 = 64
    NI_FMAT2 = 128


_INT_DTYPES = {IntFormat.UINT8: "u1", IntFormat.UINT16: "u2", IntFormat.UINT32: "u4",
               IntFormat.INT8: "i1", IntFormat.INT16: "i2", IntFormat.INT32: "i4"}


@dataclass(frozen=True, slots=True)
class LpSetDimensions:
    blocks: int
    intervals_per_block: int
    channels: int
    interval_minutes: int


@dataclass(frozen=True, slots=True)
class LpDimensions:
    """ST60 DIM_LP_TBL / ST61 ACT_LP_TBL (same layout: limits vs. actual)."""

    memory_len: int
    flags: LpFlag
    formats: int
    sets: tuple[LpSetDimensions, ...]

    def encode(self, order: ByteOrder) -> bytes:
        out = _u(self.memory_len, 4, order) + _u(int(self.flags), 2, order) + bytes([self.formats])
        for s in self.sets:
            out += _u(s.blocks, 2, order) + _u(s.intervals_per_block, 2, order) \
                + bytes([s.channels, s.interval_minutes])
        return out

    @classmethod
    def decode(cls, data: bytes, order: ByteOrder, n_sets: int = 1) -> LpDimensions:
        r = _Reader(data, order, "ST61")
        memory_len, flags, formats = r.uint(4), LpFlag(r.uint(2)), r.uint(1)
        sets = tuple(LpSetDimensions(r.uint(2), r.uint(2), r.uint(1), r.uint(1)) for _ in range(n_sets))
        for s in sets:
            if s.channels == 0 or s.intervals_per_block == 0 or s.interval_minutes == 0 or s.blocks == 0:
                raise TableError(f"ST61: load profile set with zero dimension {s}")
        return cls(memory_len, flags, formats, sets)


@dataclass(frozen=True, slots=True)
class LpChannel:
    end_reading: bool
    source_select: int
    end_block_source_select: int


@dataclass(frozen=True, slots=True)
class LpControl:
    """ST62 LP_CTRL_TBL for one set."""

    channels: tuple[LpChannel, ...]
    int_format: IntFormat
    scalars: tuple[int, ...] = ()
    divisors: tuple[int, ...] = ()

    def encode(self, order: ByteOrder) -> bytes:
        out = b"".join(bytes([int(c.end_reading), c.source_select, c.end_block_source_select])
                       for c in self.channels)
        out += bytes([int(self.int_format)])
        out += b"".join(_u(s, 2, order) for s in self.scalars) + b"".join(_u(d, 2, order) for d in self.divisors)
        return out

    @classmethod
    def decode(cls, data: bytes, order: ByteOrder, channels: int, scalar_divisor: bool) -> LpControl:
        r = _Reader(data, order, "ST62")
        chans = []
        for _ in range(channels):
            flag, source, end_source = r.take(3)
            chans.append(LpChannel(bool(flag & 1), source, end_source))
        code = r.uint(1)
        try:
            fmt = IntFormat(code)
        except ValueError:
            raise UnsupportedFormat(f"ST62 INT_FMT_CDE {code}") from None
        scalars: tuple[int, ...] = ()
        divisors: tuple[int, ...] = ()
        if scalar_divisor:
            scalars = tuple(r.uint(2) for _ in range(channels))
            divisors = tuple(r.uint(2) for _ in range(channels))
            if 0 in divisors:
                raise TableError("ST62: zero divisor")
        return cls(tuple(chans), fmt, scalars, divisors)


class LpSetStatusFlag(enum.IntFlag):
    ORDER_DESCENDING = 1 << 0
    OVERFLOW = 1 << 1
    LIST_TYPE_CIRCULAR = 1 << 2
    BLOCK_INHIBIT_OVERFLOW = 1 << 3
    INTERVAL_ORDER = 1 << 4
    ACTIVE_MODE = 1 << 5
    TEST_MODE = 1 << 6


@dataclass(frozen=True, slots=True)
class LpStatus:
    """ST63 LP_STATUS_TBL for one set."""

    flags: LpSetStatusFlag
    valid_blocks: int
    last_block_element: int
    last_block_seq: int
    unread_blocks: int
    valid_intervals: int

    SIZE = 13

    def encode(self, order: ByteOrder) -> bytes:
        return bytes([int(self.flags)]) + _u(self.valid_blocks, 2, order) + _u(self.last_block_element, 2, order) \
            + _u(self.last_block_seq, 4, order) + _u(self.unread_blocks, 2, order) \
            + _u(self.valid_intervals, 2, order)

    @classmethod
    def decode(cls, data: bytes, order: ByteOrder) -> LpStatus:
        r = _Reader(data, order, "ST63")
        return cls(LpSetStatusFlag(r.uint(1)), r.uint(2), r.uint(2), r.uint(4), r.uint(2), r.uint(2))

    def check(self, dims: LpSetDimensions) -> None:
        """Refuse a status that points outside the set ST61 describes (TableError)."""
        if self.valid_intervals > dims.intervals_per_block:
            raise TableError(f"ST63 NBR_VALID_INT {self.valid_intervals} exceeds the {dims.intervals_per_block} "
                             "intervals of a block (ST61 NBR_BLK_INTS_SET1)")
        if self.valid_blocks > dims.blocks:
            raise TableError(f"ST63 NBR_VALID_BLOCKS {self.valid_blocks} exceeds the {dims.blocks} blocks of the "
                             "set (ST61 NBR_BLKS_SET1)")
        if self.valid_blocks and self.last_block_element >= dims.blocks:
            raise TableError(f"ST63 LAST_BLOCK_ELEMENT {self.last_block_element} is outside the {dims.blocks} "
                             "blocks of the set (ST61 NBR_BLKS_SET1)")


class NibbleMapping(enum.Enum):
    """Where channel c's extended status nibble lives. Implementations differ.

    FIRST_IN_COMMON_BYTE: channel 1 is the low nibble of byte 0 (next to the
      common flags), then byte k holds channel 2k in the high and 2k+1 in the low
      nibble (n0mcli's reading of C12.19).
    AFTER_COMMON_BYTE: channel j (0-based) is byte j//2 + 1, low nibble for even j
      (Yukon's reading).
    """

    FIRST_IN_COMMON_BYTE = "first_in_common_byte"
    AFTER_COMMON_BYTE = "after_common_byte"

    def locate(self, channel: int) -> tuple[int, int]:
        """(byte index, shift) of 0-based ``channel``."""
        if self is NibbleMapping.AFTER_COMMON_BYTE:
            return channel // 2 + 1, 0 if channel % 2 == 0 else 4
        one_based = channel + 1
        if one_based == 1:
            return 0, 0
        return one_based // 2, 4 if one_based % 2 == 0 else 0


class CommonStatus(enum.IntFlag):
    """High nibble of extended interval status byte 0."""

    DST = 0x10
    POWER_FAIL = 0x20
    CLOCK_SET_FORWARD = 0x40
    CLOCK_SET_BACKWARD = 0x80


class ChannelStatus(enum.IntEnum):
    NONE = 0
    OVERFLOW = 1
    PARTIAL = 2
    LONG = 3
    SKIPPED = 4
    TEST_MODE = 5
    CONFIG_CHANGED = 6
    STOPPED = 7


@dataclass(frozen=True, slots=True)
class LpLayout:
    """Everything needed to size and decode ST64 blocks of one set."""

    channels: int
    intervals_per_block: int
    interval_minutes: int
    int_format: IntFormat
    flags: LpFlag
    time_format: TimeFormat
    order: ByteOrder
    ni_format1: int = NiFormat.INT48

    @property
    def status_bytes(self) -> int:
        return self.channels // 2 + 1 if self.flags & LpFlag.EXTENDED_INT_STATUS else 0

    @property
    def simple_status_bytes(self) -> int:
        return (self.intervals_per_block + 7) // 8 if self.flags & LpFlag.SIMPLE_INT_STATUS else 0

    @property
    def end_reading_bytes(self) -> int:
        per = (ni_size(self.ni_format1) if self.flags & LpFlag.BLK_END_READ else 0) \
            + (4 if self.flags & LpFlag.BLK_END_PULSE else 0)
        return per * self.channels

    @property
    def value_bytes(self) -> int:
        if self.int_format in (IntFormat.NI_FMAT1, IntFormat.NI_FMAT2):
            raise UnsupportedFormat("NI formats in interval data are not supported; use an integer INT_FMT")
        return int(np.dtype(_INT_DTYPES[self.int_format]).itemsize)

    @property
    def interval_bytes(self) -> int:
        return self.status_bytes + self.channels * self.value_bytes

    @property
    def header_bytes(self) -> int:
        return stime_size(self.time_format) + self.end_reading_bytes + self.simple_status_bytes

    @property
    def block_bytes(self) -> int:
        return self.header_bytes + self.intervals_per_block * self.interval_bytes

    def block_dtype(self) -> np.dtype[np.void]:
        endian = ">" if self.order == "big" else "<"
        value = endian + _INT_DTYPES[self.int_format]
        return np.dtype([
            ("header", "V" + str(self.header_bytes)),
            ("intervals", [("status", "u1", (self.status_bytes,)), ("values", value, (self.channels,))],
             (self.intervals_per_block,)),
        ])


@dataclass(frozen=True, slots=True)
class LpBlocks:
    """Decoded ST64 blocks: whole arrays, one row per block."""

    end_times: tuple[datetime, ...]
    values: npt.NDArray[np.int64]  # (blocks, intervals, channels)
    status: npt.NDArray[np.uint8]  # (blocks, intervals, status bytes)
    simple_status: npt.NDArray[np.uint8]  # (blocks, simple status bytes)
    end_readings: tuple[tuple[int, ...], ...] = ()


def decode_lp_blocks(data: bytes, layout: LpLayout) -> LpBlocks:
    """Decode whole blocks (``len(data)`` must be a multiple of the block size)."""
    size = layout.block_bytes
    if len(data) % size:
        raise TableError(f"ST64: {len(data)} bytes is not a whole number of {size}-byte blocks")
    arr = np.frombuffer(data, dtype=layout.block_dtype())
    header = np.frombuffer(data, dtype=np.uint8).reshape(len(arr), size)[:, :layout.header_bytes]
    t_size = stime_size(layout.time_format)
    end_times = tuple(decode_stime(bytes(row[:t_size]), layout.time_format, layout.order) for row in header)
    end_readings: list[tuple[int, ...]] = []
    if layout.flags & LpFlag.BLK_END_READ:
        ni = ni_size(layout.ni_format1)
        pulse = 4 if layout.flags & LpFlag.BLK_END_PULSE else 0
        for row in header:
            raw = bytes(row[t_size:t_size + layout.end_reading_bytes])
            end_readings.append(tuple(int.from_bytes(raw[c * (ni + pulse):c * (ni + pulse) + ni], layout.order,
                                                     signed=True) for c in range(layout.channels)))
    simple = header[:, t_size + layout.end_reading_bytes:].copy()
    return LpBlocks(end_times, arr["intervals"]["values"].astype(np.int64),
                    arr["intervals"]["status"].astype(np.uint8), simple, tuple(end_readings))


def encode_lp_block(end_time: datetime, values: npt.NDArray[np.int64], status: npt.NDArray[np.uint8],
                    layout: LpLayout, end_readings: Sequence[int] = ()) -> bytes:
    """One ST64 block; ``values`` is (intervals, channels), ``status`` (intervals, status bytes)."""
    header = bytearray(encode_stime(end_time, layout.time_format, layout.order))
    if layout.flags & LpFlag.BLK_END_READ:
        ni = ni_size(layout.ni_format1)
        for c in range(layout.channels):
            header += int(end_readings[c] if c < len(end_readings) else 0).to_bytes(ni, layout.order, signed=True)
            if layout.flags & LpFlag.BLK_END_PULSE:
                header += bytes(4)
    elif layout.flags & LpFlag.BLK_END_PULSE:
        header += bytes(4 * layout.channels)
    if layout.flags & LpFlag.SIMPLE_INT_STATUS:
        bits = np.zeros(layout.simple_status_bytes * 8, dtype=np.uint8)
        bits[:layout.intervals_per_block] = 1
        header += np.packbits(bits, bitorder="little").tobytes()
    block = np.zeros(1, dtype=layout.block_dtype())
    block["header"] = bytes(header)
    block["intervals"]["values"][0] = values
    block["intervals"]["status"][0] = status
    return block.tobytes()


# --------------------------------------------------------------------------- table reads, as read

@dataclass(frozen=True, slots=True)
class TableRead:
    """Bytes of one table as a meter returned them (offset 0 for a full read)."""

    table: int
    offset: int
    data: bytes


def encode_table_reads(reads: Sequence[TableRead]) -> bytes:
    """The reads of a session as one byte string, for the dead-letter store.

    Each read is ``TABLE_ID (2) OFFSET (3) COUNT (2)`` big-endian, as in a C12.22
    partial read request, followed by its COUNT data bytes.
    """
    out = bytearray()
    for read in reads:
        if not (0 <= read.table <= 0xFFFF and 0 <= read.offset <= 0xFFFFFF and len(read.data) <= 0xFFFF):
            raise TableError(f"table {read.table} read at offset {read.offset} of {len(read.data)} bytes "
                             "does not fit a C12.22 read", remote=False)
        out += read.table.to_bytes(2, "big") + read.offset.to_bytes(3, "big") + len(read.data).to_bytes(2, "big")
        out += read.data
    return bytes(out)


def decode_table_reads(data: bytes) -> list[TableRead]:
    """Inverse of :func:`encode_table_reads`."""
    reads = []
    r = _Reader(data, "big", "table reads")
    while r.pos < len(data):
        table, offset, count = r.uint(2), r.uint(3), r.uint(2)
        reads.append(TableRead(table, offset, r.take(count)))
    return reads


# --------------------------------------------------------------------------- ST21-ST23 registers

@dataclass(frozen=True, slots=True)
class ActualRegisters:
    """ST21 ACT_REGS_TBL."""

    reg_func1_flags: int
    reg_func2_flags: int
    self_reads: int
    summations: int
    demands: int
    coin_values: int
    occurrences: int
    tiers: int
    present_demands: int
    present_values: int

    DEMAND_RESET_CTR = 0x04
    DATE_TIME_FIELD = 0x02
    CUM_DEMAND = 0x10
    CONT_CUM_DEMAND = 0x20

    def encode(self) -> bytes:
        return bytes([self.reg_func1_flags, self.reg_func2_flags, self.self_reads, self.summations, self.demands,
                      self.coin_values, self.occurrences, self.tiers, self.present_demands, self.present_values])

    @classmethod
    def decode(cls, data: bytes) -> ActualRegisters:
        return cls(*_Reader(data, "little", "ST21").take(10))


@dataclass(frozen=True, slots=True)
class DataSelection:
    """ST22 DATA_SELECTION_TBL: source index of each summation / demand / coincident."""

    summation_select: tuple[int, ...]
    demand_select: tuple[int, ...] = ()
    min_or_max_flags: bytes = b""
    coincident_select: tuple[int, ...] = ()
    coin_demand_assoc: tuple[int, ...] = ()

    def encode(self) -> bytes:
        return bytes(self.summation_select) + bytes(self.demand_select) + self.min_or_max_flags \
            + bytes(self.coincident_select) + bytes(self.coin_demand_assoc)

    @classmethod
    def decode(cls, data: bytes, regs: ActualRegisters) -> DataSelection:
        r = _Reader(data, "little", "ST22")
        return cls(tuple(r.take(regs.summations)), tuple(r.take(regs.demands)), r.take((regs.demands + 7) // 8),
                   tuple(r.take(regs.coin_values)), tuple(r.take(regs.coin_values)))


@dataclass(frozen=True, slots=True)
class CurrentRegisters:
    """ST23 CURRENT_REG_DATA_TBL: totals (and tiers) of summations and demands, raw NI integers."""

    summations: tuple[int, ...]
    demands: tuple[tuple[int, ...], ...] = ()
    demand_resets: int | None = None
    tier_summations: tuple[tuple[int, ...], ...] = ()

    def encode(self, regs: ActualRegisters, cfg: GenConfig) -> bytes:
        order, n1, n2 = cfg.order, ni_size(cfg.ni_format1), ni_size(cfg.ni_format2)
        out = bytearray()
        if regs.reg_func1_flags & ActualRegisters.DEMAND_RESET_CTR:
            out.append(self.demand_resets or 0)
        for block in (self.summations, *self.tier_summations):
            out += b"".join(v.to_bytes(n1, order, signed=True) for v in block)
            for d in range(regs.demands):
                occ = self.demands[d] if d < len(self.demands) else ()
                out += b"".join(int(occ[i] if i < len(occ) else 0).to_bytes(n2, order, signed=True)
                                for i in range(regs.occurrences))
            out += bytes(regs.coin_values * regs.occurrences * n2)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, regs: ActualRegisters, cfg: GenConfig) -> CurrentRegisters:
        if regs.reg_func1_flags & (ActualRegisters.DATE_TIME_FIELD | ActualRegisters.CUM_DEMAND
                                   | ActualRegisters.CONT_CUM_DEMAND):
            raise UnsupportedFormat("ST23 demand time stamps and cumulative demands are not supported")
        r = _Reader(data, cfg.order, "ST23")
        n1, n2 = ni_size(cfg.ni_format1), ni_size(cfg.ni_format2)
        resets = r.uint(1) if regs.reg_func1_flags & ActualRegisters.DEMAND_RESET_CTR else None
        blocks: list[tuple[int, ...]] = []
        demands: tuple[tuple[int, ...], ...] = ()
        for index in range(1 + regs.tiers):
            blocks.append(tuple(r.sint(n1) for _ in range(regs.summations)))
            block_demands = tuple(tuple(r.sint(n2) for _ in range(regs.occurrences)) for _ in range(regs.demands))
            r.take(regs.coin_values * regs.occurrences * n2)
            if index == 0:
                demands = block_demands
        return cls(blocks[0], demands, resets, tuple(blocks[1:]))
