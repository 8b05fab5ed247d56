"""Tariff TOML parsing and validation: every mistake names its key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from gateway.billing import (
    AssignBy,
    BoundaryPolicy,
    DayKind,
    HolidayRule,
    Observed,
    TariffCalendar,
    bundled_tariff,
    load_tariff,
    parse_tariff,
)
from gateway.errors import ConfigError

BASE: dict[str, Any] = {
    "name": "t",
    "time_zone": "America/New_York",
    "periods": ["on_peak", "off_peak"],
    "default_period": "off_peak",
    "tou": [{"period": "on_peak", "day_types": ["weekday"], "hours": [["14:00", "19:00"]]}],
}


def with_(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_defaults() -> None:
    t = parse_tariff(BASE)
    assert t.boundary is BoundaryPolicy.ASSIGN
    assert t.assign_by is AssignBy.END
    assert (t.demand.window_minutes, t.demand.rolling) == (15, True)
    assert t.weekend_days == {5, 6}
    assert [s.name for s in t.seasons] == ["all_year"]
    assert t.rules[0].spans == ((14 * 3600, 19 * 3600),)


def test_bundled_tariffs_load() -> None:
    res = bundled_tariff("residential_tou")
    assert res.periods == ("on_peak", "mid_peak", "off_peak", "critical_peak")
    assert [s.name for s in res.seasons] == ["summer", "winter"]
    com = bundled_tariff("commercial_demand")
    assert com.boundary is BoundaryPolicy.PRORATE
    with pytest.raises(ConfigError) as err:
        bundled_tariff("nope")
    assert err.value.metadata["key"] == "tariff"


def test_load_tariff_file(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('name = "x"\ntime_zone = "UTC"\nperiods = ["flat"]\ndefault_period = "flat"\n')
    assert load_tariff(path).periods == ("flat",)
    path.write_text("name = ")
    with pytest.raises(ConfigError):
        load_tariff(path)


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        (with_(colour="red"), "colour"),
        (with_(time_zone="Mars/Olympus"), "time_zone"),
        (with_(periods=[]), "periods"),
        (with_(periods=["a", "a"]), "periods"),
        (with_(default_period="nope"), "default_period"),
        (with_(weekend_days=["caturday"]), "weekend_days"),
        (with_(boundary={"policy": "guess"}), "boundary.policy"),
        (with_(boundary={"assign_by": "middle"}), "boundary.assign_by"),
        (with_(boundary={"extra": 1}), "boundary.extra"),
        (with_(demand={"window_minutes": 7}), "demand.window_minutes"),
        (with_(demand={"window_minutes": "15"}), "demand.window_minutes"),
        (with_(demand={"rolling": 1}), "demand.rolling"),
        (with_(seasons=[{"name": "s", "start": "06-01", "end": "09-30"}]), "seasons"),
        (with_(seasons=[{"name": "s", "start": "13-01", "end": "09-30"}]), "seasons[0].start"),
        (with_(seasons=[{"name": "a", "start": "01-01", "end": "12-31"},
                        {"name": "b", "start": "06-01", "end": "06-30"}]), "seasons"),
        (with_(holidays=[{"name": "h", "month": 11, "weekday": "thu", "nth": 5}]), "holidays[0].nth"),
        (with_(holidays=[{"name": "h", "month": 13, "weekday": "thu", "nth": 1}]), "holidays[0].month"),
        (with_(holidays=[{"name": "h", "date": "2026-02-30"}]), "holidays[0].date"),
        (with_(holidays=[{"name": "h", "date": "07-04", "observed": "sometimes"}]), "holidays[0].observed"),
        (with_(holidays=[{"name": "h", "date": "07-04", "nth": 1}]), "holidays[0]"),
        (with_(holidays=[{"date": "07-04"}]), "holidays[0].name"),
        (with_(tou=[{"period": "nope", "day_types": ["weekday"], "hours": [["01:00", "02:00"]]}]), "tou[0].period"),
        (with_(tou=[{"period": "on_peak", "day_types": ["someday"], "hours": [["01:00", "02:00"]]}]),
         "tou[0].day_types"),
        (with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "hours": [["1:00", "02:00"]]}]),
         "tou[0].hours[0]"),
        (with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "hours": [["24:30", "02:00"]]}]),
         "tou[0].hours[0]"),
        (with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "hours": [["02:00", "02:00"]]}]),
         "tou[0].hours[0]"),
        (with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "hours": ["02:00"]}]), "tou[0].hours[0]"),
        (with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "seasons": ["summer"],
                     "hours": [["01:00", "02:00"]]}]), "tou[0].seasons"),
        (with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "hours": [["10:00", "12:00"]]},
                    {"period": "off_peak", "day_types": ["weekday", "weekend"], "hours": [["11:00", "13:00"]]}]),
         "tou[1].hours"),
    ],
)
def test_errors_name_the_key(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_tariff(doc)
    assert err.value.metadata["key"] == key
    assert key in err.value.message
    assert err.value.reason == "INVALID_CONFIG"


def test_range_across_midnight_is_two_spans() -> None:
    t = parse_tariff(with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "hours": [["22:00", "06:00"]]}]))
    assert t.rules[0].spans == ((0, 6 * 3600), (22 * 3600, 86_400))
    t = parse_tariff(with_(tou=[{"period": "on_peak", "day_types": ["weekday"], "hours": [["22:00", "00:00"]]}]))
    assert t.rules[0].spans == ((22 * 3600, 86_400),)


def test_wrapping_season() -> None:
    t = parse_tariff(with_(seasons=[{"name": "summer", "start": "06-01", "end": "09-30"},
                                    {"name": "winter", "start": "10-01", "end": "05-31"}]))
    assert t.season_of(dt.date(2026, 1, 15)) == "winter"
    assert t.season_of(dt.date(2026, 5, 31)) == "winter"
    assert t.season_of(dt.date(2026, 6, 1)) == "summer"
    assert t.season_of(dt.date(2026, 9, 30)) == "summer"
    assert t.season_of(dt.date(2024, 2, 29)) == "winter"


def test_holiday_rules() -> None:
    thanksgiving = HolidayRule("Thanksgiving", 11, weekday=3, nth=4)
    assert thanksgiving.dates(2026) == (dt.date(2026, 11, 26),)
    assert thanksgiving.dates(2027) == (dt.date(2027, 11, 25),)
    memorial = HolidayRule("Memorial", 5, weekday=0, nth=-1)
    assert memorial.dates(2026) == (dt.date(2026, 5, 25),)
    assert memorial.dates(2027) == (dt.date(2027, 5, 31),)
    # July 4 2026 is a Saturday, 2027 a Sunday.
    july4 = HolidayRule("J4", 7, day=4, observed=Observed.NEAREST_WEEKDAY)
    assert july4.dates(2026) == (dt.date(2026, 7, 4), dt.date(2026, 7, 3))
    assert july4.dates(2027) == (dt.date(2027, 7, 4), dt.date(2027, 7, 5))
    assert HolidayRule("J4", 7, day=4, observed=Observed.SUNDAY_TO_MONDAY).dates(2026) == (dt.date(2026, 7, 4),)
    assert HolidayRule("J4", 7, day=4, observed=Observed.WEEKEND_TO_MONDAY).dates(2026) == (
        dt.date(2026, 7, 4), dt.date(2026, 7, 6))
    one_off = HolidayRule("storm", 4, day=3, year=2026)
    assert one_off.dates(2026) == (dt.date(2026, 4, 3),)
    assert one_off.dates(2027) == ()


def test_observed_day_crossing_the_year() -> None:
    # Jan 1 2022 is a Saturday: nearest weekday observance is Fri Dec 31 2021.
    t = parse_tariff(with_(holidays=[{"name": "NY", "date": "01-01", "observed": "nearest_weekday"}]))
    cal = TariffCalendar(t)
    assert cal.day_kind(dt.date(2021, 12, 31)) is DayKind.HOLIDAY
    assert cal.day_kind(dt.date(2022, 1, 1)) is DayKind.HOLIDAY
    assert cal.day_kind(dt.date(2022, 1, 3)) is DayKind.WEEKDAY
    assert cal.day_kind(dt.date(2022, 1, 2)) is DayKind.WEEKEND
