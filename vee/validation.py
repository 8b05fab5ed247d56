"""Validation rules: each a pure function over the whole [rows, slots] batch.

Each returns a boolean mask of the intervals that fail; the engine turns masks
into FAILED_* bits and exception items. Values are never changed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meterhub.v1 import model_pb2 as pb
from vee import flags as f
from vee.config import (
    FlatLineRule,
    HighLimitRule,
    InactiveUsageRule,
    LowLimitRule,
    MeterStatusRule,
    NegativeRule,
    SpikeRule,
    SumCheckRule,
    TimeToleranceRule,
    ZeroRunRule,
)
from vee.runs import BoolArray, Int64Array, RowGrid

FLOW_DIRECTION_CODES = {
    "delivered": int(pb.FLOW_DIRECTION_DELIVERED),
    "received": int(pb.FLOW_DIRECTION_RECEIVED),
    "net": int(pb.FLOW_DIRECTION_NET),
    "total": int(pb.FLOW_DIRECTION_TOTAL),
}
PPM = 1_000_000


def hours_to_slots(hours: float, interval_seconds: int) -> int:
    """Intervals needed to cover ``hours`` (at least one)."""
    return max(1, math.ceil(round(hours * 3600) / interval_seconds))


def negative(values: Int64Array, present: BoolArray, flow_directions: Int64Array, rule: NegativeRule) -> BoolArray:
    codes = np.array([FLOW_DIRECTION_CODES[d] for d in rule.flow_directions], dtype=np.int64)
    rows = np.isin(flow_directions, codes)
    return present & (values < 0) & rows[:, None]


def high_limit(
    values: Int64Array,
    present: BoolArray,
    interval_seconds: int,
    rule: HighLimitRule,
    per_row_per_hour: Int64Array | None = None,
) -> BoolArray:
    """value x 3600 > limit_per_hour x interval, exactly: value > floor(limit x I / 3600)."""
    limit = rule.max_per_hour * interval_seconds // 3600
    if per_row_per_hour is None:
        return present & (values > limit)
    row_limit = np.where(per_row_per_hour > 0, per_row_per_hour * interval_seconds // 3600, limit)
    return present & (values > row_limit[:, None])


def low_limit(values: Int64Array, present: BoolArray, interval_seconds: int, rule: LowLimitRule) -> BoolArray:
    """value x 3600 < limit_per_hour x interval, exactly: value < ceil(limit x I / 3600)."""
    limit = -((-rule.min_per_hour * interval_seconds) // 3600)
    return present & (values < limit)


def spike(values: Int64Array, present: BoolArray, rule: SpikeRule) -> BoolArray:
    """Intervals above the channel-day's third-highest value by more than
    ``percent``: value x 100 > third x (100 + percent), and value >= min_value.

    The 24-hour window is the channel-day row. Missing intervals take no part.
    """
    rows, slots = values.shape
    if slots < 3 or rows == 0:
        return np.zeros(values.shape, dtype=np.bool_)
    floor = np.iinfo(np.int64).min
    masked = np.where(present, values, floor)
    third = np.partition(masked, slots - 3, axis=1)[:, slots - 3]
    # A row with fewer than three values has no third-highest: no spike.
    third_ok = third != floor
    threshold = np.where(third_ok, third, 0) * (100 + rule.percent)
    out: BoolArray = present & third_ok[:, None] & (values >= rule.min_value) & (values * 100 > threshold[:, None])
    return out


def zero_run(
    grid: RowGrid,
    values: Int64Array,
    qualities: Int64Array,
    present: BoolArray,
    active: BoolArray,
    rule: ZeroRunRule,
    flow_directions: Int64Array | None = None,
) -> BoolArray:
    """Runs of zero intervals on an active meter lasting ``min_hours`` or more,
    on channels of the rule's flow directions. Intervals flagged POWER_FAIL are
    an outage, not a zero read: they break the run and never fail."""
    rows = active
    if flow_directions is not None:
        codes = np.array([FLOW_DIRECTION_CODES[d] for d in rule.flow_directions], dtype=np.int64)
        rows = active & np.isin(flow_directions, codes)
    zero = present & (values == 0) & ((qualities & f.POWER_FAIL) == 0) & rows[:, None]
    starts, ends = grid.runs(zero)
    keep = (ends - starts + 1) >= hours_to_slots(rule.min_hours, grid.interval_seconds)
    return grid.mark(starts[keep], ends[keep])


def flat_line(grid: RowGrid, values: Int64Array, present: BoolArray, rule: FlatLineRule) -> BoolArray:
    """Runs of the same non-zero value lasting ``min_hours`` or more."""
    v = values.reshape(-1)
    p = present.reshape(-1)
    same = np.zeros(v.size, dtype=np.bool_)
    if v.size > 1:
        same[1:] = (v[1:] == v[:-1]) & p[1:] & p[:-1] & (v[1:] != 0)
        same[grid.breaks] = False
    starts, ends = grid.runs(same.reshape(values.shape))
    # A run of k equal values has k - 1 "same as previous" flags; include its first.
    keep = (ends - starts + 2) >= hours_to_slots(rule.min_hours, grid.interval_seconds)
    return grid.mark(starts[keep] - 1, ends[keep])


def time_tolerance(
    qualities: Int64Array, present: BoolArray, clock_error_seconds: Int64Array | None, rule: TimeToleranceRule
) -> BoolArray:
    """CLOCK_SET intervals, and every interval of a row whose meter clock was
    off by more than ``max_clock_error_seconds``."""
    mask = np.zeros(qualities.shape, dtype=np.bool_)
    if rule.flag_clock_set:
        mask |= present & ((qualities & f.CLOCK_SET) != 0)
    if clock_error_seconds is not None:
        mask |= present & (np.abs(clock_error_seconds) > rule.max_clock_error_seconds)[:, None]
    return mask


def meter_status(qualities: Int64Array, rule: MeterStatusRule) -> BoolArray:
    """Intervals carrying any of the configured device status flags."""
    bits = 0
    for name in rule.flags:
        bits |= f.STATUS_FLAG_BITS[name]
    out: BoolArray = (qualities & bits) != 0
    return out


def inactive_usage(values: Int64Array, present: BoolArray, active: BoolArray, rule: InactiveUsageRule) -> BoolArray:
    """Non-zero intervals of an inactive meter's row whose usage reaches ``min_total``."""
    inactive = ~active
    mask = np.zeros(values.shape, dtype=np.bool_)
    if not inactive.any():
        return mask
    rows = np.flatnonzero(inactive)
    v = values[rows]
    used = present[rows] & (v != 0)
    total = np.where(used, np.abs(v), 0).sum(axis=1)
    mask[rows] = used & (total >= rule.min_total)[:, None]
    return mask


@dataclass(frozen=True, slots=True)
class SpanLayout:
    """Register spans resolved to flat [start, end] index ranges of the batch."""

    span_index: Int64Array  # which RegisterSpans entries could be placed
    flat_start: Int64Array
    flat_end: Int64Array
    deltas: Int64Array
    start_seconds: Int64Array
    end_seconds: Int64Array
    channel_ids: Int64Array


def place_spans(
    grid: RowGrid,
    channel_ids: Int64Array,
    start_seconds: Int64Array,
    end_seconds: Int64Array,
    deltas: Int64Array,
) -> SpanLayout:
    """Keep the spans that are aligned and whose intervals all lie in the batch."""
    interval = grid.interval_seconds
    s = grid.slots
    ok = (start_seconds % interval == 0) & (end_seconds % interval == 0) & (end_seconds > start_seconds)
    first = start_seconds // interval
    last = end_seconds // interval - 1
    day_s, day_e = first // s, last // s
    row_s = grid.find_rows(channel_ids, day_s)
    row_e = grid.find_rows(channel_ids, day_e)
    ok &= (row_s >= 0) & (row_e >= 0) & (row_e - row_s == day_e - day_s)
    idx = np.flatnonzero(ok).astype(np.int64)
    return SpanLayout(
        span_index=idx,
        flat_start=(row_s[idx] * s + first[idx] % s).astype(np.int64),
        flat_end=(row_e[idx] * s + last[idx] % s).astype(np.int64),
        deltas=deltas[idx],
        start_seconds=start_seconds[idx],
        end_seconds=end_seconds[idx],
        channel_ids=channel_ids[idx],
    )


def span_sums(values: Int64Array, mask: BoolArray, layout: SpanLayout) -> Int64Array:
    """Sum of ``values`` where ``mask`` over each placed span.

    Wrap-around in the running total cancels in the difference, so the result
    is exact whenever the span's own sum fits in int64."""
    if len(layout.flat_start) == 0:
        return np.zeros(0, dtype=np.int64)
    csum = np.cumsum(np.where(mask, values, 0).reshape(-1), dtype=np.int64)
    before = np.where(layout.flat_start > 0, csum[np.maximum(layout.flat_start - 1, 0)], 0)
    with np.errstate(over="ignore"):
        return (csum[layout.flat_end] - before).astype(np.int64)


def span_counts(mask: BoolArray, layout: SpanLayout) -> Int64Array:
    if len(layout.flat_start) == 0:
        return np.zeros(0, dtype=np.int64)
    csum = np.cumsum(mask.reshape(-1), dtype=np.int64)
    before = np.where(layout.flat_start > 0, csum[np.maximum(layout.flat_start - 1, 0)], 0)
    return (csum[layout.flat_end] - before).astype(np.int64)


def outside_tolerance(sums: Int64Array, deltas: Int64Array, rule: SumCheckRule) -> BoolArray:
    """|sum - delta| > max(tolerance_percent of |delta|, tolerance_counts), exactly."""
    tol_ppm = round(rule.tolerance_percent * 10_000)
    diff = np.abs(sums - deltas)
    # |diff| x 10^6 stays below 2**63 for |values| < 2**43: vectorised; else Python ints.
    safe = (diff < 2**43) & (np.abs(deltas) < 2**43)
    fail = (diff * PPM > tol_ppm * np.abs(deltas)) & (diff > rule.tolerance_counts)
    for i in np.flatnonzero(~safe).tolist():
        d = abs(int(sums[i]) - int(deltas[i]))
        fail[i] = d * PPM > tol_ppm * abs(int(deltas[i])) and d > rule.tolerance_counts
    return np.asarray(fail & (diff != 0), dtype=np.bool_)
