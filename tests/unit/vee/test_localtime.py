from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gateway.errors import ConfigError
from vee import DayType, DayTypeCalendar, local_day_slots
from vee.localtime import day_number
from vee.runs import RowGrid


def test_day_types_in_local_time_with_holidays() -> None:
    cal = DayTypeCalendar("America/New_York", holidays=[dt.date(2026, 7, 3)])
    days = np.array([day_number(dt.date(2026, 7, d)) for d in (1, 3, 4, 5)], dtype=np.int64)
    assert cal(days).tolist() == [DayType.WEEKDAY, DayType.HOLIDAY, DayType.SATURDAY, DayType.SUNDAY]


def test_unknown_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        DayTypeCalendar("Mars/Olympus")


def test_ordinary_day_has_96_slots_and_half_hour_zone_is_refused_for_hours() -> None:
    assert len(local_day_slots(dt.date(2026, 6, 1), ZoneInfo("America/New_York"), 900)) == 96
    assert len(local_day_slots(dt.date(2026, 3, 8), ZoneInfo("America/New_York"), 3600)) == 23
    with pytest.raises(ValueError, match="not aligned"):
        local_day_slots(dt.date(2026, 6, 1), ZoneInfo("Asia/Kolkata"), 3600)


def test_runs_break_between_channels_and_non_consecutive_days() -> None:
    grid = RowGrid(np.array([1, 1, 1, 2]), np.array([5, 6, 8, 9]), 21600)  # 4 slots a day
    mask = np.array([[0, 0, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)
    starts, ends = grid.runs(mask)
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [(2, 4), (7, 7), (8, 11), (12, 12)]
    assert np.array_equal(grid.mark(starts, ends), mask)
