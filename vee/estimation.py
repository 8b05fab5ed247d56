"""Estimation methods and the merge rule for late actuals.

All arithmetic is exact integer arithmetic. Where a method produces fractions,
estimates are the differences of *rounded running totals* (round half up), so
each estimate is within one count of the exact figure and the estimates of a
gap always sum to the exact total rounded half up: nothing is gained or lost
to rounding across a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vee import flags as f
from vee.config import LikeDayEstimation, ScaleToRegisterEstimation
from vee.localtime import DayTypeFunction
from vee.runs import BoolArray, Int64Array, RowGrid, expand_runs, positions_in_runs
from vee.validation import SpanLayout

# Bits an estimate replaces on a slot: it is no longer missing.
_ESTIMATE_CLEAR = ~(f.MISSING | f.HUB_ESTIMATE_METHODS | f.ESTIMATE_SCALED)
# Above this, the int64 interpolation totals might overflow: use Python ints.
_SAFE_MAGNITUDE = 2**62


def round_half_up_div(num: Int64Array, den: Int64Array | int) -> Int64Array:
    """floor(num / den + 1/2) for den > 0, exactly."""
    return np.asarray((2 * num + den) // (2 * np.asarray(den)), dtype=np.int64)


def mark_estimated(qualities: Int64Array, mask: BoolArray, method: int) -> None:
    qualities[mask] = (qualities[mask] & _ESTIMATE_CLEAR) | f.ESTIMATED | method


def zero_fill(values: Int64Array, qualities: Int64Array, missing: BoolArray) -> BoolArray:
    """Fill missing intervals that carry POWER_FAIL (a flagged outage) with 0."""
    mask: BoolArray = missing & ((qualities & f.POWER_FAIL) != 0)
    values[mask] = 0
    mark_estimated(qualities, mask, f.ESTIMATE_ZERO_FILL)
    return mask


def interpolate_gap(a: int, b: int, n: int) -> list[int]:
    """Estimates for n missing intervals between actuals a and b (reference
    implementation, Python ints): x_k = a + (b - a) k / (n + 1), delivered as
    differences of the half-up rounded running totals of x."""
    den = 2 * (n + 1)
    totals = [0] + [(2 * (den * k * a + (b - a) * k * (k + 1)) + den) // (2 * den) for k in range(1, n + 1)]
    return [totals[k] - totals[k - 1] for k in range(1, n + 1)]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Per batch row: the previous day's last interval from history, if usable."""

    values: Int64Array
    usable: BoolArray


def interpolate(
    grid: RowGrid,
    values: Int64Array,
    qualities: Int64Array,
    missing: BoolArray,
    max_slots: int,
    left_from_history: Endpoints | None = None,
) -> BoolArray:
    """Linear interpolation over gaps of at most ``max_slots`` intervals.

    Both neighbours must be present and must not carry POWER_FAIL: an outage
    interval is never an endpoint. A gap starting at midnight may take its
    left endpoint from the previous day (in the batch or in history).
    """
    s = grid.slots
    v = values.reshape(-1)
    q = qualities.reshape(-1)
    starts, ends = grid.runs(missing)
    n = ends - starts + 1
    keep = n <= max_slots
    starts, ends, n = starts[keep], ends[keep], n[keep]
    filled = np.zeros(values.shape, dtype=np.bool_)
    if len(starts) == 0:
        return filled
    endpoint = (q & (f.MISSING | f.POWER_FAIL)) == 0
    prev_def = grid.previous_defined()
    li = np.maximum(starts - 1, 0)
    left_ok = prev_def[starts] & endpoint[li]
    left_val = v[li].copy()
    if left_from_history is not None:
        rows = starts // s
        from_hist = ~prev_def[starts] & (starts % s == 0) & left_from_history.usable[rows]
        left_val = np.where(from_hist, left_from_history.values[rows], left_val)
        left_ok |= from_hist
    ri = np.minimum(ends + 1, v.size - 1)
    right_ok = (ends + 1 < v.size) & prev_def[ri] & endpoint[ri]
    sel = left_ok & right_ok
    starts, ends, n, a, b = starts[sel], ends[sel], n[sel], left_val[sel], v[ri][sel]
    if len(starts) == 0:
        return filled
    big = np.maximum(np.abs(a), np.abs(b)) >= _SAFE_MAGNITUDE // (8 * (n + 1) ** 2)
    idx = expand_runs(starts, ends)
    k = positions_in_runs(starts, ends)
    nn, aa, bb = np.repeat(n, n), np.repeat(a, n), np.repeat(b, n)
    den = 2 * (nn + 1)

    def total(kk: Int64Array) -> Int64Array:
        return round_half_up_div(den * kk * aa + (bb - aa) * kk * (kk + 1), den)

    est = total(k) - total(k - 1)
    if big.any():
        pos = np.cumsum(n) - n
        for g in np.flatnonzero(big).tolist():
            exact = interpolate_gap(int(a[g]), int(b[g]), int(n[g]))
            est[pos[g] : pos[g] + n[g]] = exact
    v[idx] = est
    flat = filled.reshape(-1)
    flat[idx] = True
    mark_estimated(qualities, filled, f.ESTIMATE_INTERPOLATED)
    return filled


@dataclass(frozen=True, slots=True)
class DayPool:
    """Candidate days for like-day estimation, sorted by (channel, day)."""

    channel_ids: Int64Array
    days: Int64Array
    values: Int64Array
    day_types: Int64Array


def build_pool(
    grid: RowGrid,
    values: Int64Array,
    qualities: Int64Array,
    target_rows: Int64Array,
    history: Sequence[tuple[Int64Array, Int64Array, Int64Array, Int64Array]],
    day_types: DayTypeFunction,
) -> DayPool:
    """Clean days (no missing, outage or estimate) of the target rows' channels,
    from the batch and from history (rows the batch holds are taken from it)."""
    channels = np.unique(grid.channel_ids[target_rows])
    parts_ch, parts_day, parts_val = [], [], []
    batch_rows = np.flatnonzero(np.isin(grid.channel_ids, channels))
    clean = ~((qualities[batch_rows] & f.NOT_LIKE_DAY) != 0).any(axis=1)
    batch_rows = batch_rows[clean]
    parts_ch.append(grid.channel_ids[batch_rows])
    parts_day.append(grid.days[batch_rows])
    parts_val.append(values[batch_rows])
    for h_ch, h_day, h_val, h_q in history:
        rows = np.flatnonzero(np.isin(h_ch, channels))
        rows = rows[grid.find_rows(h_ch[rows], h_day[rows]) < 0]
        rows = rows[~((h_q[rows] & f.NOT_LIKE_DAY) != 0).any(axis=1)]
        parts_ch.append(h_ch[rows])
        parts_day.append(h_day[rows])
        parts_val.append(h_val[rows])
    ch = np.concatenate(parts_ch).astype(np.int64)
    day = np.concatenate(parts_day).astype(np.int64)
    val = np.concatenate(parts_val).astype(np.int64)
    order = np.lexsort((day, ch))
    ch, day, val = ch[order], day[order], val[order]
    # History may repeat a day: keep the first of each (channel, day).
    if len(ch) > 1:
        first = np.ones(len(ch), dtype=np.bool_)
        first[1:] = (ch[1:] != ch[:-1]) | (day[1:] != day[:-1])
        ch, day, val = ch[first], day[first], val[first]
    types = day_types(day) if len(day) else np.zeros(0, dtype=np.int64)
    return DayPool(ch, day, val, types)


def like_day(
    grid: RowGrid,
    values: Int64Array,
    qualities: Int64Array,
    missing: BoolArray,
    pool: DayPool,
    day_types: DayTypeFunction,
    rule: LikeDayEstimation,
) -> BoolArray:
    """Fill missing intervals with the per-slot average (rounded half up) of
    the ``rule.days`` most recent clean days of the same day type within
    ``lookback_days`` before the row's day."""
    filled = np.zeros(values.shape, dtype=np.bool_)
    target_rows = np.flatnonzero(missing.any(axis=1))
    if len(target_rows) == 0 or len(pool.channel_ids) == 0:
        return filled
    t_ch = grid.channel_ids[target_rows]
    t_day = grid.days[target_rows]
    t_type = day_types(t_day)
    lo = np.searchsorted(pool.channel_ids, t_ch, side="left")
    hi = np.searchsorted(pool.channel_ids, t_ch, side="right")
    for i, row in enumerate(target_rows.tolist()):
        a, b = int(lo[i]), int(hi[i])
        if a == b:
            continue
        days = pool.days[a:b]
        ok = (days < t_day[i]) & (days >= t_day[i] - rule.lookback_days) & (pool.day_types[a:b] == t_type[i])
        chosen = np.flatnonzero(ok)[-rule.days :]
        if len(chosen) < rule.min_days:
            continue
        sums = pool.values[a:b][chosen].sum(axis=0)
        avg = round_half_up_div(sums, len(chosen))
        need = missing[row]
        values[row, need] = avg[need]
        filled[row] = need
    mark_estimated(qualities, filled, f.ESTIMATE_LIKE_DAY)
    return filled


def _scale_to(est: list[int], target: int) -> list[int]:
    """Scale non-negative estimates to sum to ``target`` (rounded running totals)."""
    total = sum(est)
    m = len(est)
    out, prev, run = [], 0, 0
    for k, e in enumerate(est, start=1):
        run += e
        cur = (2 * run * target + total) // (2 * total) if total > 0 else (2 * k * target + m) // (2 * m)
        out.append(cur - prev)
        prev = cur
    return out


@dataclass(frozen=True, slots=True)
class ScaleOutcome:
    scaled: BoolArray
    # Span positions (in the layout) where estimates cannot meet the delta.
    failed_spans: Int64Array


def scale_to_register(
    values: Int64Array,
    qualities: Int64Array,
    estimated_now: BoolArray,
    layout: SpanLayout,
    rule: ScaleToRegisterEstimation,
) -> ScaleOutcome:
    """Scale interpolated and like-day estimates inside a register span so the
    span's intervals sum exactly to the register delta.

    Zero-filled outage intervals stay 0. A span is left alone when it still
    has missing intervals; it fails when the actual intervals alone exceed the
    delta, or when nothing scalable is left to absorb a difference.
    """
    scaled = np.zeros(values.shape, dtype=np.bool_)
    failed: list[int] = []
    if not rule.enabled or len(layout.flat_start) == 0:
        return ScaleOutcome(scaled, np.zeros(0, dtype=np.int64))
    v = values.reshape(-1)
    q = qualities.reshape(-1)
    est = estimated_now.reshape(-1)
    sflat = scaled.reshape(-1)
    for i, (s0, s1) in enumerate(zip(layout.flat_start.tolist(), layout.flat_end.tolist(), strict=True)):
        seg_est = est[s0 : s1 + 1]
        if not seg_est.any():
            continue
        seg_q = q[s0 : s1 + 1]
        if ((seg_q & f.MISSING) != 0).any():
            continue
        scalable = seg_est & ((seg_q & f.ESTIMATE_ZERO_FILL) == 0)
        seg_v = v[s0 : s1 + 1]
        fixed = sum(int(x) for x in seg_v[~scalable].tolist())
        target = int(layout.deltas[i]) - fixed
        current = [int(x) for x in seg_v[scalable].tolist()]
        if target < 0 or not current or any(x < 0 for x in current):
            if target != sum(current):
                failed.append(i)
            continue
        new = _scale_to(current, target)
        positions = np.flatnonzero(scalable) + s0
        v[positions] = new
        q[positions] |= f.ESTIMATE_SCALED
        sflat[positions] = True
    return ScaleOutcome(scaled, np.array(failed, dtype=np.int64))


def late_actual_replaces(stored_qualities: Int64Array, incoming_qualities: Int64Array) -> BoolArray:
    """Where an incoming read replaces the stored interval (element-wise).

    An incoming actual (present, not an estimate) replaces a stored missing
    interval or any stored estimate (the hub's, approved or not, and a
    head-end's), but never a person's edit. An incoming estimate only fills a
    missing interval. The store keeps the replaced value as an older version;
    a replaced estimate is a revision that subscribers are told about.
    """
    inc_present = (incoming_qualities & f.MISSING) == 0
    inc_actual = inc_present & ((incoming_qualities & (f.ESTIMATED | f.HUB_ESTIMATE_METHODS)) == 0)
    s_missing = (stored_qualities & f.MISSING) != 0
    s_estimate = ~s_missing & ((stored_qualities & (f.ESTIMATED | f.HUB_ESTIMATE_METHODS)) != 0)
    s_edited = (stored_qualities & f.EDITED) != 0
    return np.asarray((inc_present & s_missing) | (inc_actual & s_estimate & ~s_edited), dtype=np.bool_)
