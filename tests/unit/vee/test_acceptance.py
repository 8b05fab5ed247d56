"""The acceptance cases of issue 3, as tests."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np

from tests.unit.vee.builders import DAY, batch, rows
from vee import (
    DayTypeCalendar,
    History,
    RegisterSpans,
    Severity,
    VeeContext,
    VeeEngine,
    default_config,
    gather_local_day,
    local_day_slots,
    scatter_local_day,
)
from vee import flags as f


def engine() -> VeeEngine:
    return VeeEngine(default_config())


def test_four_interval_gap_between_75_and_100_interpolates_80_85_90_95() -> None:
    v, q = rows(1)
    v[0, 10], v[0, 15] = 75, 100
    q[0, 11:15] = f.MISSING
    result = engine().run(batch(v, q))
    assert result.values[0, 11:15].tolist() == [80, 85, 90, 95]
    for flag in result.qualities[0, 11:15].tolist():
        assert flag & f.ESTIMATE_INTERPOLATED
        assert flag & f.ESTIMATED
        assert not flag & (f.MISSING | f.ESTIMATE_LIKE_DAY)
    assert result.count("interpolate", "filled") == 4
    assert result.items == ()


def _history_days(n: int, value: int) -> History:
    v, q = rows(n, value)
    return History(np.ones(n, dtype=np.int64), np.arange(DAY - n, DAY, dtype=np.int64), v, q)


def test_gap_of_two_hours_fifteen_minutes_goes_to_like_day() -> None:
    v, q = rows(1)
    q[0, 20:29] = f.MISSING  # 9 x 15 min = 2 h 15 min
    v[0, 20:29] = 0
    hist = _history_days(28, 500)
    ctx = VeeContext(history=hist, day_types=DayTypeCalendar("America/New_York"))
    result = engine().run(batch(v, q), ctx)
    filled = result.qualities[0, 20:29]
    assert all(x & f.ESTIMATE_LIKE_DAY for x in filled.tolist())
    assert not any(x & f.ESTIMATE_INTERPOLATED for x in filled.tolist())
    assert result.values[0, 20:29].tolist() == (500 + np.arange(20, 29) % 7).tolist()
    assert result.count("interpolate", "filled") == 0
    assert result.count("like_day", "filled") == 9


def test_two_hour_gap_still_interpolates() -> None:
    v, q = rows(1)
    q[0, 20:28] = f.MISSING  # exactly 2 h
    result = engine().run(batch(v, q))
    assert result.count("interpolate", "filled") == 8


def test_outage_flagged_neighbour_is_not_an_interpolation_endpoint() -> None:
    v, q = rows(1)
    v[0, 10], v[0, 15] = 75, 100
    q[0, 10] = f.POWER_FAIL  # the left neighbour is an outage interval
    q[0, 11:15] = f.MISSING
    result = engine().run(batch(v, q))
    assert result.count("interpolate", "filled") == 0
    assert all(x & f.MISSING for x in result.qualities[0, 11:15].tolist())
    # No history: the gap stays missing and opens an item.
    assert [(i.rule, i.intervals) for i in result.items] == [("missing", 4)]


def test_spike_raises_an_exception_and_keeps_the_value() -> None:
    v, q = rows(1, value=1000)
    v[0, 40] = 20_000
    result = engine().run(batch(v, q))
    assert result.values[0, 40] == 20_000
    assert result.qualities[0, 40] & f.FAILED_SPIKE
    assert result.qualities[0, 40] & f.SUSPECT
    assert not result.qualities[0, 40] & f.VALIDATED
    spikes = [i for i in result.items if i.rule == "spike"]
    assert len(spikes) == 1
    item = spikes[0]
    assert item.channel_id == 1
    assert item.start_time == dt.datetime.fromtimestamp(DAY * 86400 + 40 * 900, tz=dt.UTC)
    assert item.end_time - item.start_time == dt.timedelta(minutes=15)
    assert item.severity is Severity.WARNING


def test_sum_check_failure_opens_an_exception() -> None:
    v, q = rows(1)
    total = int(v[0].sum())
    start = DAY * 86400
    spans = RegisterSpans(
        np.array([1]), np.array([start]), np.array([start + 86400]), np.array([total + total // 10])
    )
    result = engine().run(batch(v, q), VeeContext(registers=spans))
    items = [i for i in result.items if i.rule == "sum_check"]
    assert len(items) == 1
    assert items[0].severity is Severity.ERROR
    assert items[0].intervals == 96
    assert str(total) in items[0].message
    assert all(x & f.FAILED_SUM_CHECK for x in result.qualities[0].tolist())
    # Within tolerance: no item.
    ok = RegisterSpans(np.array([1]), np.array([start]), np.array([start + 86400]), np.array([total]))
    assert not engine().run(batch(v, q), VeeContext(registers=ok)).items


def test_dst_days_of_92_and_100_local_intervals_round_trip_exactly() -> None:
    zone = ZoneInfo("America/New_York")
    for local_date, expected in ((dt.date(2026, 3, 8), 92), (dt.date(2026, 11, 1), 100)):
        mapping = local_day_slots(local_date, zone, 900)
        assert len(mapping) == expected
        row_days = np.unique(mapping.utc_days)
        values = np.full((len(row_days), 96), -1, dtype=np.int64)
        local_values = np.arange(1, expected + 1, dtype=np.int64) * 7
        scatter_local_day(values, row_days, mapping, local_values)
        assert int((values != -1).sum()) == expected
        back = gather_local_day(values, row_days, mapping)
        assert back.tolist() == local_values.tolist()
        # First local interval starts at local midnight.
        first = dt.datetime.fromtimestamp(int(mapping.utc_days[0]) * 86400 + int(mapping.slots[0]) * 900, tz=zone)
        assert (first.hour, first.minute, first.date()) == (0, 0, local_date)
