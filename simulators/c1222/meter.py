"""A simulated C12.19 meter: tables computed from (meter id, time), reproducibly.

Consumption and faults come from a counter-based hash (splitmix64) of the meter
id, the interval end and the channel, so any interval can be recomputed without
state, and a test can ask the model what the adapter must have delivered.
Load profile blocks are UTC days; the newest block is partial up to ``now``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from adapters.c1222.codec import ApTitle
from adapters.c1222.tables import (
    ST_ACT_LP,
    ST_ACT_REGS,
    ST_CLOCK,
    ST_CURRENT_REG_DATA,
    ST_DATA_SELECTION,
    ST_DEVICE_IDENT,
    ST_DIM_LP,
    ST_ED_MODE_STATUS,
    ST_GEN_CONFIG,
    ST_GENERAL_MFG_ID,
    ST_LP_CTRL,
    ST_LP_DATA_SET1,
    ST_LP_STATUS,
    ActualRegisters,
    ChannelStatus,
    Clock,
    CommonStatus,
    CurrentRegisters,
    DataSelection,
    DeviceIdent,
    EdModeStatus,
    EdStatus,
    GenConfig,
    IntFormat,
    LpChannel,
    LpControl,
    LpDimensions,
    LpFlag,
    LpLayout,
    LpSetDimensions,
    LpSetStatusFlag,
    LpStatus,
    ManufacturerIdent,
    NibbleMapping,
    NiFormat,
    TimeFormat,
    encode_lp_block,
)

METER_ID_PREFIX = "C1222-"
# Relative AP titles of simulated meters: .<branch>.<meter number>
AP_TITLE_BRANCH = 7
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def meter_id(number: int) -> str:
    return f"{METER_ID_PREFIX}{number:06d}"


def meter_ap_title(number: int) -> ApTitle:
    return ApTitle((AP_TITLE_BRANCH, number), relative=True)


def _splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Per-interval probabilities (0..1) of each injected fault, applied deterministically."""

    gap: float = 0.0
    power_fail: float = 0.0
    clock_set: float = 0.0
    overflow: float = 0.0


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """What every meter of a simulated fleet looks like."""

    lp_start: datetime
    interval_minutes: int = 15
    channels: int = 2
    blocks: int = 8
    data_order_msb_first: bool = False
    time_format: TimeFormat = TimeFormat.UINT32_SECONDS
    int_format: IntFormat = IntFormat.UINT16
    nibble_mapping: NibbleMapping = NibbleMapping.FIRST_IN_COMMON_BYTE
    scalars: tuple[int, ...] = (2, 1)
    divisors: tuple[int, ...] = (10, 1)
    faults: FaultRates = field(default_factory=FaultRates)

    def __post_init__(self) -> None:
        if self.lp_start.tzinfo is None:
            raise ValueError("lp_start must be timezone-aware")
        if 1440 % self.interval_minutes:
            raise ValueError("interval_minutes must divide a day")
        if len(self.scalars) != self.channels or len(self.divisors) != self.channels:
            raise ValueError("one scalar and one divisor per channel")

    @property
    def interval_seconds(self) -> int:
        return self.interval_minutes * 60

    @property
    def intervals_per_block(self) -> int:
        return 1440 // self.interval_minutes

    @property
    def first_day(self) -> datetime:
        return self.lp_start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def flags(self) -> LpFlag:
        return LpFlag.SCALAR_DIVISOR_SET1 | LpFlag.EXTENDED_INT_STATUS | LpFlag.BLK_END_READ

    def gen_config(self) -> GenConfig:
        used = frozenset({ST_GEN_CONFIG, ST_GENERAL_MFG_ID, ST_ED_MODE_STATUS, ST_DEVICE_IDENT, ST_ACT_REGS,
                          ST_DATA_SELECTION, ST_CURRENT_REG_DATA, ST_CLOCK, ST_DIM_LP, ST_ACT_LP, ST_LP_CTRL,
                          ST_LP_STATUS, ST_LP_DATA_SET1})
        return GenConfig(data_order_msb_first=self.data_order_msb_first, time_format=self.time_format,
                         ni_format1=NiFormat.INT48, ni_format2=NiFormat.INT32, std_tbls_used=used)

    def layout(self) -> LpLayout:
        cfg = self.gen_config()
        return LpLayout(self.channels, self.intervals_per_block, self.interval_minutes, self.int_format,
                        self.flags, self.time_format, cfg.order, cfg.ni_format1)

    def dimensions(self) -> LpDimensions:
        return LpDimensions(self.blocks * self.layout().block_bytes, self.flags,
                            0xFF, (LpSetDimensions(self.blocks, self.intervals_per_block, self.channels,
                                                   self.interval_minutes),))

    def control(self) -> LpControl:
        chans = tuple(LpChannel(True, c, c) for c in range(self.channels))
        return LpControl(chans, self.int_format, self.scalars, self.divisors)


@dataclass(frozen=True, slots=True)
class IntervalData:
    """Raw LP intervals as the meter stores them (what ST64 carries)."""

    ends: npt.NDArray[np.int64]  # epoch seconds
    values: npt.NDArray[np.int64]  # (intervals, channels), raw INT_DATA
    common: npt.NDArray[np.uint8]  # high nibble flags (CommonStatus)
    channel_status: npt.NDArray[np.uint8]  # (intervals, channels) ChannelStatus


class SimulatedMeter:
    """One meter's tables at a given time."""

    def __init__(self, number: int, spec: MeterSpec) -> None:
        self.number = number
        self.id = meter_id(number)
        self.ap_title = meter_ap_title(number)
        self.spec = spec
        self._seed = np.uint64(zlib.crc32(self.id.encode()) << 20 | number)

    # -- consumption ---------------------------------------------------------

    def intervals(self, first_end: int, count: int) -> IntervalData:
        """``count`` consecutive intervals ending at first_end, first_end + step, ..."""
        spec = self.spec
        step = spec.interval_seconds
        ends = first_end + step * np.arange(count, dtype=np.int64)
        chans = np.arange(spec.channels, dtype=np.uint64)
        keys = (ends.astype(np.uint64)[:, None] * np.uint64(8) + chans[None, :]) ^ self._seed
        h = _splitmix(keys)
        hour = (ends // 3600) % 24
        shape = np.where((hour >= 7) & (hour < 22), 3, 1).astype(np.int64)
        base = (h % np.uint64(400)).astype(np.int64)
        values = (base + 50) * shape[:, None]
        values[:, 1:] //= 4  # received energy is smaller
        ch = _splitmix(ends.astype(np.uint64) ^ (self._seed * np.uint64(31)))
        frac = (ch % np.uint64(1_000_000)).astype(np.float64) / 1_000_000.0
        rates = spec.faults
        common = np.zeros(count, dtype=np.uint8)
        status = np.zeros((count, spec.channels), dtype=np.uint8)
        lo = 0.0
        power_fail = (frac >= lo) & (frac < lo + rates.power_fail)
        lo += rates.power_fail
        clock_set = (frac >= lo) & (frac < lo + rates.clock_set)
        lo += rates.clock_set
        gap = (frac >= lo) & (frac < lo + rates.gap)
        lo += rates.gap
        overflow = (frac >= lo) & (frac < lo + rates.overflow)
        common[power_fail] |= int(CommonStatus.POWER_FAIL)
        values[power_fail] //= 3
        common[clock_set] |= int(CommonStatus.CLOCK_SET_FORWARD)
        status[clock_set] = ChannelStatus.PARTIAL
        values[gap] = 0
        status[gap] = ChannelStatus.SKIPPED
        signed = spec.int_format in (IntFormat.INT8, IntFormat.INT16, IntFormat.INT32)
        top = (1 << (8 * spec.layout().value_bytes - int(signed))) - 1
        np.minimum(values, top - 1, out=values)
        values[overflow, 0] = top
        status[overflow, 0] = ChannelStatus.OVERFLOW
        return IntervalData(ends, values, common, status)

    def status_bytes(self, data: IntervalData) -> npt.NDArray[np.uint8]:
        layout = self.spec.layout()
        out = np.zeros((len(data.ends), layout.status_bytes), dtype=np.uint8)
        out[:, 0] = data.common
        for c in range(self.spec.channels):
            index, shift = self.spec.nibble_mapping.locate(c)
            out[:, index] |= (data.channel_status[:, c] << shift).astype(np.uint8)
        return out

    def cumulative_before(self, end: int) -> npt.NDArray[np.int64]:
        """Register (raw LP units x scalar / divisor, Wh) accumulated from lp_start up to ``end``."""
        spec = self.spec
        first = int(spec.first_day.timestamp()) + spec.interval_seconds
        count = max(0, (end - first) // spec.interval_seconds + 1)
        data = self.intervals(first, count)
        raw = data.values.sum(axis=0)
        return np.array([int(raw[c]) * spec.scalars[c] // spec.divisors[c] for c in range(spec.channels)],
                        dtype=np.int64)

    # -- load profile state at `now` -----------------------------------------

    def lp_state(self, now: datetime) -> tuple[int, int]:
        """(newest block sequence number, valid intervals in it); (-1, 0) before the first interval."""
        spec = self.spec
        elapsed = int((now - spec.first_day).total_seconds())
        intervals = elapsed // spec.interval_seconds
        if intervals <= 0:
            return -1, 0
        seq, rest = divmod(intervals, spec.intervals_per_block)
        if rest == 0:
            return seq - 1, spec.intervals_per_block
        return seq, rest

    def lp_status(self, now: datetime) -> LpStatus:
        seq, valid = self.lp_state(now)
        blocks = self.spec.blocks
        valid_blocks = min(seq + 1, blocks) if seq >= 0 else 0
        flags = LpSetStatusFlag.LIST_TYPE_CIRCULAR | LpSetStatusFlag.ACTIVE_MODE
        if seq + 1 > blocks:
            flags |= LpSetStatusFlag.OVERFLOW
        return LpStatus(flags, valid_blocks, max(seq, 0) % blocks, max(seq, 0), valid_blocks, valid)

    def block_bytes(self, seq: int, valid: int) -> bytes:
        return _encode_block(self, seq, valid)

    def lp_table(self, now: datetime, offset: int, count: int) -> bytes:
        """Bytes [offset, offset+count) of ST64 as stored at ``now``."""
        layout = self.spec.layout()
        size = layout.block_bytes
        seq, valid = self.lp_state(now)
        blocks = self.spec.blocks
        out = bytearray()
        first_el, last_el = offset // size, (offset + count - 1) // size
        for element in range(first_el, last_el + 1):
            if element >= blocks:
                break
            # newest block sits at element seq % blocks; older ones behind it
            back = (seq % blocks - element) % blocks if seq >= 0 else blocks
            block_seq = seq - back
            if block_seq < 0:
                raw = bytes(size)
            else:
                raw = self.block_bytes(block_seq, valid if back == 0 else self.spec.intervals_per_block)
            out += raw
        start = offset - first_el * size
        return bytes(out[start:start + count])

    # -- every table ----------------------------------------------------------

    def table(self, table_id: int, now: datetime) -> bytes | None:
        spec = self.spec
        cfg = spec.gen_config()
        order = cfg.order
        if table_id == ST_GEN_CONFIG:
            return cfg.encode()
        if table_id == ST_GENERAL_MFG_ID:
            return ManufacturerIdent("MHUB", "SIM1222", 1, 0, 2, 3, f"SN{self.number:014d}").encode()
        if table_id == ST_ED_MODE_STATUS:
            return EdModeStatus(1, EdStatus(0)).encode(order)
        if table_id == ST_DEVICE_IDENT:
            return DeviceIdent(self.id).encode()
        if table_id == ST_CLOCK:
            return Clock(now).encode(spec.time_format, order)
        if table_id in (ST_DIM_LP, ST_ACT_LP):
            return spec.dimensions().encode(order)
        if table_id == ST_LP_CTRL:
            return spec.control().encode(order)
        if table_id == ST_LP_STATUS:
            return self.lp_status(now).encode(order)
        if table_id == ST_LP_DATA_SET1:
            return self.lp_table(now, 0, spec.blocks * spec.layout().block_bytes)
        if table_id == ST_ACT_REGS:
            return self.registers_layout().encode()
        if table_id == ST_DATA_SELECTION:
            return DataSelection(tuple(range(spec.channels))).encode()
        if table_id == ST_CURRENT_REG_DATA:
            return self.current_registers(now).encode(self.registers_layout(), cfg)
        return None

    def table_size(self, table_id: int, now: datetime) -> int | None:
        if table_id == ST_LP_DATA_SET1:
            return self.spec.blocks * self.spec.layout().block_bytes
        data = self.table(table_id, now)
        return None if data is None else len(data)

    def registers_layout(self) -> ActualRegisters:
        return ActualRegisters(0, 0, 0, self.spec.channels, 0, 0, 0, 0, 0, 0)

    def current_registers(self, now: datetime) -> CurrentRegisters:
        """Summations in Wh at the last completed interval (matches the LP sum)."""
        seq, valid = self.lp_state(now)
        spec = self.spec
        last_end = int(spec.first_day.timestamp()) + (max(seq, 0) * spec.intervals_per_block + valid) \
            * spec.interval_seconds
        return CurrentRegisters(tuple(int(v) for v in self.cumulative_before(last_end)))


@lru_cache(maxsize=4096)
def _encode_block_cached(number: int, spec: MeterSpec, seq: int, valid: int) -> bytes:
    meter = SimulatedMeter(number, spec)
    layout = spec.layout()
    day_start = int(spec.first_day.timestamp()) + seq * 86_400
    data = meter.intervals(day_start + spec.interval_seconds, valid)
    values = np.zeros((layout.intervals_per_block, spec.channels), dtype=np.int64)
    status = np.zeros((layout.intervals_per_block, layout.status_bytes), dtype=np.uint8)
    values[:valid] = data.values
    status[:valid] = meter.status_bytes(data)
    end = datetime.fromtimestamp(day_start + valid * spec.interval_seconds, UTC)
    readings = meter.cumulative_before(int(end.timestamp())) if valid else np.zeros(spec.channels, dtype=np.int64)
    return encode_lp_block(end, values, status, layout, [int(r) for r in readings])


def _encode_block(meter: SimulatedMeter, seq: int, valid: int) -> bytes:
    return _encode_block_cached(meter.number, meter.spec, seq, valid)


def expected_intervals(meter: SimulatedMeter, after: datetime, until: datetime) -> IntervalData:
    """The intervals with end in (after, until] that the meter's LP holds."""
    spec = meter.spec
    step = spec.interval_seconds
    lo = max(int(after.timestamp()), int(spec.first_day.timestamp()))
    first = (lo // step + 1) * step
    count = max(0, (int(until.timestamp()) - first) // step + 1)
    return meter.intervals(first, count)


def step_back(moment: datetime, seconds: int) -> datetime:
    return moment - timedelta(seconds=seconds)
