"""Local days over UTC channel-day rows: DST-exact slot mapping and day types.

Inside the hub time is UTC and interval data sits in UTC-day rows. Tariffs,
like-day selection and people think in local days, which last 23, 24 or 25
hours: a 15-minute local day has 92, 96 or 100 intervals. These helpers map a
local day onto (UTC day, slot) pairs exactly, in both directions.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from gateway.errors import ConfigError
from vee.runs import SECONDS_PER_DAY, Int64Array

EPOCH = dt.date(1970, 1, 1)

# Maps UTC day numbers (days since 1970-01-01) to day-type codes.
DayTypeFunction = Callable[[Int64Array], Int64Array]


class DayType(enum.IntEnum):
    WEEKDAY = 0
    SATURDAY = 1
    SUNDAY = 2
    HOLIDAY = 3


def zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown IANA time zone {name!r}", metadata={"key": "time_zone"}) from exc


def day_number(day: dt.date) -> int:
    return (day - EPOCH).days


def local_day_bounds(local_date: dt.date, zone: ZoneInfo, interval_seconds: int) -> tuple[int, int]:
    """UTC epoch seconds of the local day's start and end (next local midnight)."""
    start = int(dt.datetime(local_date.year, local_date.month, local_date.day, tzinfo=zone).timestamp())
    nxt = local_date + dt.timedelta(days=1)
    end = int(dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp())
    if start % interval_seconds or end % interval_seconds:
        raise ValueError(
            f"local midnight of {local_date} in {zone.key} is not aligned to {interval_seconds} s intervals"
        )
    return start, end


@dataclass(frozen=True, slots=True)
class LocalDaySlots:
    """Where each interval of one local day lives in UTC-day rows."""

    local_date: dt.date
    utc_days: Int64Array  # per local interval: UTC day number of its row
    slots: Int64Array  # per local interval: slot within that row

    def __len__(self) -> int:
        return len(self.slots)


def local_day_slots(local_date: dt.date, zone: ZoneInfo, interval_seconds: int) -> LocalDaySlots:
    """The (UTC day, slot) of each interval of a local day, in time order.

    In America/New_York with 15-minute intervals, 2026-03-08 has 92 entries and
    2026-11-01 has 100.
    """
    start, end = local_day_bounds(local_date, zone, interval_seconds)
    starts = np.arange(start, end, interval_seconds, dtype=np.int64)
    return LocalDaySlots(
        local_date,
        starts // SECONDS_PER_DAY,
        (starts % SECONDS_PER_DAY) // interval_seconds,
    )


def gather_local_day(
    values: Int64Array, row_days: Int64Array, mapping: LocalDaySlots
) -> Int64Array:
    """Values of one local day from a channel's UTC-day rows (``row_days`` sorted).

    Raises KeyError when a needed UTC day is not among the rows.
    """
    rows = np.searchsorted(row_days, mapping.utc_days)
    rows_c = np.minimum(rows, len(row_days) - 1)
    if len(row_days) == 0 or np.any(row_days[rows_c] != mapping.utc_days):
        raise KeyError(f"UTC rows for local day {mapping.local_date} are incomplete")
    return values[rows_c, mapping.slots]


def scatter_local_day(
    values: Int64Array, row_days: Int64Array, mapping: LocalDaySlots, local_values: Int64Array
) -> None:
    """Write one local day's values into a channel's UTC-day rows, in place."""
    if len(local_values) != len(mapping):
        raise ValueError(f"local day {mapping.local_date} has {len(mapping)} intervals, got {len(local_values)}")
    rows = np.searchsorted(row_days, mapping.utc_days)
    rows_c = np.minimum(rows, len(row_days) - 1)
    if len(row_days) == 0 or np.any(row_days[rows_c] != mapping.utc_days):
        raise KeyError(f"UTC rows for local day {mapping.local_date} are incomplete")
    values[rows_c, mapping.slots] = local_values


class DayTypeCalendar:
    """Day types for like-day estimation: weekday, Saturday, Sunday, holiday.

    A UTC-day row takes the type of the local date at its midpoint (12:00 UTC),
    which is the local date covering most of the row for zones within
    +-12 hours. Holidays (local dates) are their own day type.
    """

    def __init__(self, time_zone: str = "UTC", holidays: Iterable[dt.date] = ()) -> None:
        self._zone = zone_info(time_zone)
        self._holidays = frozenset(holidays)

    @property
    def time_zone(self) -> str:
        return self._zone.key

    def local_date(self, day: int) -> dt.date:
        instant = dt.datetime.fromtimestamp(day * SECONDS_PER_DAY + SECONDS_PER_DAY // 2, tz=self._zone)
        return instant.date()

    def day_type(self, day: int) -> DayType:
        local = self.local_date(day)
        if local in self._holidays:
            return DayType.HOLIDAY
        weekday = local.weekday()
        if weekday == 5:
            return DayType.SATURDAY
        if weekday == 6:
            return DayType.SUNDAY
        return DayType.WEEKDAY

    def __call__(self, days: Int64Array) -> Int64Array:
        uniq, inverse = np.unique(days, return_inverse=True)
        types = np.array([int(self.day_type(int(d))) for d in uniq.tolist()], dtype=np.int64)
        return types[inverse].astype(np.int64)
