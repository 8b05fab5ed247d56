"""The VEE engine: validate, estimate and report over a whole batch at once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vee import estimation as est
from vee import flags as f
from vee import validation as val
from vee.batch import History, RegisterSpans, VeeBatch, VeeContext
from vee.config import RuleSet, VeeConfig
from vee.items import ExceptionItem, Severity, items_from_runs, utc
from vee.localtime import DayTypeCalendar
from vee.runs import SECONDS_PER_DAY, BoolArray, Int64Array, RowGrid

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VeeResult:
    """Outcome of a run, rows in the order of the batch.

    ``values``/``qualities`` are new arrays (the batch is not modified):
    estimates filled, FAILED_*/SUSPECT/VALIDATED and estimate method bits set.
    ``counts`` maps (rule, outcome) to a number: outcomes are "failed"
    (intervals), "items", "filled"/"scaled" (estimation), "intervals",
    "unfilled", "checked".
    """

    values: Int64Array
    qualities: Int64Array
    items: tuple[ExceptionItem, ...]
    counts: Mapping[tuple[str, str], int]
    estimated_rows: BoolArray = field(repr=False)

    def count(self, rule: str, outcome: str) -> int:
        return self.counts.get((rule, outcome), 0)


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """Channel-days the caller should load as History before :meth:`VeeEngine.run`:
    for each channel, days first_days[i]..last_days[i] inclusive."""

    channel_ids: Int64Array
    first_days: Int64Array
    last_days: Int64Array


def _days(days: npt.NDArray[Any]) -> Int64Array:
    arr = np.asarray(days)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[D]").astype(np.int64)
    return arr.astype(np.int64)


class VeeEngine:
    """Runs the configured rule sets over channel-day batches. Pure and
    thread-safe: it keeps no state between runs."""

    def __init__(self, config: VeeConfig) -> None:
        self._config = config

    @property
    def config(self) -> VeeConfig:
        return self._config

    def _groups(self, batch: VeeBatch) -> list[tuple[RuleSet, Int64Array | None]]:
        if isinstance(batch.meter_classes, str):
            return [(self._config.ruleset_for(batch.meter_classes), None)]
        classes = np.asarray(batch.meter_classes, dtype=object)
        names = np.array([self._config.ruleset_for(str(c)).name for c in classes.tolist()], dtype=object)
        out: list[tuple[RuleSet, Int64Array | None]] = []
        for name in sorted(set(names.tolist())):
            rows = np.flatnonzero(names == name).astype(np.int64)
            out.append((self._config.rulesets[name], None if len(rows) == len(names) else rows))
        return out

    def history_request(self, batch: VeeBatch) -> HistoryRequest:
        """Which stored channel-days a run of ``batch`` can use: for channels
        with missing or re-estimable intervals, the days before the batch up to
        the longest like-day look-back (or estimated-day count) of their rule set."""
        q = batch.qualities
        reest = ((q & f.HUB_ESTIMATE_METHODS) != 0) & ((q & (f.EDITED | f.APPROVED)) == 0)
        needs = (((q & f.MISSING) != 0) | reest).any(axis=1)
        days = _days(batch.days)
        lookback = np.zeros(len(batch), dtype=np.int64)
        for ruleset, rows in self._groups(batch):
            back = max(ruleset.like_day.lookback_days, ruleset.long_estimation.max_days + 1, 1)
            if rows is None:
                lookback[:] = back
            else:
                lookback[rows] = back
        sel = np.flatnonzero(needs)
        if len(sel) == 0:
            z = np.zeros(0, dtype=np.int64)
            return HistoryRequest(z, z, z)
        ch = batch.channel_ids[sel].astype(np.int64)
        order = np.argsort(ch, kind="stable")
        ch_s = ch[order]
        first_s = (days[sel] - lookback[sel])[order]
        last_s = (days[sel] - 1)[order]
        starts = np.flatnonzero(np.concatenate(([True], ch_s[1:] != ch_s[:-1])))
        return HistoryRequest(
            ch_s[starts],
            np.minimum.reduceat(first_s, starts).astype(np.int64),
            np.maximum.reduceat(last_s, starts).astype(np.int64),
        )

    def run(self, batch: VeeBatch, context: VeeContext | None = None) -> VeeResult:
        """Validate and estimate every row of ``batch`` with its meter class's rule set."""
        ctx = context or VeeContext()
        s = batch.slots
        if batch.values.shape != (len(batch), s) or batch.qualities.shape != (len(batch), s):
            raise ValueError(f"values and qualities must be [{len(batch)}, {s}] for {batch.interval_seconds} s")
        out_v = np.empty_like(batch.values)
        out_q = np.empty_like(batch.qualities)
        estimated_rows = np.zeros(len(batch), dtype=np.bool_)
        items: list[ExceptionItem] = []
        counts: Counter[tuple[str, str]] = Counter()
        days = _days(batch.days)
        for ruleset, rows in self._groups(batch):
            ch = batch.channel_ids.astype(np.int64)
            dy = days
            if rows is not None:
                ch, dy = ch[rows], dy[rows]
            order = np.lexsort((dy, ch)).astype(np.int64)
            perm = None if bool(np.all(order[1:] > order[:-1])) else order
            select = _RowSelect(rows, perm)
            v = select.take(batch.values).astype(np.int64, copy=True)
            q = select.take(batch.qualities).astype(np.int64, copy=True)
            if perm is not None:
                ch, dy = ch[perm], dy[perm]
            if len(ch) > 1 and np.any((ch[1:] == ch[:-1]) & (dy[1:] == dy[:-1])):
                raise ValueError("batch rows must be unique per (channel, day)")
            grid = RowGrid(ch, dy, batch.interval_seconds)
            run = _Run(ruleset, grid, v, q, ctx, batch, select, counts, items)
            run.execute()
            target = select.take(np.arange(len(batch), dtype=np.int64))
            out_v[target] = v
            out_q[target] = q
            estimated_rows[target] = run.estimated_rows
        counts[("batch", "rows")] += len(batch)
        counts[("batch", "intervals")] += len(batch) * s
        return VeeResult(out_v, out_q, tuple(items), dict(counts), estimated_rows)


@dataclass(frozen=True, slots=True)
class _RowSelect:
    """Rows of one rule-set group (None: all), in (channel, day) order."""

    rows: Int64Array | None
    perm: Int64Array | None

    def take(self, arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
        a = np.asarray(arr)
        if self.rows is not None:
            a = a[self.rows]
        if self.perm is not None:
            a = a[self.perm]
        return a

    def take_optional(self, arr: npt.NDArray[Any] | None) -> npt.NDArray[Any] | None:
        return None if arr is None else self.take(arr)


class _Run:
    """One rule set over one sorted group of rows (state of a single run)."""

    def __init__(self, rs: RuleSet, grid: RowGrid, v: Int64Array, q: Int64Array, ctx: VeeContext,
                 batch: VeeBatch, select: _RowSelect, counts: Counter[tuple[str, str]],
                 items: list[ExceptionItem]) -> None:
        self.rs, self.grid, self.v, self.q, self.ctx = rs, grid, v, q, ctx
        self.batch = batch
        self.select = select
        self.counts = counts
        self.items = items
        self.estimated_rows: BoolArray = np.zeros(len(grid.channel_ids), dtype=np.bool_)


    def _fail(self, rule: str, mask: BoolArray, bit: int, severity: Severity, message: str) -> None:
        n = int(np.count_nonzero(mask))
        if n == 0:
            return
        if bit:
            self.q[mask] |= bit
        new = items_from_runs(self.grid, mask, rule=rule, severity=severity, message=message)
        self.items.extend(new)
        self.counts[(rule, "failed")] += n
        self.counts[(rule, "items")] += len(new)

    def execute(self) -> None:
        rs, grid, v, q = self.rs, self.grid, self.v, self.q
        rows, s = v.shape
        interval = grid.interval_seconds
        # Start clean: drop flags of earlier runs, and turn the hub's own
        # estimates (not edited, not approved) back into gaps to re-estimate.
        q &= ~f.RUN_BITS
        reest = ((q & f.HUB_ESTIMATE_METHODS) != 0) & ((q & (f.EDITED | f.APPROVED)) == 0)
        if reest.any():
            q[reest] = (q[reest] & ~(f.ESTIMATED | f.HUB_ESTIMATE_METHODS | f.ESTIMATE_SCALED)) | f.MISSING
            v[reest] = 0
        if self.batch.as_of_seconds is None:
            due = np.ones((rows, s), dtype=np.bool_)
        else:
            due_count = np.clip((self.batch.as_of_seconds - grid.days * SECONDS_PER_DAY) // interval, 0, s)
            due = np.arange(s)[None, :] < due_count[:, None]
        present = (q & f.MISSING) == 0
        active = self.select.take(self.batch.active).astype(np.bool_)
        flows = self.select.take(self.batch.flow_directions).astype(np.int64)

        if rs.negative.enabled:
            self._fail("negative", val.negative(v, present, flows, rs.negative), f.FAILED_NEGATIVE,
                       rs.negative.severity, "{n} negative intervals on a delivered/received channel")
        if rs.high_limit.enabled:
            per_row = self.select.take_optional(self.batch.high_limit_per_hour)
            self._fail("high_limit", val.high_limit(v, present, interval, rs.high_limit, per_row),
                       f.FAILED_HIGH_LIMIT, rs.high_limit.severity, "{n} intervals above the high limit")
        if rs.low_limit.enabled:
            self._fail("low_limit", val.low_limit(v, present, interval, rs.low_limit), f.FAILED_LOW_LIMIT,
                       rs.low_limit.severity, "{n} intervals below the low limit")
        if rs.spike.enabled:
            self._fail("spike", val.spike(v, present, rs.spike), f.FAILED_SPIKE, rs.spike.severity,
                       f"{{n}} intervals exceed the day's third-highest by more than {rs.spike.percent}%")
        if rs.zero_run.enabled:
            self._fail("zero_run", val.zero_run(grid, v, q, present, active, rs.zero_run, flows), f.FAILED_ZERO_RUN,
                       rs.zero_run.severity, "{n} consecutive zero intervals on an active meter")
        if rs.flat_line.enabled:
            self._fail("flat_line", val.flat_line(grid, v, present, rs.flat_line), f.FAILED_FLAT_LINE,
                       rs.flat_line.severity, "{n} consecutive identical intervals")
        if rs.time_tolerance.enabled:
            clock = self.select.take_optional(self.batch.clock_error_seconds)
            self._fail("time_tolerance", val.time_tolerance(q, present, clock, rs.time_tolerance),
                       f.FAILED_TIME_TOLERANCE, rs.time_tolerance.severity,
                       "{n} intervals with a clock set or a clock error beyond tolerance")
        if rs.meter_status.enabled:
            self._fail("meter_status", val.meter_status(q, rs.meter_status), f.SUSPECT,
                       rs.meter_status.severity, f"{{n}} intervals flagged {'/'.join(rs.meter_status.flags)}")
        if rs.inactive_usage.enabled:
            self._fail("inactive_usage", val.inactive_usage(v, present, active, rs.inactive_usage),
                       f.FAILED_INACTIVE_USAGE, rs.inactive_usage.severity,
                       "{n} intervals of usage on an inactive meter")

        layout = self._spans()
        if layout is not None and rs.sum_check.enabled:
            complete = val.span_counts(~present, layout) == 0
            sums = val.span_sums(v, present, layout)
            fail = complete & val.outside_tolerance(sums, layout.deltas, rs.sum_check)
            self.counts[("sum_check", "checked")] += int(complete.sum())
            self._sum_check_failures(layout, np.flatnonzero(fail), sums)

        # Estimation.
        missing = ~present & due
        self.counts[("missing", "intervals")] += int(np.count_nonzero(missing))
        estimated_now = np.zeros((rows, s), dtype=np.bool_)
        if missing.any():
            if rs.zero_fill.enabled:
                filled = est.zero_fill(v, q, missing)
                self._filled("zero_fill", filled, missing, estimated_now)
            if rs.interpolate.enabled and missing.any():
                max_slots = round(rs.interpolate.max_gap_hours * 3600) // interval
                filled = est.interpolate(grid, v, q, missing, max_slots, self._left_endpoints())
                self._filled("interpolate", filled, missing, estimated_now)
            if rs.like_day.enabled and missing.any():
                day_types = self.ctx.day_types or DayTypeCalendar("UTC")
                targets = np.flatnonzero(missing.any(axis=1))
                pool = est.build_pool(grid, v, q, targets, self._history_parts(), day_types)
                filled = est.like_day(grid, v, q, missing, pool, day_types, rs.like_day)
                self._filled("like_day", filled, missing, estimated_now)
            if layout is not None and estimated_now.any():
                outcome = est.scale_to_register(v, q, estimated_now, layout, rs.scale_to_register)
                self.counts[("scale_to_register", "scaled")] += int(np.count_nonzero(outcome.scaled))
                if rs.sum_check.enabled and len(outcome.failed_spans):
                    sums = val.span_sums(v, (q & f.MISSING) == 0, layout)
                    self._sum_check_failures(layout, outcome.failed_spans, sums)
        if rs.missing.enabled:
            self.counts[("missing", "unfilled")] += int(np.count_nonzero(missing))
            new = items_from_runs(grid, missing, rule="missing", severity=rs.missing.severity,
                                  message="{n} missing intervals could not be estimated",
                                  min_intervals=rs.missing.min_intervals)
            if rs.missing.report_estimated:
                new += items_from_runs(grid, estimated_now, rule="missing", severity=Severity.INFO,
                                       message="{n} missing intervals were estimated")
            self.items.extend(new)
            self.counts[("missing", "items")] += len(new)

        failed = (q & f.ALL_FAILURES) != 0
        q[failed] |= f.SUSPECT
        ok = ((q & (f.MISSING | f.SUSPECT)) == 0) & ~estimated_now
        q[ok] |= f.VALIDATED
        self.estimated_rows = np.asarray(estimated_now.any(axis=1), dtype=np.bool_)
        if rs.long_estimation.enabled and self.estimated_rows.any():
            self._long_estimation()

    def _filled(self, method: str, filled: BoolArray, missing: BoolArray, estimated_now: BoolArray) -> None:
        n = int(np.count_nonzero(filled))
        if n:
            missing &= ~filled
            estimated_now |= filled
            self.counts[(method, "filled")] += n

    def _spans(self) -> val.SpanLayout | None:
        regs: RegisterSpans | None = self.ctx.registers
        if regs is None or len(regs) == 0:
            return None
        layout = val.place_spans(self.grid, regs.channel_ids.astype(np.int64), regs.start_seconds.astype(np.int64),
                                 regs.end_seconds.astype(np.int64), regs.deltas.astype(np.int64))
        return layout if len(layout.span_index) else None

    def _sum_check_failures(self, layout: val.SpanLayout, which: Int64Array, sums: Int64Array) -> None:
        rule = self.rs.sum_check
        for i in which.tolist():
            s0, s1 = int(layout.flat_start[i]), int(layout.flat_end[i])
            flat_q = self.q.reshape(-1)
            flat_q[s0 : s1 + 1] |= f.FAILED_SUM_CHECK
            self.items.append(ExceptionItem(
                "sum_check", int(layout.channel_ids[i]), utc(int(layout.start_seconds[i])),
                utc(int(layout.end_seconds[i])), rule.severity,
                f"intervals sum to {int(sums[i])}, register delta is {int(layout.deltas[i])}", s1 - s0 + 1,
            ))
            self.counts[("sum_check", "failed")] += s1 - s0 + 1
            self.counts[("sum_check", "items")] += 1

    def _history(self) -> History | None:
        hist = self.ctx.history
        if hist is None or len(hist.channel_ids) == 0:
            return None
        if hist.values.shape[1:] != (self.grid.slots,):
            raise ValueError("history rows must have the batch's slots per day")
        return hist

    def _history_parts(self) -> list[tuple[Int64Array, Int64Array, Int64Array, Int64Array]]:
        hist = self._history()
        if hist is None:
            return []
        return [(hist.channel_ids.astype(np.int64), _days(hist.days), hist.values, hist.qualities)]

    def _history_rows(self, channel_ids: Int64Array, days: Int64Array) -> tuple[History, Int64Array] | None:
        hist = self._history()
        if hist is None:
            return None
        hgrid_keys = (hist.channel_ids.astype(np.int64) << 21) | _days(hist.days)
        order = np.argsort(hgrid_keys, kind="stable")
        keys = (channel_ids << 21) | days
        pos = np.searchsorted(hgrid_keys[order], keys)
        pos_c = np.minimum(pos, len(order) - 1)
        found = hgrid_keys[order][pos_c] == keys
        return hist, np.where(found, order[pos_c], -1)

    def _left_endpoints(self) -> est.Endpoints | None:
        found = self._history_rows(self.grid.channel_ids, self.grid.days - 1)
        if found is None:
            return None
        hist, rows = found
        ok = rows >= 0
        last_v = np.where(ok, hist.values[np.maximum(rows, 0), -1], 0)
        last_q = np.where(ok, hist.qualities[np.maximum(rows, 0), -1], f.MISSING)
        usable = ok & ((last_q & (f.MISSING | f.POWER_FAIL)) == 0)
        return est.Endpoints(last_v.astype(np.int64), usable)

    def _long_estimation(self) -> None:
        """Consecutive estimated days per channel: runs of estimated rows in the
        batch, extended back through estimated days in history."""
        rule = self.rs.long_estimation
        grid = self.grid
        est_rows = self.estimated_rows
        starts, ends = RowGrid(grid.channel_ids, grid.days, SECONDS_PER_DAY).runs(est_rows)
        for r0, r1 in zip(starts.tolist(), ends.tolist(), strict=True):
            ch, first_day = int(grid.channel_ids[r0]), int(grid.days[r0])
            prior = self._prior_estimated_days(ch, first_day)
            total = prior + (r1 - r0 + 1)
            if total <= rule.max_days:
                continue
            start_day = first_day - prior
            self.items.append(ExceptionItem(
                "long_estimation", ch, utc(start_day * SECONDS_PER_DAY),
                utc((int(grid.days[r1]) + 1) * SECONDS_PER_DAY), rule.severity,
                f"channel estimated on {total} consecutive days (limit {rule.max_days})",
                total * grid.slots,
            ))
            self.counts[("long_estimation", "items")] += 1

    def _prior_estimated_days(self, channel_id: int, first_day: int) -> int:
        hist = self._history()
        if hist is None:
            return 0
        sel = np.flatnonzero(hist.channel_ids == channel_id)
        if len(sel) == 0:
            return 0
        days = _days(hist.days)[sel]
        estimated = ((hist.qualities[sel] & f.HUB_ESTIMATE_METHODS) != 0).any(axis=1)
        est_days = set(days[estimated].tolist())
        count = 0
        while first_day - count - 1 in est_days:
            count += 1
        return count
