"""Turning canonical batches into channel-day arrays and merging them with what
is stored. Pure: no I/O, whole batches as numpy arrays.

A slot of a channel-day holds the interval whose START falls in that slot, so
an interval ending at 00:00 UTC is the last slot of the previous day
(intervals are identified by their end time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gateway.errors import IngestRejected, MisalignedInterval
from gateway.quality import ALL_BITS, EDITED, HUB_ESTIMATE_BITS, MISSING, SOURCE_BITS
from meterhub.v1 import model_pb2 as pb
from store.exceptions import NewException

SECONDS_PER_DAY = 86_400
# A block longer than a year of 1-minute data is not a meter read, it is a mistake.
MAX_VALUES_PER_BLOCK = 527_040
# Channel-days are grouped by the key channel_id * DAY_KEY_SPAN + day (days since
# 1970-01-01 UTC), so an interval must start on a day in [0, DAY_KEY_SPAN): a day
# outside would fold into another channel's key (another meter's data).
DAY_KEY_SPAN = 1_000_000
LATEST_START_SECONDS = DAY_KEY_SPAN * SECONDS_PER_DAY - 1
LATEST_START = "4707-11-28T23:59:59Z"  # LATEST_START_SECONDS as RFC 3339
# Text columns of store/schema.py that a batch fills: longer values are refused
# here, since PostgreSQL would fail the whole transaction on them.
MAX_CODE_CHARS = 64  # channels.cim_code, channels.device_channel, meter_events.cim_code
MAX_IDEMPOTENCY_KEY_CHARS = 256  # ingested_batches.idempotency_key
MAX_HEAD_END_CHARS = 128  # interval_blocks.head_end, source_stats.head_end, ...
MAX_ADAPTER_TYPE_CHARS = 64  # source_stats.adapter_type
MAX_POWER_OF_TEN = 18
INT64_MAX = np.iinfo(np.int64).max

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def reading_type_key(rt: pb.ReadingType) -> str:
    """The identity of a channel's quantity, without its resolution."""
    return f"{rt.commodity}.{rt.kind}.{rt.unit}.{rt.flow_direction}.{rt.accumulation}"


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """What ingest needs to know of a channel (or the channel it will create)."""

    meter_id: str
    reading_type_key: str
    interval_seconds: int


@dataclass(slots=True)
class ParsedBlocks:
    """Every interval value of a batch, flattened: one entry per read."""

    refs: list[ChannelRef]
    reading_types: list[pb.ReadingType]
    multiplier_applied: list[bool]
    block_of_read: Int64Array
    start_seconds: Int64Array
    values: Int64Array
    qualities: Int64Array


def _reject(message: str, index: int, block: pb.IntervalBlock, *, misaligned: bool = False) -> IngestRejected:
    meta = {"block_index": str(index), "meter_id": block.meter_id}
    if misaligned:
        return MisalignedInterval(message, metadata=meta)
    return IngestRejected(message, metadata=meta)


def validate_reading_type(rt: pb.ReadingType, where: str) -> None:
    if rt.unit == pb.UNIT_UNSPECIFIED:
        raise IngestRejected(f"{where}: reading_type.unit is unspecified")
    if abs(rt.power_of_ten_multiplier) > MAX_POWER_OF_TEN:
        raise IngestRejected(
            f"{where}: reading_type.power_of_ten_multiplier {rt.power_of_ten_multiplier} is out of range"
        )
    for name in ("cim_code", "device_channel"):
        if len(getattr(rt, name)) > MAX_CODE_CHARS:
            raise IngestRejected(f"{where}: reading_type.{name} is longer than {MAX_CODE_CHARS} characters")


def parse_interval_blocks(batch: pb.ReadingBatch) -> ParsedBlocks:
    """Validate the batch's interval blocks and flatten them into arrays.

    Raises IngestRejected (or MisalignedInterval) naming the block and the problem.
    """
    refs: list[ChannelRef] = []
    rts: list[pb.ReadingType] = []
    applied: list[bool] = []
    starts: list[Int64Array] = []
    values: list[Int64Array] = []
    qualities: list[Int64Array] = []
    counts: list[int] = []
    for index, block in enumerate(batch.interval_blocks):
        where = f"interval_blocks[{index}] (meter {block.meter_id!r})"
        if not block.meter_id:
            raise _reject(f"interval_blocks[{index}]: meter_id is empty", index, block)
        interval = block.interval_seconds
        if interval <= 0 or SECONDS_PER_DAY % interval != 0:
            raise _reject(f"{where}: interval_seconds {interval} must be positive and divide 86400",
                          index, block, misaligned=True)
        n = len(block.values)
        if n == 0:
            raise _reject(f"{where}: no values", index, block)
        if n > MAX_VALUES_PER_BLOCK:
            raise _reject(f"{where}: {n} values exceed the limit of {MAX_VALUES_PER_BLOCK}", index, block)
        if len(block.qualities) not in (0, n):
            raise _reject(f"{where}: {len(block.qualities)} qualities for {n} values", index, block)
        if not block.HasField("first_interval_end_time"):
            raise _reject(f"{where}: first_interval_end_time is missing", index, block)
        ts = block.first_interval_end_time
        if ts.nanos != 0 or ts.seconds % interval != 0:
            raise _reject(
                f"{where}: first interval end {ts.ToJsonString()} is not aligned to {interval} s intervals",
                index, block, misaligned=True,
            )
        validate_reading_type(block.reading_type, where)
        first_start = ts.seconds - interval
        if first_start < 0 or first_start + interval * (n - 1) > LATEST_START_SECONDS:
            raise _reject(f"{where}: intervals from first end {ts.ToJsonString()} fall outside the storable "
                          f"range: they must start from 1970-01-01T00:00:00Z to {LATEST_START}", index, block)
        refs.append(ChannelRef(block.meter_id, reading_type_key(block.reading_type), interval))
        rts.append(block.reading_type)
        applied.append(block.meter_multiplier_applied)
        starts.append(first_start + interval * np.arange(n, dtype=np.int64))
        values.append(np.array(block.values, dtype=np.int64))
        if block.qualities:
            q = np.array(block.qualities, dtype=np.int64)
            if int(q.min()) < 0 or int(np.bitwise_or.reduce(q)) & ~ALL_BITS:
                raise _reject(f"{where}: qualities hold bits that are not QualityFlag values", index, block)
            qualities.append(q)
        else:
            qualities.append(np.zeros(n, dtype=np.int64))
        counts.append(n)
    if not refs:
        empty = np.zeros(0, dtype=np.int64)
        return ParsedBlocks([], [], [], empty, empty, empty, empty)
    return ParsedBlocks(
        refs=refs,
        reading_types=rts,
        multiplier_applied=applied,
        block_of_read=np.repeat(np.arange(len(refs), dtype=np.int64), counts),
        start_seconds=np.concatenate(starts),
        values=np.concatenate(values),
        qualities=np.concatenate(qualities),
    )


def scale_factors(
    parsed: ParsedBlocks,
    channel_exponents: list[int],
    meter_multipliers: list[int],
) -> Int64Array:
    """Per-read integer factor that brings each value to its channel's
    resolution and applies the meter multiplier; rejects lossy conversions."""
    factors = np.ones(len(parsed.refs), dtype=np.int64)
    for i, rt in enumerate(parsed.reading_types):
        diff = rt.power_of_ten_multiplier - channel_exponents[i]
        mult = 1 if parsed.multiplier_applied[i] else max(meter_multipliers[i], 1)
        if diff < 0:
            mask = parsed.block_of_read == i
            divisor = 10 ** (-diff)
            if np.any(parsed.values[mask] % divisor):
                raise IngestRejected(
                    f"interval_blocks[{i}] (meter {parsed.refs[i].meter_id!r}): values at 10^"
                    f"{rt.power_of_ten_multiplier} would lose precision in the channel's resolution "
                    f"10^{channel_exponents[i]}",
                    reason="PRECISION_LOSS",
                )
            parsed.values[mask] //= divisor
            factors[i] = mult
        else:
            factors[i] = mult * 10**diff
    return factors


def normalise_values(parsed: ParsedBlocks, factors: Int64Array) -> None:
    """Multiply every read by its block's factor, in place, refusing int64 overflow."""
    per_read = factors[parsed.block_of_read]
    if np.any(per_read != 1):
        limit = INT64_MAX // np.maximum(per_read, 1)
        if np.any(np.abs(parsed.values) > limit):
            raise IngestRejected("a value overflows 64 bits after unit and multiplier normalisation",
                                 reason="VALUE_OVERFLOW")
        parsed.values *= per_read


@dataclass(slots=True)
class ChannelDays:
    """Channel-day rows of one interval length: the unit the store writes."""

    interval_seconds: int
    channel_ids: Int64Array
    days: Int64Array
    values: Int64Array  # [rows, slots]
    qualities: Int64Array  # [rows, slots]
    present: BoolArray  # [rows, slots]: the batch delivered this slot

    @property
    def slots(self) -> int:
        return SECONDS_PER_DAY // self.interval_seconds

    def __len__(self) -> int:
        return len(self.channel_ids)


def group_channel_days(parsed: ParsedBlocks, channel_ids: Int64Array) -> list[ChannelDays]:
    """Scatter the flattened reads into channel-day matrices, one per interval length.

    ``channel_ids`` has one entry per block. When a batch carries the same
    interval twice, the later read wins.
    """
    out: list[ChannelDays] = []
    intervals = np.array([r.interval_seconds for r in parsed.refs], dtype=np.int64)
    read_interval = intervals[parsed.block_of_read]
    for interval in np.unique(intervals):
        sel = read_interval == interval
        starts = parsed.start_seconds[sel]
        chan = channel_ids[parsed.block_of_read[sel]]
        day = starts // SECONDS_PER_DAY
        slot = (starts % SECONDS_PER_DAY) // interval
        key = chan * DAY_KEY_SPAN + day
        uniq, row = np.unique(key, return_inverse=True)
        slots = SECONDS_PER_DAY // int(interval)
        values = np.zeros((len(uniq), slots), dtype=np.int64)
        qualities = np.full((len(uniq), slots), MISSING, dtype=np.int64)
        present = np.zeros((len(uniq), slots), dtype=np.bool_)
        # Fancy assignment keeps the last of repeated indices: later reads win.
        values[row, slot] = parsed.values[sel]
        qualities[row, slot] = parsed.qualities[sel]
        present[row, slot] = (parsed.qualities[sel] & MISSING) == 0
        out.append(ChannelDays(int(interval), uniq // DAY_KEY_SPAN, uniq % DAY_KEY_SPAN, values, qualities, present))
    return out


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What a stage (VEE) run on channel-days hands back: the arrays to write,
    the exception items to open and counts per (rule, outcome)."""

    values: Int64Array
    qualities: Int64Array
    exceptions: list[NewException] = field(default_factory=list)
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(slots=True)
class MergeResult:
    """How incoming channel-days combine with the stored ones."""

    merged: ChannelDays
    # Per row: stored version (0 = new row), whether the row changes, whether a
    # stored actual or estimate was revised (the old version goes to history).
    stored_version: Int64Array
    changed: BoolArray
    revised: BoolArray
    intervals_new: int
    intervals_revised: int
    intervals_unchanged: int
    old_values: Int64Array = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    old_qualities: Int64Array = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))


def merge_with_stored(
    incoming: ChannelDays,
    stored_version: Int64Array,
    stored_values: Int64Array,
    stored_qualities: Int64Array,
) -> MergeResult:
    """Merge incoming rows over stored ones (rows aligned; version 0 = nothing stored).

    - an incoming read fills a missing slot: new interval;
    - differs from a stored actual, or replaces a hub estimate: revision;
    - equals the stored actual on value and source flags: unchanged (redelivery);
    - a slot a person edited is kept: source data does not overwrite edits.
    """
    exists = stored_version > 0
    s_missing = (stored_qualities & MISSING) != 0
    s_estimate = (stored_qualities & HUB_ESTIMATE_BITS) != 0
    s_edited = (stored_qualities & EDITED) != 0
    s_actual = exists[:, None] & ~s_missing & ~s_estimate
    inc = incoming.present & ~(exists[:, None] & s_edited)
    same = (stored_values == incoming.values) & (
        (stored_qualities & SOURCE_BITS) == (incoming.qualities & SOURCE_BITS)
    )
    unchanged = inc & s_actual & same
    revised_slots = inc & ((s_actual & ~same) | (exists[:, None] & s_estimate & ~s_missing))
    new_slots = inc & ~unchanged & ~revised_slots
    write = new_slots | revised_slots
    # A slot the source reports as missing with flags of its own (power
    # fail, skipped...) keeps them where nothing better is stored: VEE needs
    # them (an outage is zero-filled, never interpolated across).
    flagged_gap = (~incoming.present & ((incoming.qualities & ~MISSING) != 0)
                   & ~(exists[:, None] & (~s_missing | s_edited)))
    gap_news = flagged_gap & ~(exists[:, None] & (stored_qualities == incoming.qualities))
    values = np.where(write, incoming.values, stored_values)
    qualities = np.where(write | flagged_gap, incoming.qualities,
                         np.where(exists[:, None], stored_qualities, MISSING))
    # Incoming rows that only report missing slots still create a row (the
    # gap is known), but must not wipe stored data.
    changed = write.any(axis=1) | ~exists | gap_news.any(axis=1)
    revised = revised_slots.any(axis=1)
    merged = ChannelDays(incoming.interval_seconds, incoming.channel_ids, incoming.days,
                         values, qualities, (qualities & MISSING) == 0)
    return MergeResult(
        merged=merged,
        stored_version=stored_version,
        changed=changed,
        revised=revised,
        intervals_new=int(new_slots.sum()),
        intervals_revised=int(revised_slots.sum()),
        intervals_unchanged=int((incoming.present & ~write).sum()),
        old_values=stored_values,
        old_qualities=stored_qualities,
    )
