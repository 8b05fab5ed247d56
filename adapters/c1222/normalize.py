"""Decoded C12.19 reads -> meterhub.v1 protobufs. Pure, whole arrays at a time."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.c1222.config import ChannelSpec
from adapters.c1222.errors import TableError
from adapters.c1222.tables import ChannelStatus, CommonStatus, NibbleMapping, TableRead
from meterhub.v1 import model_pb2 as pb

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class LpRead:
    """Load profile intervals of one meter, ascending by end time, no duplicates."""

    interval_seconds: int
    ends: npt.NDArray[np.int64]  # epoch seconds
    values: npt.NDArray[np.int64]  # (intervals, channels): raw INT_DATA
    status: npt.NDArray[np.uint8]  # (intervals, extended status bytes); may have 0 columns
    scalars: tuple[int, ...]
    divisors: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RegisterSnapshot:
    read_time: datetime
    summations: tuple[int, ...]  # raw NI integers
    decimal_exponent: int = 0


@dataclass(frozen=True, slots=True)
class MeterRead:
    meter_id: str
    lp: LpRead | None
    registers: RegisterSnapshot | None = None
    # The table bytes the read was decoded from (dead-lettered when they cannot be normalised).
    tables: tuple[TableRead, ...] = ()


_CHANNEL_QUALITY = {
    ChannelStatus.OVERFLOW: pb.QUALITY_FLAG_OVERFLOW,
    ChannelStatus.PARTIAL: pb.QUALITY_FLAG_PARTIAL_INTERVAL,
    ChannelStatus.LONG: pb.QUALITY_FLAG_LONG_INTERVAL,
    ChannelStatus.SKIPPED: pb.QUALITY_FLAG_SKIPPED_INTERVAL | pb.QUALITY_FLAG_MISSING,
    ChannelStatus.TEST_MODE: pb.QUALITY_FLAG_TEST_MODE,
    ChannelStatus.CONFIG_CHANGED: pb.QUALITY_FLAG_DEVICE_ERROR,
    ChannelStatus.STOPPED: pb.QUALITY_FLAG_MISSING,
}
# Nibble value -> quality bits; 8..15 are manufacturer / reserved codes.
_NIBBLE_QUALITY = np.array([_CHANNEL_QUALITY.get(ChannelStatus(v), 0) if v < 8 else pb.QUALITY_FLAG_DEVICE_ERROR
                            for v in range(16)], dtype=np.int64)


def interval_qualities(status: npt.NDArray[np.uint8], channels: int,
                       mapping: NibbleMapping) -> npt.NDArray[np.int64]:
    """(intervals, channels) QualityFlag bit sets from extended interval status bytes."""
    n = status.shape[0]
    out = np.zeros((n, channels), dtype=np.int64)
    if status.shape[1] == 0:
        return out
    common = status[:, 0].astype(np.int64)
    shared = np.zeros(n, dtype=np.int64)
    shared[(common & CommonStatus.POWER_FAIL) != 0] |= pb.QUALITY_FLAG_POWER_FAIL
    shared[(common & (CommonStatus.CLOCK_SET_FORWARD | CommonStatus.CLOCK_SET_BACKWARD)) != 0] |= \
        pb.QUALITY_FLAG_CLOCK_SET
    shared[(common & CommonStatus.DST) != 0] |= pb.QUALITY_FLAG_DST_ACTIVE
    for c in range(channels):
        index, shift = mapping.locate(c)
        if index >= status.shape[1]:
            raise TableError(f"extended status has no nibble for channel {c + 1}")
        nibble = (status[:, index] >> shift) & 0x0F
        out[:, c] = shared | _NIBBLE_QUALITY[nibble]
    return out


def scale(values: npt.NDArray[np.int64], scalar: int, divisor: int) -> tuple[npt.NDArray[np.int64], int]:
    """Apply SCALAR/DIVISOR exactly: (integer values, extra power of ten)."""
    scaled = values * scalar
    exponent = 0
    d = divisor
    while d % 10 == 0 and d > 1:
        d //= 10
        exponent -= 1
    if d != 1:
        inexact = np.flatnonzero(scaled % d)
        if len(inexact):
            raise TableError(f"ST62 divisor {divisor} does not divide the interval data exactly: "
                             f"{int(values[inexact[0]])} x scalar {scalar} is not a multiple of {d} "
                             f"({len(inexact)} of {len(values)} intervals)")
        scaled = scaled // d
    return scaled, exponent


def reading_type(spec: ChannelSpec, multiplier: int, accumulation: int, channel: int) -> pb.ReadingType:
    return pb.ReadingType(commodity=spec.commodity, kind=spec.kind, unit=spec.unit,  # type: ignore[arg-type]
                          flow_direction=spec.flow_direction, accumulation=accumulation,  # type: ignore[arg-type]
                          power_of_ten_multiplier=multiplier, device_channel=f"ST64/{channel + 1}")


def lp_reading_type(spec: ChannelSpec, divisor: int, channel: int) -> pb.ReadingType:
    """The reading type of LP ``channel`` whose ST62 divisor is ``divisor``."""
    exponent = 0
    while divisor % 10 == 0 and divisor > 1:
        divisor //= 10
        exponent -= 1
    return reading_type(spec, spec.power_of_ten_multiplier + exponent, pb.ACCUMULATION_DELTA, channel)


def _timestamp(epoch_seconds: int) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(epoch_seconds))
    return ts


def interval_blocks(meter_id: str, lp: LpRead, channels: Sequence[ChannelSpec],
                    mapping: NibbleMapping) -> list[pb.IntervalBlock]:
    """One IntervalBlock per channel and run of consecutive intervals within a UTC day
    (the day of the interval's start, as the store slots them)."""
    n_channels = lp.values.shape[1]
    if n_channels > len(channels):
        raise TableError(f"meter has {n_channels} LP channels, config describes {len(channels)}")
    if len(lp.ends) == 0:
        return []
    step = lp.interval_seconds
    qualities = interval_qualities(lp.status, n_channels, mapping)
    starts = lp.ends - step
    day = starts // SECONDS_PER_DAY
    breaks = np.flatnonzero((np.diff(lp.ends) != step) | (np.diff(day) != 0)) + 1
    bounds = np.concatenate(([0], breaks, [len(lp.ends)]))
    blocks: list[pb.IntervalBlock] = []
    for c in range(n_channels):
        try:
            values, _ = scale(lp.values[:, c], lp.scalars[c] if lp.scalars else 1,
                              lp.divisors[c] if lp.divisors else 1)
        except TableError as exc:
            raise TableError(f"LP channel {c + 1}: {exc.message}") from exc
        rt = lp_reading_type(channels[c], lp.divisors[c] if lp.divisors else 1, c)
        for lo, hi in itertools.pairwise(bounds):
            block = pb.IntervalBlock(meter_id=meter_id, interval_seconds=step)
            block.reading_type.CopyFrom(rt)
            block.first_interval_end_time.CopyFrom(_timestamp(int(lp.ends[lo])))
            block.values.extend(values[lo:hi].tolist())
            q = qualities[lo:hi, c]
            if np.any(q):
                block.qualities.extend(q.tolist())
            blocks.append(block)
    return blocks


def register_reads(meter_id: str, snapshot: RegisterSnapshot,
                   channels: Sequence[ChannelSpec]) -> list[pb.RegisterRead]:
    ts = Timestamp()
    ts.FromDatetime(snapshot.read_time.astimezone(UTC))
    out = []
    for i, value in enumerate(snapshot.summations[:len(channels)]):
        spec = channels[i]
        rt = reading_type(spec, spec.power_of_ten_multiplier + snapshot.decimal_exponent,
                          pb.ACCUMULATION_CUMULATIVE, i)
        rt.device_channel = f"ST23/summation {i + 1}"
        read = pb.RegisterRead(meter_id=meter_id, value=value)
        read.reading_type.CopyFrom(rt)
        read.read_time.CopyFrom(ts)
        out.append(read)
    return out


def to_batch(read: MeterRead, channels: Sequence[ChannelSpec], mapping: NibbleMapping,
             adapter_type: str = "c1222", head_end: str = "") -> pb.ReadingBatch:
    batch = pb.ReadingBatch()
    batch.source.adapter_type = adapter_type
    batch.source.head_end = head_end
    if read.lp is not None:
        batch.interval_blocks.extend(interval_blocks(read.meter_id, read.lp, channels, mapping))
    if read.registers is not None:
        batch.register_reads.extend(register_reads(read.meter_id, read.registers, channels))
    first = int(read.lp.ends[0]) if read.lp is not None and len(read.lp.ends) else 0
    last = int(read.lp.ends[-1]) if read.lp is not None and len(read.lp.ends) else 0
    batch.idempotency_key = f"c1222:{read.meter_id}:{first}:{last}:" + (
        str(int(read.registers.read_time.timestamp())) if read.registers is not None else "")
    return batch
