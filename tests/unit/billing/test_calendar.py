# mypy: disable-error-code="comparison-overlap"
# (Fractions and Decimals are compared with the ints of hand-computed values.)
"""Calendars: DST days, wall-clock periods, boundary policies."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.billing import (
    BillingPeriod,
    MeterSegment,
    TariffCalendar,
    compute_determinants,
    parse_tariff,
    whole_and_remainder,
)
from tests.unit.billing.builders import channel, set_interval, utc

ALL_DAYS = ["weekday", "weekend", "holiday"]


def ny_calendar(**extra: Any) -> TariffCalendar:
    return TariffCalendar(parse_tariff({
        "name": "dst", "time_zone": "America/New_York",
        "periods": ["night", "skip", "day", "peak"], "default_period": "day",
        "tou": [
            {"period": "night", "day_types": ALL_DAYS, "hours": [["01:00", "02:00"], ["03:30", "04:00"]]},
            {"period": "skip", "day_types": ALL_DAYS, "hours": [["02:30", "03:30"]]},
            {"period": "peak", "day_types": ["weekday"], "hours": [["17:00", "20:00"]]},
        ],
        **extra,
    }))


def local_day_counts(cal: TariffCalendar, day: dt.date) -> dict[str, int]:
    period = BillingPeriod.from_local_dates(day, day + dt.timedelta(days=1), cal.zone)
    w = cal.weights(period.start_s, period.end_s, 900)
    return {name: int(w.seconds[i].sum()) // 900 for i, name in enumerate(cal.periods)}


def test_spring_forward_day_has_92_intervals() -> None:
    cal = ny_calendar()
    counts = local_day_counts(cal, dt.date(2026, 3, 8))  # Sunday; 02:00 EST -> 03:00 EDT
    assert sum(counts.values()) == 92
    # night 01:00-02:00 (4) + 03:30-04:00 (2); skip 02:30-03:30 exists only from 03:00 (2).
    assert counts == {"night": 6, "skip": 2, "day": 84, "peak": 0}


def test_fall_back_day_has_100_intervals() -> None:
    cal = ny_calendar()
    counts = local_day_counts(cal, dt.date(2026, 11, 1))  # Sunday; 02:00 EDT -> 01:00 EST
    assert sum(counts.values()) == 100
    # 01:00-02:00 happens twice (8); 02:30-03:30 once (4); 03:30-04:00 (2).
    assert counts == {"night": 10, "skip": 4, "day": 86, "peak": 0}


def test_ordinary_weekday() -> None:
    counts = local_day_counts(ny_calendar(), dt.date(2026, 3, 9))
    assert counts == {"night": 6, "skip": 4, "day": 74, "peak": 12}


def test_timeline_agrees_with_the_definition_everywhere() -> None:
    cal = ny_calendar(holidays=[{"name": "x", "date": "11-02"}])
    cpp = {dt.date(2026, 11, 3)}
    period = BillingPeriod.from_local_dates(dt.date(2026, 10, 25), dt.date(2026, 11, 8), cal.zone)
    tl = cal.timeline(period.start_s, period.end_s, cpp)
    instants = np.arange(period.start_s, period.end_s, 300, dtype=np.int64)
    expected = [cal.period_index_at(int(t), cpp) for t in instants]
    assert tl.period_at(instants).tolist() == expected
    assert cal.timeline(period.start_s, period.end_s, cpp) is tl  # cached


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=365 * 86_400 // 60), st.integers(min_value=1, max_value=3 * 1440))
def test_prorated_seconds_match_a_minute_by_minute_count(start_minute: int, minutes: int) -> None:
    cal = ny_calendar()
    start = int(utc(2026, 1, 1).timestamp()) + start_minute * 60
    tl = cal.timeline(start - start % 86_400, start - start % 86_400 + 5 * 86_400)
    seconds = tl.seconds_in(np.array([start]), np.array([start + minutes * 60]))[:, 0]
    by_minute = np.bincount([cal.period_index_at(start + 60 * m) for m in range(minutes)],
                            minlength=len(cal.periods)) * 60
    assert seconds.tolist() == by_minute.tolist()


# --- boundary policy ---------------------------------------------------------

def half_hour_boundary(policy: str, assign_by: str = "end") -> TariffCalendar:
    return TariffCalendar(parse_tariff({
        "name": "b", "time_zone": "UTC", "periods": ["on_peak", "off_peak"], "default_period": "off_peak",
        "boundary": {"policy": policy, "assign_by": assign_by}, "demand": {"window_minutes": 60},
        "tou": [{"period": "on_peak", "day_types": ALL_DAYS, "hours": [["14:30", "19:00"]]}],
    }))


def hourly_day() -> list[MeterSegment]:
    # One UTC day of hourly data, 10 Wh an hour, 7 Wh in the hour 14:00-15:00.
    ch = channel(dt.date(2026, 6, 3), 1, interval=3600, value=10)
    set_interval(ch, utc(2026, 6, 3, 15), 7)
    return [MeterSegment("M", utc(2026, 1, 1), None, delivered=ch)]


DAY = BillingPeriod(utc(2026, 6, 3), utc(2026, 6, 4))


def test_assign_by_end() -> None:
    d = compute_determinants("sp", DAY, hourly_day(), half_hour_boundary("assign", "end"))
    # 14:00-15:00 is on-peak during its last second: 7 + 4 x 10 (15:00-19:00) = 47.
    assert d.bucket("on_peak").delivered_wh == 47
    assert d.bucket("off_peak").delivered_wh == 237 - 47


def test_assign_by_start() -> None:
    d = compute_determinants("sp", DAY, hourly_day(), half_hour_boundary("assign", "start"))
    # 14:00 is off-peak: only 15:00-19:00 = 40 is on-peak.
    assert d.bucket("on_peak").delivered_wh == 40
    assert d.bucket("off_peak").delivered_wh == 197


def test_prorate_splits_exactly() -> None:
    d = compute_determinants("sp", DAY, hourly_day(), half_hour_boundary("prorate"))
    # Half of the 7 Wh hour falls after 14:30: 40 + 7/2 = 87/2 on-peak, 237 - 87/2 = 387/2 off-peak.
    on, off = d.bucket("on_peak").delivered_wh, d.bucket("off_peak").delivered_wh
    assert (on, off) == (Fraction(87, 2), Fraction(387, 2))
    assert on + off == d.total_delivered_wh == 237
    assert whole_and_remainder(on, off) == ([(43, 1), (193, 1)], 2)
    assert str(d.bucket("on_peak").delivered_kwh) == "0.0435"
    # Demand over 60 min on hourly data: 10 Wh -> 10 W; earliest at 01:00.
    assert d.max_demand is not None
    assert (d.max_demand.watts, d.max_demand.interval_end) == (10, utc(2026, 6, 3, 1))


def test_prorate_thirds_round_only_in_the_decimal_view() -> None:
    cal = TariffCalendar(parse_tariff({
        "name": "b", "time_zone": "UTC", "periods": ["on_peak", "off_peak"], "default_period": "off_peak",
        "boundary": {"policy": "prorate"},
        "tou": [{"period": "on_peak", "day_types": ALL_DAYS, "hours": [["14:05", "14:15"]]}],
    }))
    ch = channel(dt.date(2026, 6, 3), 1, value=0)
    set_interval(ch, utc(2026, 6, 3, 14, 15), 1000)  # 10 of its 15 minutes are on-peak
    d = compute_determinants("sp", DAY, [MeterSegment("M", utc(2026, 1, 1), None, delivered=ch)], cal)
    assert d.bucket("on_peak").delivered_wh == Fraction(2000, 3)
    assert d.bucket("off_peak").delivered_wh == Fraction(1000, 3)
    assert str(d.bucket("on_peak").delivered_kwh) == "0.666667"
    assert whole_and_remainder(Fraction(2000, 3), Fraction(1000, 3)) == ([(666, 2), (333, 1)], 3)


def test_critical_peak_overlay_only_on_event_days() -> None:
    cal = TariffCalendar(parse_tariff({
        "name": "c", "time_zone": "UTC", "periods": ["peak", "cpp", "base"], "default_period": "base",
        "tou": [{"period": "peak", "day_types": ["weekday"], "hours": [["12:00", "18:00"]]},
                {"period": "cpp", "day_types": ["critical_peak"], "hours": [["16:00", "20:00"]]}],
    }))
    event = dt.date(2026, 6, 3)
    assert cal.schedule(event, True) == ((0, 43_200, 2), (43_200, 57_600, 0), (57_600, 72_000, 1),
                                         (72_000, 86_400, 2))
    assert cal.schedule(event, False) == ((0, 43_200, 2), (43_200, 64_800, 0), (64_800, 86_400, 2))
    assert cal.period_at(utc(2026, 6, 3, 19), {event}) == "cpp"
    assert cal.period_at(utc(2026, 6, 3, 19)) == "base"
