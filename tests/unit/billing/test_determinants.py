# mypy: disable-error-code="comparison-overlap"
# (Fractions and Decimals are compared with the ints of hand-computed values.)
"""Determinants edge cases: demand windows, exchanges, net channels, gaps, errors."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.billing import (
    BillingError,
    BillingPeriod,
    BillingPolicy,
    ChannelDays,
    InvalidBillingPeriod,
    MeterSegment,
    NoMeterData,
    TariffCalendar,
    UnsupportedIntervalData,
    billing_intervals,
    compute_determinants,
    parse_tariff,
    write_intervals_csv,
    write_intervals_json,
)
from tests.unit.billing.builders import (
    APPROVED,
    ESTIMATED,
    MISSING,
    SUSPECT,
    VALIDATED,
    channel,
    set_interval,
    utc,
)

ALL_DAYS = ["weekday", "weekend", "holiday"]
DAY = dt.date(2026, 6, 3)  # a Wednesday
ONE_DAY = BillingPeriod(utc(2026, 6, 3), utc(2026, 6, 4))
LONG_AGO = utc(2025, 1, 1)


def calendar(**extra: Any) -> TariffCalendar:
    return TariffCalendar(parse_tariff({
        "name": "t", "time_zone": "UTC", "periods": ["peak", "base"], "default_period": "base",
        "tou": [{"period": "peak", "day_types": ALL_DAYS, "hours": [["10:00", "11:00"]]}], **extra,
    }))


def meter(delivered: ChannelDays, **kw: Any) -> list[MeterSegment]:
    return [MeterSegment("M", LONG_AGO, None, delivered=delivered, **kw)]


# --- demand -------------------------------------------------------------------

def five_minute_day() -> ChannelDays:
    ch = channel(DAY, 1, interval=300, value=10)
    for minute, value in ((10, 30), (15, 40), (20, 50)):  # interval ends 10:10, 10:15, 10:20
        set_interval(ch, utc(2026, 6, 3, 10, minute), value)
    return ch


def test_rolling_demand_over_five_minute_data() -> None:
    d = compute_determinants("sp", ONE_DAY, meter(five_minute_day()), calendar())
    # Best 3 consecutive: 30 + 40 + 50 = 120 Wh in 15 min = 480 W, window ending 10:20.
    assert d.max_demand is not None
    assert (d.max_demand.watts, d.max_demand.interval_end) == (480, utc(2026, 6, 3, 10, 20))
    assert d.max_demand.method == "rolling 15min over 5min"
    assert d.max_demand.period == "peak"
    assert d.max_demand.kw == Decimal("0.48")


def test_block_demand_over_five_minute_data() -> None:
    d = compute_determinants("sp", ONE_DAY, meter(five_minute_day()),
                             calendar(demand={"window_minutes": 15, "rolling": False}))
    # Clock-aligned windows: 10:00-10:15 = 10 + 30 + 40 = 80 Wh -> 320 W;
    # 10:15-10:30 = 50 + 10 + 10 = 70 Wh.
    assert d.max_demand is not None
    assert (d.max_demand.watts, d.max_demand.interval_end) == (320, utc(2026, 6, 3, 10, 15))
    assert d.max_demand.method == "block 15min over 5min"


def test_window_with_a_missing_interval_is_not_a_demand() -> None:
    ch = five_minute_day()
    set_interval(ch, utc(2026, 6, 3, 10, 25), 0, MISSING)
    set_interval(ch, utc(2026, 6, 3, 10, 5), 0, MISSING)
    d = compute_determinants("sp", ONE_DAY, meter(ch), calendar())
    # Gaps at 10:00-10:05 and 10:20-10:25. The window ending 10:20
    # (10:05-10:20: 30 + 40 + 50 = 120 Wh) holds neither: 480 W still.
    assert d.max_demand is not None
    assert d.max_demand.watts == 480
    set_interval(ch, utc(2026, 6, 3, 10, 15), 0, MISSING)
    d = compute_determinants("sp", ONE_DAY, meter(ch), calendar())
    # A gap at 10:10-10:15 too: every window holding 30, 40 or 50 Wh now
    # also holds a gap, so the best is three 10 Wh intervals = 30 Wh -> 120 W.
    assert d.max_demand is not None
    assert d.max_demand.watts == 120
    assert d.counts.missing == 3


def test_demand_window_shorter_than_data_is_refused() -> None:
    ch = channel(DAY, 1, interval=3600, value=10)
    with pytest.raises(UnsupportedIntervalData) as err:
        compute_determinants("sp", ONE_DAY, meter(ch), calendar())
    assert err.value.reason == "UNSUPPORTED_INTERVAL_DATA"


# --- meter exchange and channels ---------------------------------------------

def test_exchange_inside_an_interval_adds_both_partials_once() -> None:
    a = channel(DAY, 1, value=8)
    b = channel(DAY, 1, value=12)
    set_interval(a, utc(2026, 6, 3, 10, 15), 6)  # A until 10:07
    set_interval(b, utc(2026, 6, 3, 10, 15), 9)  # B from 10:07
    t = utc(2026, 6, 3, 10, 7)
    segments = [MeterSegment("A", LONG_AGO, t, delivered=a), MeterSegment("B", t, None, delivered=b)]
    d = compute_determinants("sp", ONE_DAY, segments, calendar())
    # A: 40 intervals ending <= 10:00 at 8 Wh; shared 10:00-10:15 = 6 + 9; B: 55 at 12.
    assert d.total_delivered_wh == 40 * 8 + 15 + 55 * 12
    # peak 10:00-11:00: 15 + 3 x 12
    assert d.bucket("peak").delivered_wh == 15 + 36
    assert d.counts.expected == 96
    assert d.meter_ids == ("A", "B")
    records = list(billing_intervals(ONE_DAY, segments, calendar()))
    assert len(records) == 97  # the shared interval has one record per meter
    shared = [r for r in records if r.interval_end == utc(2026, 6, 3, 10, 15)]
    assert [(r.meter_id, r.value_wh) for r in shared] == [("A", 6), ("B", 9)]
    assert sum(r.value_wh for r in records) == d.total_delivered_wh


def test_net_channel_serves_delivered_and_received() -> None:
    net = channel(DAY, 1, value=5)
    net.values[0, 40:56] = -20  # 10:00-14:00 exports 20 Wh per interval
    segments = [MeterSegment("M", LONG_AGO, None, net=net)]
    d = compute_determinants("sp", ONE_DAY, segments, calendar(), net_metered=True)
    assert d.total_delivered_wh == 80 * 5
    assert d.total_received_wh == 16 * 20
    assert d.bucket("peak").received_wh == 4 * 20
    assert d.counts.expected == 192
    assert d.billable
    only_delivered = compute_determinants("sp", ONE_DAY, segments, calendar())
    assert (only_delivered.total_received_wh, only_delivered.counts.expected) == (0, 96)


def test_net_metered_without_a_received_channel_is_incomplete() -> None:
    d = compute_determinants("sp", ONE_DAY, meter(channel(DAY, 1, value=5)), calendar(), net_metered=True)
    assert d.counts.missing == 96
    assert d.completeness == Fraction(1, 2)
    assert d.completeness_ppm == 500_000
    assert not d.billable


def test_mixed_power_of_ten_multipliers() -> None:
    a = channel(DAY, 1, value=2)  # 2 Wh
    b = channel(DAY, 1, value=15, power=-1)  # 1.5 Wh
    t = utc(2026, 6, 3, 12)
    segments = [MeterSegment("A", LONG_AGO, t, delivered=a), MeterSegment("B", t, None, delivered=b)]
    d = compute_determinants("sp", ONE_DAY, segments, calendar())
    assert d.total_delivered_wh == 48 * 2 + Fraction(48 * 15, 10)
    assert d.total_delivered_kwh == Decimal("0.168")
    assert d.max_demand is not None
    assert d.max_demand.watts == 8  # 2 Wh x 4
    records = list(billing_intervals(ONE_DAY, segments, calendar()))
    assert records[-1].value_wh == Decimal("1.5")


# --- completeness and the billable rule -----------------------------------------

def test_missing_days_uncovered_time_and_suspects() -> None:
    ch = channel(DAY, 1, value=10)
    set_interval(ch, utc(2026, 6, 3, 1), 999, VALIDATED | SUSPECT)
    two_days = BillingPeriod(utc(2026, 6, 2), utc(2026, 6, 4))  # June 2 has no row
    d = compute_determinants("sp", two_days, meter(ch), calendar())
    assert (d.counts.expected, d.counts.missing, d.counts.suspect, d.counts.actual) == (192, 96, 1, 96)
    assert d.total_delivered_wh == 95 * 10 + 999
    assert not d.billable
    assert d.not_billable_reasons == ("incomplete: 96 of 192 channel-intervals missing", "1 channel-intervals suspect")
    late = [MeterSegment("M", utc(2026, 6, 3, 12), None, delivered=channel(DAY, 1, value=10))]
    d = compute_determinants("sp", ONE_DAY, late, calendar())
    assert d.counts.missing == 48
    assert d.not_billable_reasons[0] == "no meter installed for 48 intervals"


def test_approved_estimates_are_billable() -> None:
    ch = channel(DAY, 1, value=10)
    set_interval(ch, utc(2026, 6, 3, 5), 10, ESTIMATED)
    assert not compute_determinants("sp", ONE_DAY, meter(ch), calendar()).billable
    set_interval(ch, utc(2026, 6, 3, 5), 10, ESTIMATED | APPROVED)
    d = compute_determinants("sp", ONE_DAY, meter(ch), calendar())
    assert d.billable
    assert (d.counts.estimated, d.counts.billing_valid) == (1, 96)
    set_interval(ch, utc(2026, 6, 3, 5), 10, ESTIMATED)
    assert compute_determinants("sp", ONE_DAY, meter(ch), calendar(),
                                policy=BillingPolicy(estimates_billable=True)).billable


def test_unvalidated_actuals_are_not_billable() -> None:
    d = compute_determinants("sp", ONE_DAY, meter(channel(DAY, 1, value=1, quality=0)), calendar())
    assert d.completeness == 1
    assert d.not_billable_reasons == ("96 channel-intervals not validated or approved",)


# --- errors ---------------------------------------------------------------------

def test_period_errors() -> None:
    with pytest.raises(InvalidBillingPeriod):
        BillingPeriod(dt.datetime(2026, 6, 3), dt.datetime(2026, 6, 4))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(InvalidBillingPeriod):
        BillingPeriod(utc(2026, 6, 4), utc(2026, 6, 3))
    with pytest.raises(InvalidBillingPeriod):
        BillingPeriod(utc(2026, 1, 1), utc(2027, 6, 1))
    misaligned = BillingPeriod(utc(2026, 6, 3, 0, 5), utc(2026, 6, 4))
    with pytest.raises(InvalidBillingPeriod) as err:
        compute_determinants("sp", misaligned, meter(channel(DAY, 1)), calendar())
    assert err.value.reason == "INVALID_BILLING_PERIOD"


def test_no_meter_and_mixed_interval_lengths() -> None:
    with pytest.raises(NoMeterData):
        compute_determinants("sp", ONE_DAY, [], calendar())
    removed = [MeterSegment("M", LONG_AGO, utc(2026, 1, 1), delivered=channel(DAY, 1))]
    with pytest.raises(NoMeterData):
        compute_determinants("sp", ONE_DAY, removed, calendar())
    t = utc(2026, 6, 3, 12)
    mixed = [MeterSegment("A", LONG_AGO, t, delivered=channel(DAY, 1)),
             MeterSegment("B", t, None, delivered=channel(DAY, 1, interval=300))]
    with pytest.raises(UnsupportedIntervalData):
        compute_determinants("sp", ONE_DAY, mixed, calendar())
    backwards = [MeterSegment("A", t, LONG_AGO, delivered=channel(DAY, 1))]
    with pytest.raises(BillingError):
        compute_determinants("sp", ONE_DAY, backwards, calendar())


def test_channel_shape_errors() -> None:
    with pytest.raises(BillingError):
        ChannelDays(900, np.array([1]), np.zeros((1, 95), dtype=np.int64), np.zeros((1, 95), dtype=np.int64))
    with pytest.raises(BillingError):
        ChannelDays(7, np.array([1]), np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(BillingError):
        ChannelDays(86_400, np.array([2, 1]), np.zeros((2, 1), dtype=np.int64), np.zeros((2, 1), dtype=np.int64))


def test_from_blobs_reads_store_rows() -> None:
    day = (DAY - dt.date(1970, 1, 1)).days
    v1, v0 = np.arange(96, dtype="<i8"), np.full(96, 3, dtype="<i8")
    q = np.full(96, VALIDATED, dtype="<i4")
    ch = ChannelDays.from_blobs(900, [day, day - 1], [v1.tobytes(), v0.tobytes()], [q.tobytes(), q.tobytes()])
    assert ch.days.tolist() == [day - 1, day]
    assert ch.values[1].tolist() == list(range(96))
    d = compute_determinants("sp", ONE_DAY, meter(ch), calendar())
    assert d.total_delivered_wh == sum(range(96))


def test_interval_exports() -> None:
    records = list(billing_intervals(ONE_DAY, meter(channel(DAY, 1, value=10)), calendar()))
    out = io.StringIO()
    assert write_intervals_csv(records, out) == 96
    lines = out.getvalue().splitlines()
    assert lines[0] == "meter_id,interval_start,interval_end,flow,value_wh,vee_status,rate_period,quality"
    assert lines[41] == f"M,2026-06-03T10:00:00Z,2026-06-03T10:15:00Z,delivered,10,actual,peak,{VALIDATED}"
    out = io.StringIO()
    assert write_intervals_json(records, out) == 96
    doc = json.loads(out.getvalue())
    assert doc[40]["rate_period"] == "peak"
    assert doc[0]["value_wh"] == "10"


# --- properties -------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=96, max_size=96),
    st.sampled_from(["assign", "prorate"]),
    st.integers(min_value=0, max_value=95),
)
def test_buckets_always_add_up_to_the_total(values: list[int], policy: str, exchange_slot: int) -> None:
    cal = TariffCalendar(parse_tariff({
        "name": "p", "time_zone": "UTC", "periods": ["a", "b", "c"], "default_period": "c",
        "boundary": {"policy": policy},
        "tou": [{"period": "a", "day_types": ALL_DAYS, "hours": [["03:07", "09:53"]]},
                {"period": "b", "day_types": ALL_DAYS, "hours": [["09:53", "17:01"]]}],
    }))
    a = channel(DAY, 1)
    a.values[0] = values
    b = channel(DAY, 1)
    b.values[0] = values
    t = utc(2026, 6, 3) + dt.timedelta(minutes=15 * exchange_slot)
    segments = [MeterSegment("A", LONG_AGO, t, delivered=a), MeterSegment("B", t, None, delivered=b)]
    d = compute_determinants("sp", ONE_DAY, segments, cal)
    assert d.total_delivered_wh == sum(values)
    assert sum(b.delivered_wh for b in d.buckets) == sum(values)
    assert d.max_demand is not None
    assert d.max_demand.watts == 4 * max(values)
