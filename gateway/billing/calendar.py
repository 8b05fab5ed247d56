"""A tariff's calendar: which TOU period is in force at any UTC instant.

The definition is in local wall-clock time: an instant's local date gives the
season and the day type (holiday before weekend before weekday, with the
critical-peak overlay on event days), and its wall-clock time of day selects
the period. On DST days the local day lasts 23 or 25 hours (92 or 100
15-minute intervals) and wall-clock rules apply as written: the repeated hour
of the fall-back night is in whatever period its wall time names, twice.

For a billing period the calendar compiles a :class:`PeriodTimeline`, the UTC
instants where the period changes, once; interval data of every service point
on that tariff is then classified with numpy against it
(:class:`PeriodWeights`), without per-interval Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from gateway.billing.config import (
    BASE_DAY_KINDS,
    SECONDS_PER_DAY,
    AssignBy,
    BoundaryPolicy,
    DayKind,
    Tariff,
)

Int64Array = npt.NDArray[np.int64]
# (start_second, end_second, period_index) covering [0, 86400) of a local day.
DaySchedule = tuple[tuple[int, int, int], ...]

_CACHE_LIMIT = 64


@dataclass(frozen=True, slots=True)
class PeriodTimeline:
    """Piecewise-constant period index over [start, end) UTC epoch seconds.

    ``bounds[k]`` starts a piece holding ``period_index[k]``; the last piece
    runs to ``end``. ``bounds[0] == start``.
    """

    start: int
    end: int
    bounds: Int64Array
    period_index: Int64Array
    period_count: int

    def period_at(self, instants: Int64Array) -> Int64Array:
        """Period index in force at each instant (all in [start, end))."""
        piece = np.searchsorted(self.bounds, instants, side="right") - 1
        return self.period_index[piece]

    def seconds_in(self, starts: Int64Array, ends: Int64Array) -> Int64Array:
        """[periods, n]: seconds of each period inside each [start, end)."""
        lengths = np.diff(np.append(self.bounds, self.end))
        onehot = (self.period_index[None, :] == np.arange(self.period_count)[:, None]).astype(np.int64)
        # cum[p, k]: seconds of period p in [bounds[0], bounds[k]).
        cum = np.zeros((self.period_count, len(self.bounds)), dtype=np.int64)
        np.cumsum(onehot[:, :-1] * lengths[None, :-1], axis=1, out=cum[:, 1:])

        def elapsed(t: Int64Array) -> Int64Array:
            piece = np.searchsorted(self.bounds, t, side="right") - 1
            piece = np.minimum(piece, len(self.bounds) - 1)
            seconds: Int64Array = cum[:, piece] + onehot[:, piece] * (t - self.bounds[piece])[None, :]
            return seconds

        overlap: Int64Array = elapsed(ends) - elapsed(starts)
        return overlap


@dataclass(frozen=True, slots=True)
class PeriodWeights:
    """How the intervals of one billing period split over TOU periods.

    ``seconds[p, k]`` is how many seconds of interval ``k`` count for period
    ``p``; every column sums to the interval length, so energy per period is
    exactly ``seconds @ values / interval_seconds``. Under ``assign`` a column
    is one-hot; under ``prorate`` it is the real overlap.
    ``designation`` is the period of each interval by the tariff's assign
    rule (what a billing interval record carries), ``at_end`` the period
    during each interval's last second (where demand windows are placed).
    """

    interval_seconds: int
    seconds: Int64Array  # [periods, n]
    designation: Int64Array  # [n]
    at_end: Int64Array  # [n]


def _holiday_set(tariff: Tariff, year: int) -> frozenset[dt.date]:
    return frozenset(d for rule in tariff.holidays for y in (year - 1, year, year + 1)
                     for d in rule.dates(y) if d.year == year)


class TariffCalendar:
    """Period lookups for one tariff; caches compiled days and timelines.

    The caches are per instance and bounded, so a long-lived hub keeps one
    calendar per tariff and every bill cycle on it shares the work.
    """

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.zone: ZoneInfo = tariff.zone
        self._period_ix = {name: i for i, name in enumerate(tariff.periods)}
        self._holidays: dict[int, frozenset[dt.date]] = {}
        self._schedules: dict[tuple[str, DayKind, bool], DaySchedule] = {}
        self._timelines: dict[tuple[int, int, frozenset[dt.date]], PeriodTimeline] = {}
        self._weights: dict[tuple[int, int, int, frozenset[dt.date]], PeriodWeights] = {}

    @property
    def name(self) -> str:
        return self.tariff.name

    @property
    def periods(self) -> tuple[str, ...]:
        return self.tariff.periods

    # --- days -------------------------------------------------------------

    def holidays(self, year: int) -> frozenset[dt.date]:
        found = self._holidays.get(year)
        if found is None:
            found = self._holidays[year] = _holiday_set(self.tariff, year)
        return found

    def day_kind(self, day: dt.date) -> DayKind:
        """Base day type: holiday, else weekend, else weekday."""
        if day in self.holidays(day.year):
            return DayKind.HOLIDAY
        if day.weekday() in self.tariff.weekend_days:
            return DayKind.WEEKEND
        return DayKind.WEEKDAY

    def schedule(self, day: dt.date, critical_peak: bool = False) -> DaySchedule:
        """The day's periods as (start_second, end_second, period_index), wall clock."""
        key = (self.tariff.season_of(day), self.day_kind(day), critical_peak)
        found = self._schedules.get(key)
        if found is None:
            found = self._schedules[key] = self._compile_day(*key)
        return found

    def _compile_day(self, season: str, kind: DayKind, critical_peak: bool) -> DaySchedule:
        minute_period = np.full(SECONDS_PER_DAY // 60, self._period_ix[self.tariff.default_period], dtype=np.int64)
        layers = [kind, DayKind.CRITICAL_PEAK] if critical_peak else [kind]
        for layer in layers:
            for rule in self.tariff.rules:
                if season in rule.seasons and layer in rule.day_kinds:
                    for a, b in rule.spans:
                        minute_period[a // 60:b // 60] = self._period_ix[rule.period]
        change = np.flatnonzero(np.diff(minute_period)) + 1
        starts = [0, *(int(c) * 60 for c in change)]
        ends = [*starts[1:], SECONDS_PER_DAY]
        return tuple((a, b, int(minute_period[a // 60])) for a, b in zip(starts, ends, strict=True))

    def period_index_at(self, instant: int, critical_peak_days: Collection[dt.date] = ()) -> int:
        """Period index in force at one UTC epoch second (the definition itself)."""
        local = dt.datetime.fromtimestamp(instant, tz=self.zone)
        day = local.date()
        second = local.hour * 3600 + local.minute * 60 + local.second
        for a, b, p in self.schedule(day, day in critical_peak_days):
            if a <= second < b:
                return p
        raise AssertionError("a day schedule covers the whole day")

    def period_at(self, instant: dt.datetime, critical_peak_days: Collection[dt.date] = ()) -> str:
        return self.tariff.periods[self.period_index_at(int(instant.timestamp()), critical_peak_days)]

    # --- compiled timelines ----------------------------------------------

    def timeline(self, start: int, end: int, critical_peak_days: Collection[dt.date] = ()) -> PeriodTimeline:
        """Where the period changes within [start, end) (UTC epoch seconds)."""
        cpp = frozenset(critical_peak_days)
        key = (start, end, cpp)
        found = self._timelines.get(key)
        if found is None:
            found = self._build_timeline(start, end, cpp)
            if len(self._timelines) >= _CACHE_LIMIT:
                self._timelines.pop(next(iter(self._timelines)))
            self._timelines[key] = found
        return found

    def _build_timeline(self, start: int, end: int, cpp: frozenset[dt.date]) -> PeriodTimeline:
        # Candidates are a superset of the change points: every wall-clock
        # boundary of every day mapped with both folds (which covers repeated
        # and skipped hours) plus the UTC offset changes themselves.
        first = dt.datetime.fromtimestamp(start, tz=self.zone).date() - dt.timedelta(days=1)
        last = dt.datetime.fromtimestamp(end, tz=self.zone).date() + dt.timedelta(days=1)
        candidates = {start}
        day = first
        while day <= last:
            for a, _b, _p in self.schedule(day, day in cpp):
                wall = dt.datetime.combine(day, dt.time(a // 3600, a % 3600 // 60), tzinfo=self.zone)
                candidates.add(int(wall.timestamp()))
                candidates.add(int(wall.replace(fold=1).timestamp()))
            day += dt.timedelta(days=1)
        candidates.update(self._offset_changes(first, last))
        points = sorted(c for c in candidates if start <= c < end)
        index = [self.period_index_at(t, cpp) for t in points]
        keep = [0, *(i for i in range(1, len(points)) if index[i] != index[i - 1])]
        return PeriodTimeline(
            start=start,
            end=end,
            bounds=np.array([points[i] for i in keep], dtype=np.int64),
            period_index=np.array([index[i] for i in keep], dtype=np.int64),
            period_count=len(self.tariff.periods),
        )

    def _offset_changes(self, first: dt.date, last: dt.date) -> list[int]:
        """UTC instants where the zone's offset changes between two local dates."""
        def offset(t: int) -> dt.timedelta | None:
            return dt.datetime.fromtimestamp(t, tz=self.zone).utcoffset()

        changes = []
        lo_day = first
        lo = int(dt.datetime.combine(lo_day, dt.time(), tzinfo=self.zone).timestamp())
        while lo_day < last:
            hi_day = lo_day + dt.timedelta(days=1)
            hi = int(dt.datetime.combine(hi_day, dt.time(), tzinfo=self.zone).timestamp())
            if offset(lo) != offset(hi):
                a, b = lo, hi  # offset(a) differs from offset(b): bisect to the second
                while b - a > 1:
                    mid = (a + b) // 2
                    if offset(mid) == offset(a):
                        a = mid
                    else:
                        b = mid
                changes.append(b)
            lo_day, lo = hi_day, hi
        return changes

    def weights(self, start: int, end: int, interval_seconds: int,
                critical_peak_days: Collection[dt.date] = ()) -> PeriodWeights:
        """Period split of the intervals of [start, end) (both aligned to the interval)."""
        cpp = frozenset(critical_peak_days)
        key = (start, end, interval_seconds, cpp)
        found = self._weights.get(key)
        if found is None:
            found = self._build_weights(start, end, interval_seconds, cpp)
            if len(self._weights) >= _CACHE_LIMIT:
                self._weights.pop(next(iter(self._weights)))
            self._weights[key] = found
        return found

    def _build_weights(self, start: int, end: int, interval: int, cpp: frozenset[dt.date]) -> PeriodWeights:
        timeline = self.timeline(start, end, cpp)
        starts = np.arange(start, end, interval, dtype=np.int64)
        ends = starts + interval
        at_start = timeline.period_at(starts)
        at_end = timeline.period_at(ends - 1)
        designation = at_end if self.tariff.assign_by is AssignBy.END else at_start
        if self.tariff.boundary is BoundaryPolicy.PRORATE:
            seconds = timeline.seconds_in(starts, ends)
        else:
            seconds = (designation[None, :] == np.arange(timeline.period_count)[:, None]).astype(np.int64) * interval
        for array in (seconds, designation, at_end):
            array.setflags(write=False)
        return PeriodWeights(interval, seconds, designation, at_end)


__all__ = ["BASE_DAY_KINDS", "DaySchedule", "PeriodTimeline", "PeriodWeights", "TariffCalendar"]
