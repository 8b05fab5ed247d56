"""Billing determinants of one service point for one period, exactly.

Input is what the store holds: per meter that served the service point (a
:class:`MeterSegment`, install to removal) its energy channels as UTC
channel-day rows (:class:`ChannelDays`). :func:`stitch` lays them onto one
interval grid for the period, each interval taken from the meter installed
during it, so a meter exchange never counts an interval twice.
:func:`compute_determinants` then works on whole arrays: TOU energy as an
integer matrix product with the calendar's period weights, demand from
cumulative sums, counts from bit masks.

Exactness: values stay integer counts (of Wh x 10^exponent) through every
sum; energies and demand leave as :class:`fractions.Fraction` in Wh and W
(exact also when prorating splits an interval), with Decimal kWh / kW views.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from gateway.billing.calendar import PeriodWeights, TariffCalendar
from gateway.billing.config import SECONDS_PER_DAY, DemandRule
from gateway.billing.errors import (
    BillingError,
    InvalidBillingPeriod,
    NoMeterData,
    UnsupportedIntervalData,
)
from gateway.errors import MeterhubError
from meterhub.v1 import model_pb2 as pb

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MISSING = int(pb.QUALITY_FLAG_MISSING)
ESTIMATED = int(pb.QUALITY_FLAG_ESTIMATED)
EDITED = int(pb.QUALITY_FLAG_EDITED)
VALIDATED = int(pb.QUALITY_FLAG_VALIDATED)
SUSPECT = int(pb.QUALITY_FLAG_SUSPECT)
APPROVED = int(pb.QUALITY_FLAG_APPROVED)
ESTIMATE_BITS = (
    ESTIMATED
    | int(pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED)
    | int(pb.QUALITY_FLAG_ESTIMATE_LIKE_DAY)
    | int(pb.QUALITY_FLAG_ESTIMATE_ZERO_FILL)
    | int(pb.QUALITY_FLAG_ESTIMATE_SCALED)
)

MAX_PERIOD_DAYS = 400
# Integer sums stay in int64 while |value| * period seconds stays below this.
_INT64_SAFE = 2**62
_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)

DELIVERED = "delivered"
RECEIVED = "received"


def _epoch_seconds(instant: dt.datetime, what: str) -> int:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise InvalidBillingPeriod(f"{what} must be timezone-aware, got {instant!r}")
    delta = instant - _EPOCH
    if delta.microseconds:
        raise InvalidBillingPeriod(f"{what} must be a whole second, got {instant.isoformat()}")
    return delta.days * SECONDS_PER_DAY + delta.seconds


def utc_datetime(epoch_seconds: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(seconds=epoch_seconds)


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """[start, end): the intervals ending in (start, end]."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        start, end = self.start_s, self.end_s
        if end <= start:
            raise InvalidBillingPeriod(f"period end {self.end.isoformat()} is not after start {self.start.isoformat()}")
        if end - start > MAX_PERIOD_DAYS * SECONDS_PER_DAY:
            raise InvalidBillingPeriod(f"period longer than {MAX_PERIOD_DAYS} days")

    @property
    def start_s(self) -> int:
        return _epoch_seconds(self.start, "period start")

    @property
    def end_s(self) -> int:
        return _epoch_seconds(self.end, "period end")

    @classmethod
    def from_epoch_seconds(cls, start: int, end: int) -> BillingPeriod:
        return cls(utc_datetime(start), utc_datetime(end))

    @classmethod
    def from_local_dates(cls, first_day: dt.date, end_day: dt.date, zone: dt.tzinfo) -> BillingPeriod:
        """Local midnight of ``first_day`` to local midnight of ``end_day`` (exclusive)."""
        start = dt.datetime.combine(first_day, dt.time(), tzinfo=zone).astimezone(_UTC)
        end = dt.datetime.combine(end_day, dt.time(), tzinfo=zone).astimezone(_UTC)
        return cls(start, end)


@dataclass(frozen=True, slots=True, eq=False)
class ChannelDays:
    """One energy channel's stored rows: one row per UTC day.

    ``values[r, i]`` is the interval starting at ``days[r] * 86400 + i *
    interval_seconds`` (so ending one interval later), in counts of
    Wh x 10^power_of_ten_multiplier; ``qualities`` are QualityFlag bit sets.
    Days not listed are missing. ``days`` are days since 1970-01-01, ascending.
    """

    interval_seconds: int
    days: Int64Array
    values: Int64Array
    qualities: Int64Array
    power_of_ten_multiplier: int = 0

    def __post_init__(self) -> None:
        interval = self.interval_seconds
        if interval <= 0 or SECONDS_PER_DAY % interval:
            raise BillingError(f"interval_seconds must divide a day, got {interval}")
        slots = SECONDS_PER_DAY // interval
        rows = len(self.days)
        if self.values.shape != (rows, slots) or self.qualities.shape != (rows, slots):
            raise BillingError(f"channel rows must be [{rows}, {slots}], got values {self.values.shape} "
                               f"and qualities {self.qualities.shape}")
        if rows > 1 and np.any(np.diff(self.days) <= 0):
            raise BillingError("channel days must be strictly ascending")

    @classmethod
    def from_blobs(cls, interval_seconds: int, days: Sequence[int], values: Sequence[bytes],
                   qualities: Sequence[bytes], power_of_ten_multiplier: int = 0, *,
                   values_dtype: str = "<i8", qualities_dtype: str = "<i4") -> ChannelDays:
        """From store rows (packed arrays, dtypes as store.repository.load_blocks reads them)."""
        slots = SECONDS_PER_DAY // interval_seconds
        order = np.argsort(np.asarray(days, dtype=np.int64), kind="stable")
        v = np.zeros((len(days), slots), dtype=np.int64)
        q = np.zeros((len(days), slots), dtype=np.int64)
        for row, i in enumerate(order.tolist()):
            v[row] = np.frombuffer(values[i], dtype=values_dtype)
            q[row] = np.frombuffer(qualities[i], dtype=qualities_dtype)
        return cls(interval_seconds, np.asarray(days, dtype=np.int64)[order], v, q, power_of_ten_multiplier)


@dataclass(frozen=True, slots=True, eq=False)
class MeterSegment:
    """One meter serving the service point from ``install_time`` until
    ``remove_time`` (None while installed).

    It covers the intervals overlapping [install_time, remove_time): with an
    exchange on an interval boundary the old meter has the intervals ending
    at or before it, the new one those after; an exchange inside an interval
    makes that interval the sum of both meters' partial readings, counted
    once. ``net`` is a signed channel used for whichever of delivered /
    received is not given (positive part delivered, negative part received).
    Register reads are informational (docs/billing.md).
    """

    meter_id: str
    install_time: dt.datetime
    remove_time: dt.datetime | None = None
    delivered: ChannelDays | None = None
    received: ChannelDays | None = None
    net: ChannelDays | None = None
    start_read_wh: int | None = None
    final_read_wh: int | None = None

    def channels(self) -> tuple[ChannelDays, ...]:
        return tuple(c for c in (self.delivered, self.received, self.net) if c is not None)


@dataclass(frozen=True, slots=True)
class BillingPolicy:
    """What counts as validated for the billable flag.

    An interval is billing-valid when present, not SUSPECT, and VALIDATED or
    APPROVED (an approved estimate). With ``estimates_billable`` an estimate
    the hub made (ESTIMATED or an ESTIMATE_* method bit) counts as well
    without approval.
    """

    estimates_billable: bool = False


@dataclass(frozen=True, slots=True)
class StitchedFlow:
    values: Int64Array  # counts of Wh x 10^exponent; 0 where missing
    qualities: Int64Array  # MISSING where no meter or no data


@dataclass(frozen=True, slots=True)
class SegmentPiece:
    """The slice [lo, hi) of the period's intervals a segment covers."""

    segment: MeterSegment
    lo: int
    hi: int


@dataclass(frozen=True, slots=True, eq=False)
class Stitched:
    """A service point's period on one interval grid."""

    start: int
    end: int
    interval_seconds: int
    exponent: int
    delivered: StitchedFlow
    received: StitchedFlow | None  # None unless net-metered
    covered: Int64Array  # meters covering each interval (0, 1, or 2 at a mid-interval exchange)
    pieces: tuple[SegmentPiece, ...]

    @property
    def count(self) -> int:
        return (self.end - self.start) // self.interval_seconds

    def flows(self) -> tuple[tuple[str, StitchedFlow], ...]:
        out = [(DELIVERED, self.delivered)]
        if self.received is not None:
            out.append((RECEIVED, self.received))
        return tuple(out)


def gather_channel(channel: ChannelDays, start: int, lo: int, hi: int, interval: int, scale: int) -> tuple[
        Int64Array, Int64Array]:
    if len(channel.days) == 0:
        return np.zeros(hi - lo, dtype=np.int64), np.full(hi - lo, MISSING, dtype=np.int64)
    first = start + interval * lo
    slots = SECONDS_PER_DAY // interval
    offset = (first // SECONDS_PER_DAY - int(channel.days[0])) * slots + (first % SECONDS_PER_DAY) // interval
    days = channel.days
    if offset >= 0 and offset + (hi - lo) <= len(days) * slots and int(days[-1]) - int(days[0]) == len(days) - 1:
        # Contiguous days (the usual case): one slice of the flattened rows.
        q = channel.qualities.reshape(-1)[offset:offset + hi - lo]
        v = np.where((q & MISSING) == 0, channel.values.reshape(-1)[offset:offset + hi - lo], 0)
        if scale != 1:
            v = v * scale
        return v.astype(np.int64, copy=False), q.astype(np.int64, copy=True)
    starts = start + interval * np.arange(lo, hi, dtype=np.int64)
    day = starts // SECONDS_PER_DAY
    slot = (starts % SECONDS_PER_DAY) // interval
    row = np.minimum(np.searchsorted(channel.days, day), len(channel.days) - 1)
    have = channel.days[row] == day
    q = np.where(have, channel.qualities[row, slot], MISSING)
    v = np.where(have & ((q & MISSING) == 0), channel.values[row, slot], 0)
    if scale != 1:
        v = v * scale
    return v.astype(np.int64, copy=False), q.astype(np.int64, copy=False)


def segment_flow(segment: MeterSegment, flow: str) -> tuple[ChannelDays | None, int]:
    """(channel, sign) serving a flow: 1 uses values, -1 the negated net channel."""
    direct = segment.delivered if flow == DELIVERED else segment.received
    if direct is not None:
        return direct, 0
    if segment.net is not None:
        return segment.net, 1 if flow == DELIVERED else -1
    return None, 0


def stitch(period: BillingPeriod, segments: Sequence[MeterSegment], *, net_metered: bool = False) -> Stitched:
    """Lay the meters' channels onto the period's interval grid."""
    start, end = period.start_s, period.end_s
    bounds = []
    for seg in segments:
        install = _epoch_seconds(seg.install_time, f"install time of {seg.meter_id}")
        remove = end if seg.remove_time is None else _epoch_seconds(seg.remove_time, f"remove time of {seg.meter_id}")
        if remove <= install:
            raise BillingError(f"meter {seg.meter_id} is removed before it is installed")
        bounds.append((install, remove))
    used = [(seg, b) for seg, b in zip(segments, bounds, strict=True)
            if b[0] < end and b[1] > start and seg.channels()]
    if not used:
        raise NoMeterData(f"no meter with an energy channel served the period {period.start.isoformat()} "
                          f"to {period.end.isoformat()}")
    intervals = {c.interval_seconds for seg, _ in used for c in seg.channels()}
    if len(intervals) != 1:
        raise UnsupportedIntervalData(f"meters of one service point report mixed interval lengths "
                                      f"{sorted(intervals)} s in the period")
    interval = intervals.pop()
    if start % interval or end % interval:
        raise InvalidBillingPeriod(f"period bounds must be on {interval} s interval boundaries")
    exponent = min(c.power_of_ten_multiplier for seg, _ in used for c in seg.channels())
    n = (end - start) // interval
    covered = np.zeros(n, dtype=np.int64)
    flows = (DELIVERED, RECEIVED) if net_metered else (DELIVERED,)
    acc = {f: (np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)) for f in flows}
    pieces = []
    for seg, (install, remove) in sorted(used, key=lambda item: item[1][0]):
        lo = max(0, (install - start) // interval)
        hi = min(n, -((start - remove) // interval))
        if hi <= lo:
            continue
        pieces.append(SegmentPiece(seg, lo, hi))
        covered[lo:hi] += 1
        for flow in flows:
            values, qualities = acc[flow]
            channel, sign = segment_flow(seg, flow)
            if channel is None:
                qualities[lo:hi] |= MISSING
                continue
            v, q = gather_channel(channel, start, lo, hi, interval, 10 ** (channel.power_of_ten_multiplier - exponent))
            if sign:
                v = np.maximum(sign * v, 0)
            values[lo:hi] += v
            qualities[lo:hi] |= q
    for values, qualities in acc.values():
        qualities[covered == 0] |= MISSING
        values[(qualities & MISSING) != 0] = 0
    received = StitchedFlow(*acc[RECEIVED]) if net_metered else None
    return Stitched(start, end, interval, exponent, StitchedFlow(*acc[DELIVERED]), received, covered, tuple(pieces))


# --- results ----------------------------------------------------------------


def to_decimal(value: Fraction, places: int = 6) -> Decimal:
    """Exact when the fraction has a finite decimal expansion, else rounded
    half-even to ``places`` decimals (only prorated splits need that)."""
    return _ratio_decimal(value.numerator, value.denominator, places)


def _ratio_decimal(num: int, den: int, places: int = 6) -> Decimal:
    # Integer arithmetic only: this runs for every figure of every bill.
    d, twos, fives = den, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    digits = max(twos, fives) if d == 1 else places
    quotient, remainder = divmod(num * 10**digits, den)
    # Half-even rounding (only reached when the expansion does not end).
    if 2 * remainder > den or (2 * remainder == den and quotient % 2):
        quotient += 1
    # The string constructor is exact; arithmetic would round to the context.
    return Decimal(f"{quotient}E-{digits}")


def kwh(wh: Fraction) -> Decimal:
    num, den = wh.numerator, wh.denominator * 1000
    g = math.gcd(num, den)
    return _ratio_decimal(num // g, den // g)


def whole_and_remainder(*quantities: Fraction) -> tuple[list[tuple[int, int]], int]:
    """Floor whole units and remainder numerators over one common denominator:
    ``q == whole + num / den`` for each, ``0 <= num < den`` (the TouBucket form)."""
    den = 1
    for q in quantities:
        den = den * q.denominator // math.gcd(den, q.denominator)
    parts = []
    for q in quantities:
        whole, rest = divmod(q.numerator, q.denominator)
        parts.append((whole, rest * (den // q.denominator)))
    return parts, den


@dataclass(frozen=True, slots=True)
class IntervalCounts:
    """Channel-intervals by VEE status. actual + estimated + edited + missing
    == expected; suspect overlaps the others (present but flagged);
    billing_valid are the intervals the billable rule accepts."""

    expected: int = 0
    actual: int = 0
    estimated: int = 0
    edited: int = 0
    missing: int = 0
    suspect: int = 0
    billing_valid: int = 0

    @property
    def present(self) -> int:
        return self.expected - self.missing

    def __add__(self, other: IntervalCounts) -> IntervalCounts:
        return IntervalCounts(*(a + b for a, b in zip(_counts_tuple(self), _counts_tuple(other), strict=True)))


def _counts_tuple(c: IntervalCounts) -> tuple[int, ...]:
    return (c.expected, c.actual, c.estimated, c.edited, c.missing, c.suspect, c.billing_valid)


@dataclass(frozen=True, slots=True)
class TouBucket:
    period: str
    delivered_wh: Fraction
    received_wh: Fraction

    @property
    def net_wh(self) -> Fraction:
        return self.delivered_wh - self.received_wh

    @property
    def delivered_kwh(self) -> Decimal:
        return kwh(self.delivered_wh)

    @property
    def received_kwh(self) -> Decimal:
        return kwh(self.received_wh)

    @property
    def net_kwh(self) -> Decimal:
        return kwh(self.net_wh)


@dataclass(frozen=True, slots=True)
class Demand:
    """Maximum demand: the window's energy as average power over the window."""

    watts: Fraction
    interval_end: dt.datetime  # UTC end of the window
    interval_end_local: dt.datetime  # the same instant in the tariff's zone
    period: str  # TOU period of the window's last second
    method: str

    @property
    def kw(self) -> Decimal:
        return to_decimal(self.watts / 1000)


@dataclass(frozen=True, slots=True)
class Determinants:
    service_point_id: str
    tariff: str
    period: BillingPeriod
    meter_ids: tuple[str, ...]
    interval_seconds: int
    net_metered: bool
    buckets: tuple[TouBucket, ...]  # in tariff period order
    total_delivered_wh: Fraction
    total_received_wh: Fraction
    max_demand: Demand | None
    max_demand_by_period: tuple[Demand, ...]
    counts: IntervalCounts
    counts_by_flow: tuple[tuple[str, IntervalCounts], ...]
    completeness: Fraction  # present / expected channel-intervals
    billable: bool
    not_billable_reasons: tuple[str, ...] = field(default=())

    @property
    def total_net_wh(self) -> Fraction:
        return self.total_delivered_wh - self.total_received_wh

    @property
    def total_delivered_kwh(self) -> Decimal:
        return kwh(self.total_delivered_wh)

    @property
    def total_received_kwh(self) -> Decimal:
        return kwh(self.total_received_wh)

    @property
    def total_net_kwh(self) -> Decimal:
        return kwh(self.total_net_wh)

    @property
    def completeness_ppm(self) -> int:
        return int(self.completeness * 1_000_000)  # floor: 999999 is not complete

    def bucket(self, period: str) -> TouBucket:
        for b in self.buckets:
            if b.period == period:
                return b
        raise KeyError(period)


# --- computation ------------------------------------------------------------


def _energy_rows(weights: Int64Array, values: Int64Array, period_seconds: int) -> list[list[int]]:
    """Seconds-weighted sums per TOU period of each row of [points, intervals]:
    one matrix product, or exact Python integers for exceptionally large counts."""
    peak = int(np.abs(values).max()) if values.size else 0
    if peak and peak > _INT64_SAFE // max(period_seconds, 1):
        return [[sum(int(w) * int(v) for w, v in zip(wrow.tolist(), row.tolist(), strict=True)) for wrow in weights]
                for row in values]
    return [[int(x) for x in r] for r in (values @ weights.T).tolist()]


def compute_determinants(
    service_point_id: str,
    period: BillingPeriod,
    segments: Sequence[MeterSegment],
    calendar: TariffCalendar,
    *,
    net_metered: bool = False,
    critical_peak_days: Collection[dt.date] = (),
    policy: BillingPolicy = BillingPolicy(),
) -> Determinants:
    """Determinants of one service point for ``period`` under ``calendar``'s tariff."""
    stitched = stitch(period, segments, net_metered=net_metered)
    return determinants_of(service_point_id, stitched, calendar, critical_peak_days=critical_peak_days,
                           policy=policy, period=period)


def determinants_of(
    service_point_id: str,
    stitched: Stitched,
    calendar: TariffCalendar,
    *,
    period: BillingPeriod,
    critical_peak_days: Collection[dt.date] = (),
    policy: BillingPolicy = BillingPolicy(),
) -> Determinants:
    """One service point: the batched computation with one row."""
    return _group_determinants([(service_point_id, stitched)], calendar, stitched.start, stitched.end,
                               stitched.interval_seconds, stitched.exponent, stitched.received is not None,
                               period, critical_peak_days, policy)[0]


# --- bill cycles -------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class ServicePointData:
    """What a bill cycle needs of one service point, loaded from the store."""

    service_point_id: str
    tariff: str
    segments: tuple[MeterSegment, ...]
    net_metered: bool = False


@dataclass(frozen=True, slots=True)
class CycleFailure:
    """One service point of a cycle that has no determinants, and why."""

    service_point_id: str
    reason: str  # the error's UPPER_SNAKE_CASE reason
    message: str


# Service points computed together as one set of matrices.
CYCLE_BATCH = 256


def compute_cycle(
    service_points: Iterable[ServicePointData],
    period: BillingPeriod,
    calendars: Mapping[str, TariffCalendar],
    *,
    critical_peak_days: Mapping[str, Collection[dt.date]] | None = None,
    policy: BillingPolicy = BillingPolicy(),
) -> Iterator[Determinants | CycleFailure]:
    """Determinants of each service point, lazily, in input order.

    ``calendars`` maps tariff names to calendars (build each once: their
    caches make the whole cycle share one period timeline per tariff).
    A service point that fails yields a :class:`CycleFailure`; the cycle goes on.
    Points are stitched one by one, then computed :data:`CYCLE_BATCH` at a
    time as matrices (:func:`determinants_of_many`).
    """
    cpp = {name: frozenset(days) for name, days in (critical_peak_days or {}).items()}
    batch: list[ServicePointData] = []
    for sp in service_points:
        batch.append(sp)
        if len(batch) >= CYCLE_BATCH:
            yield from _cycle_batch(batch, period, calendars, cpp, policy)
            batch = []
    yield from _cycle_batch(batch, period, calendars, cpp, policy)


def _cycle_batch(batch: Sequence[ServicePointData], period: BillingPeriod, calendars: Mapping[str, TariffCalendar],
                 cpp: Mapping[str, frozenset[dt.date]], policy: BillingPolicy) -> list[Determinants | CycleFailure]:
    results: list[Determinants | CycleFailure | None] = [None] * len(batch)
    by_tariff: dict[str, list[tuple[int, str, Stitched]]] = {}
    for i, sp in enumerate(batch):
        if sp.tariff not in calendars:
            results[i] = CycleFailure(sp.service_point_id, "UNKNOWN_TARIFF", f"tariff {sp.tariff!r} is not configured")
            continue
        try:
            stitched = stitch(period, sp.segments, net_metered=sp.net_metered)
        except MeterhubError as exc:
            results[i] = CycleFailure(sp.service_point_id, exc.reason, exc.message)
            continue
        by_tariff.setdefault(sp.tariff, []).append((i, sp.service_point_id, stitched))
    for tariff, items in by_tariff.items():
        computed = determinants_of_many([(sp_id, st) for _i, sp_id, st in items], calendars[tariff],
                                        period=period, critical_peak_days=cpp.get(tariff, ()), policy=policy)
        for (i, _sp_id, _st), result in zip(items, computed, strict=True):
            results[i] = result
    return [r for r in results if r is not None]


def determinants_of_many(
    items: Sequence[tuple[str, Stitched]],
    calendar: TariffCalendar,
    *,
    period: BillingPeriod,
    critical_peak_days: Collection[dt.date] = (),
    policy: BillingPolicy = BillingPolicy(),
) -> list[Determinants | CycleFailure]:
    """:func:`determinants_of` for many service points of one tariff at once.

    Points sharing a grid (interval, exponent, net-metering) are stacked into
    [points, intervals] matrices: TOU energy is one matrix product, demand
    and counts are reductions along the interval axis. The one-point
    :func:`determinants_of` is the same computation with one row.
    """
    out: list[Determinants | CycleFailure | None] = [None] * len(items)
    groups: dict[tuple[int, int, int, int, bool], list[int]] = {}
    for i, (_sp, st) in enumerate(items):
        groups.setdefault((st.start, st.end, st.interval_seconds, st.exponent, st.received is not None), []).append(i)
    for (start, end, interval, exponent, net), members in groups.items():
        group: Sequence[Determinants | CycleFailure]
        try:
            group = _group_determinants([items[i] for i in members], calendar, start, end, interval, exponent,
                                        net, period, critical_peak_days, policy)
        except MeterhubError as exc:
            group = [CycleFailure(items[i][0], exc.reason, exc.message) for i in members]
        for i, result in zip(members, group, strict=True):
            out[i] = result
    return [r for r in out if r is not None]


def _counts_rows(q: Int64Array, policy: BillingPolicy) -> list[IntervalCounts]:
    """Interval counts of each row of a [points, intervals] quality matrix."""
    missing = (q & MISSING) != 0
    present = ~missing
    edited = present & ((q & EDITED) != 0)
    estimated = present & ~edited & ((q & ESTIMATE_BITS) != 0)
    suspect = present & ((q & SUSPECT) != 0)
    accepted = (q & (VALIDATED | APPROVED)) != 0
    if policy.estimates_billable:
        accepted |= estimated
    valid = present & ~suspect & accepted
    n = q.shape[1]
    cols = [np.count_nonzero(a, axis=1).tolist() for a in (missing, edited, estimated, suspect, valid)]
    return [IntervalCounts(expected=n, actual=n - m - ed - es, estimated=es, edited=ed, missing=m, suspect=su,
                           billing_valid=va)
            for m, ed, es, su, va in zip(*cols, strict=True)]


def _group_determinants(items: Sequence[tuple[str, Stitched]], calendar: TariffCalendar, start: int, end: int,
                        interval: int, exponent: int, net: bool, period: BillingPeriod,
                        critical_peak_days: Collection[dt.date],
                        policy: BillingPolicy) -> list[Determinants]:
    tariff = calendar.tariff
    weights = calendar.weights(start, end, interval, critical_peak_days)
    unit = Fraction(10) ** exponent
    seconds = end - start
    dv = np.stack([st.delivered.values for _sp, st in items])
    dq = np.stack([st.delivered.qualities for _sp, st in items])
    rv = np.stack([st.received.values for _sp, st in items if st.received is not None]) if net else None
    rq = np.stack([st.received.qualities for _sp, st in items if st.received is not None]) if net else None
    delivered = _energy_rows(weights.seconds, dv, seconds)
    received = _energy_rows(weights.seconds, rv, seconds) if rv is not None else None
    total_d = dv.sum(axis=1).tolist()
    total_r = rv.sum(axis=1).tolist() if rv is not None else None
    demands = _demand_rows(dv, dq, start, interval, weights, tariff.demand, calendar, tariff.periods, exponent)
    counts_d = _counts_rows(dq, policy)
    counts_r = _counts_rows(rq, policy) if rq is not None else None
    uncovered = np.count_nonzero(np.stack([st.covered for _sp, st in items]) == 0, axis=1).tolist()
    zero_bucket = [0] * len(tariff.periods)
    out: list[Determinants] = []
    for row, (sp, st) in enumerate(items):
        r_sums = received[row] if received is not None else zero_bucket
        buckets = tuple(TouBucket(name, Fraction(d, interval) * unit, Fraction(r, interval) * unit)
                        for name, d, r in zip(tariff.periods, delivered[row], r_sums, strict=True))
        by_flow: tuple[tuple[str, IntervalCounts], ...] = ((DELIVERED, counts_d[row]),)
        if counts_r is not None:
            by_flow = (*by_flow, (RECEIVED, counts_r[row]))
        counts = IntervalCounts()
        for _flow, c in by_flow:
            counts = counts + c
        max_demand, by_period = demands[row]
        reasons = _not_billable_reasons(counts, uncovered[row])
        out.append(Determinants(
            service_point_id=sp,
            tariff=tariff.name,
            period=period,
            meter_ids=tuple(dict.fromkeys(p.segment.meter_id for p in st.pieces)),
            interval_seconds=interval,
            net_metered=net,
            buckets=buckets,
            total_delivered_wh=total_d[row] * unit,
            total_received_wh=total_r[row] * unit if total_r is not None else Fraction(0),
            max_demand=max_demand,
            max_demand_by_period=by_period,
            counts=counts,
            counts_by_flow=by_flow,
            completeness=Fraction(counts.present, counts.expected),
            billable=not reasons,
            not_billable_reasons=reasons,
        ))
    return out


def _not_billable_reasons(counts: IntervalCounts, uncovered: int) -> tuple[str, ...]:
    reasons = []
    if uncovered:
        reasons.append(f"no meter installed for {uncovered} intervals")
    if counts.missing:
        reasons.append(f"incomplete: {counts.missing} of {counts.expected} channel-intervals missing")
    if counts.suspect:
        reasons.append(f"{counts.suspect} channel-intervals suspect")
    unaccepted = counts.present - counts.suspect - counts.billing_valid
    if unaccepted > 0:
        reasons.append(f"{unaccepted} channel-intervals not validated or approved")
    return tuple(reasons)


def _demand_rows(values: Int64Array, qualities: Int64Array, start: int, interval: int, weights: PeriodWeights,
                 rule: DemandRule, calendar: TariffCalendar, periods: Sequence[str],
                 exponent: int) -> list[tuple[Demand | None, tuple[Demand, ...]]]:
    """Maximum demand (overall and per TOU period) of each row of a [points, intervals] matrix."""
    window = rule.window_seconds
    if window % interval:
        raise UnsupportedIntervalData(f"demand window {window // 60} min is not a whole number of "
                                      f"{interval} s intervals")
    span = window // interval
    rows, n = values.shape
    if n < span:
        return [(None, ())] * rows
    missing = ((qualities & MISSING) != 0).astype(np.int64)
    if span == 1:
        sums, bad = values, missing != 0
        method = f"{window // 60}min"
    else:
        zero = np.zeros((rows, 1), dtype=np.int64)
        c = np.concatenate((zero, np.cumsum(values, axis=1)), axis=1)
        m = np.concatenate((zero, np.cumsum(missing, axis=1)), axis=1)
        sums, bad = c[:, span:] - c[:, :-span], (m[:, span:] - m[:, :-span]) > 0
        kind = "rolling" if rule.rolling else "block"
        method = f"{kind} {window // 60}min over {interval // 60}min"
    last = np.arange(span - 1, n, dtype=np.int64)
    valid = ~bad
    if span > 1 and not rule.rolling:
        valid &= (((start + (last + 1) * interval) % window) == 0)[None, :]
    floor = np.iinfo(np.int64).min
    masked = np.where(valid, sums, floor)
    window_period = weights.at_end[last]
    scale = Fraction(3600, window) * Fraction(10) ** exponent
    overall = np.argmax(masked, axis=1).tolist()
    any_valid = valid.any(axis=1).tolist()
    per_period = []
    for p in range(len(periods)):
        in_p = np.where((window_period == p)[None, :], masked, floor)
        j = np.argmax(in_p, axis=1)
        per_period.append((j.tolist(), (in_p[np.arange(rows), j] != floor).tolist()))

    def demand_at(row: int, j: int) -> Demand:
        end = start + (int(last[j]) + 1) * interval
        utc = utc_datetime(end)
        return Demand(int(sums[row, j]) * scale, utc, utc.astimezone(calendar.zone), periods[int(window_period[j])],
                      method)

    out: list[tuple[Demand | None, tuple[Demand, ...]]] = []
    for row in range(rows):
        if not any_valid[row]:
            out.append((None, ()))
            continue
        by_period = tuple(demand_at(row, js[row]) for js, found in per_period if found[row])
        out.append((demand_at(row, overall[row]), by_period))
    return out
