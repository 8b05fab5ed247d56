"""Tariff definitions: a frozen, validated model parsed from TOML.

A tariff names its time-of-use periods and says, in local time of one IANA
zone, which period is in force at every instant: seasons (recurring date
ranges), day types (weekday / weekend / holiday, plus critical-peak event
days overlaid on top), holidays (fixed dates, nth-weekday rules, one-off
dates, observed-day rules) and per season and day type the hours of each
period. The reference with every key and default is docs/billing.md.

Every mistake raises :class:`ConfigError` whose ``metadata["key"]`` names the
key, e.g. ``tou[2].hours[0]``.
"""

from __future__ import annotations

import datetime as dt
import enum
import importlib.resources
import itertools
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ConfigError

SECONDS_PER_DAY = 86_400
# Feb 29 is a valid season bound; any leap year serves to check coverage.
_LEAP_YEAR = 2024
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


class BoundaryPolicy(enum.StrEnum):
    """What happens to an interval that straddles a TOU period boundary."""

    ASSIGN = "assign"  # the whole interval goes to one period (see AssignBy)
    PRORATE = "prorate"  # split in proportion to the seconds in each period, exactly


class AssignBy(enum.StrEnum):
    END = "end"  # the period in force during the interval's last second
    START = "start"  # the period in force at the interval's start


class Observed(enum.StrEnum):
    """Which extra day is a holiday when the date falls on a weekend."""

    NONE = "none"
    SUNDAY_TO_MONDAY = "sunday_to_monday"
    WEEKEND_TO_MONDAY = "weekend_to_monday"
    NEAREST_WEEKDAY = "nearest_weekday"  # Saturday -> Friday, Sunday -> Monday


class DayKind(enum.StrEnum):
    WEEKDAY = "weekday"
    WEEKEND = "weekend"
    HOLIDAY = "holiday"
    CRITICAL_PEAK = "critical_peak"  # overlay on event days pushed through the API


BASE_DAY_KINDS = (DayKind.WEEKDAY, DayKind.WEEKEND, DayKind.HOLIDAY)
ALL_YEAR = "all_year"


@dataclass(frozen=True, slots=True)
class Season:
    """A recurring range of local dates, bounds inclusive; may wrap the new year."""

    name: str
    start: tuple[int, int]  # (month, day)
    end: tuple[int, int]

    def contains(self, day: dt.date) -> bool:
        md = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= md <= self.end
        return md >= self.start or md <= self.end


@dataclass(frozen=True, slots=True)
class HolidayRule:
    """A holiday: a fixed month-day, the nth weekday of a month, or one date.

    ``nth`` counts from 1; -1 is the last such weekday of the month.
    """

    name: str
    month: int
    day: int | None = None
    weekday: int | None = None  # 0 = Monday
    nth: int | None = None
    year: int | None = None  # one-off date when set
    observed: Observed = Observed.NONE

    def dates(self, year: int) -> tuple[dt.date, ...]:
        """The holiday's dates in ``year`` (the date itself and its observed day)."""
        if self.year is not None and self.year != year:
            return ()
        if self.day is not None:
            base = dt.date(year, self.month, self.day)
        else:
            assert self.weekday is not None
            assert self.nth is not None
            base = _nth_weekday(year, self.month, self.weekday, self.nth)
        observed = _observed_day(base, self.observed)
        return (base,) if observed is None else (base, observed)


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> dt.date:
    if nth > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _observed_day(day: dt.date, rule: Observed) -> dt.date | None:
    wd = day.weekday()
    if rule is Observed.SUNDAY_TO_MONDAY and wd == 6:
        return day + dt.timedelta(days=1)
    if rule is Observed.WEEKEND_TO_MONDAY and wd >= 5:
        return day + dt.timedelta(days=7 - wd)
    if rule is Observed.NEAREST_WEEKDAY and wd == 5:
        return day - dt.timedelta(days=1)
    if rule is Observed.NEAREST_WEEKDAY and wd == 6:
        return day + dt.timedelta(days=1)
    return None


@dataclass(frozen=True, slots=True)
class TouRule:
    """Hours of one period for some seasons and day kinds.

    ``spans`` are [start, end) seconds of the local day (end up to 86400);
    a range written across midnight ("22:00"-"06:00") is stored as two spans.
    """

    period: str
    seasons: frozenset[str]
    day_kinds: frozenset[DayKind]
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class DemandRule:
    """Demand is the energy of a ``window_minutes`` window expressed as power.

    With data shorter than the window, ``rolling`` slides the window one
    interval at a time; otherwise windows are fixed and clock-aligned.
    """

    window_minutes: int = 15
    rolling: bool = True

    @property
    def window_seconds(self) -> int:
        return self.window_minutes * 60


@dataclass(frozen=True, slots=True)
class Tariff:
    name: str
    time_zone: str
    periods: tuple[str, ...]  # output order
    default_period: str
    seasons: tuple[Season, ...]
    weekend_days: frozenset[int]
    holidays: tuple[HolidayRule, ...]
    rules: tuple[TouRule, ...]
    boundary: BoundaryPolicy = BoundaryPolicy.ASSIGN
    assign_by: AssignBy = AssignBy.END
    demand: DemandRule = DemandRule()
    description: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def season_of(self, day: dt.date) -> str:
        for season in self.seasons:
            if season.contains(day):
                return season.name
        raise AssertionError(f"seasons do not cover {day}")  # parse_tariff checks coverage


# --- parsing ---------------------------------------------------------------


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError(f"tariff: {key}: {message}", metadata={"key": key})


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            raise _fail(name, f"unknown key (allowed: {', '.join(allowed)})")


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    name = f"{where}.{key}" if where else key
    if key not in table:
        if default is None:
            raise _fail(name, "is required")
        return default
    value = table[key]
    # bool is an int subclass; a flag must not pass as a number or the reverse.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(name, f"must be a {kind.__name__}, got {value!r}")
    return value


def _str_list(table: Mapping[str, Any], key: str, where: str, default: list[str] | None = None) -> list[str]:
    name = f"{where}.{key}" if where else key
    value = _get(table, key, list, where, default)
    if not all(isinstance(v, str) for v in value):
        raise _fail(name, f"must be a list of strings, got {value!r}")
    return list(value)


def _month_day(text: str, key: str) -> tuple[int, int]:
    try:
        month_s, day_s = text.split("-")
        month, day = int(month_s), int(day_s)
        dt.date(_LEAP_YEAR, month, day)
    except ValueError as exc:
        raise _fail(key, f"must be MM-DD, got {text!r}") from exc
    return month, day


def _time_of_day(text: str, key: str) -> int:
    try:
        hh_s, mm_s = text.split(":")
        hh, mm = int(hh_s), int(mm_s)
    except ValueError as exc:
        raise _fail(key, f"must be HH:MM, got {text!r}") from exc
    if len(hh_s) != 2 or len(mm_s) != 2 or not (0 <= mm < 60) or not (0 <= hh <= 24) or (hh == 24 and mm):
        raise _fail(key, f"must be HH:MM between 00:00 and 24:00, got {text!r}")
    return hh * 3600 + mm * 60


def _weekday(text: str, key: str) -> int:
    if text not in _WEEKDAYS:
        raise _fail(key, f"must be one of {', '.join(_WEEKDAYS)}, got {text!r}")
    return _WEEKDAYS.index(text)


def _enum(cls: type[enum.StrEnum], text: str, key: str) -> Any:
    try:
        return cls(text)
    except ValueError as exc:
        raise _fail(key, f"must be one of {', '.join(m.value for m in cls)}, got {text!r}") from exc


def _parse_seasons(doc: Mapping[str, Any]) -> tuple[Season, ...]:
    raw = _get(doc, "seasons", list, "", [])
    if not raw:
        return (Season(ALL_YEAR, (1, 1), (12, 31)),)
    seasons: list[Season] = []
    for i, table in enumerate(raw):
        where = f"seasons[{i}]"
        if not isinstance(table, dict):
            raise _fail(where, "must be a table")
        _check_keys(table, ("name", "start", "end"), where)
        name = _get(table, "name", str, where)
        if any(s.name == name for s in seasons):
            raise _fail(f"{where}.name", f"duplicate season {name!r}")
        seasons.append(Season(name, _month_day(_get(table, "start", str, where), f"{where}.start"),
                              _month_day(_get(table, "end", str, where), f"{where}.end")))
    day = dt.date(_LEAP_YEAR, 1, 1)
    while day.year == _LEAP_YEAR:
        holders = [s.name for s in seasons if s.contains(day)]
        if len(holders) != 1:
            what = "no season" if not holders else f"seasons {', '.join(holders)} overlap"
            raise _fail("seasons", f"{what} on {day:%m-%d}; seasons must cover every day exactly once")
        day += dt.timedelta(days=1)
    return tuple(seasons)


def _parse_holiday(table: Any, where: str) -> HolidayRule:
    if not isinstance(table, dict):
        raise _fail(where, "must be a table")
    _check_keys(table, ("name", "date", "month", "weekday", "nth", "observed"), where)
    name = _get(table, "name", str, where)
    observed = _enum(Observed, _get(table, "observed", str, where, "none"), f"{where}.observed")
    if "date" in table:
        if any(k in table for k in ("month", "weekday", "nth")):
            raise _fail(where, "give either date or month + weekday + nth, not both")
        text = _get(table, "date", str, where)
        if text.count("-") == 2:
            try:
                one = dt.date.fromisoformat(text)
            except ValueError as exc:
                raise _fail(f"{where}.date", f"must be MM-DD or YYYY-MM-DD, got {text!r}") from exc
            return HolidayRule(name, one.month, day=one.day, year=one.year, observed=observed)
        month, day = _month_day(text, f"{where}.date")
        return HolidayRule(name, month, day=day, observed=observed)
    month_v = table.get("month")
    if isinstance(month_v, str):
        if month_v not in _MONTHS:
            raise _fail(f"{where}.month", f"must be 1-12 or one of {', '.join(_MONTHS)}, got {month_v!r}")
        month = _MONTHS.index(month_v) + 1
    else:
        month = _get(table, "month", int, where)
        if not 1 <= month <= 12:
            raise _fail(f"{where}.month", f"must be 1-12, got {month}")
    weekday = _weekday(_get(table, "weekday", str, where), f"{where}.weekday")
    nth = _get(table, "nth", int, where)
    if nth not in (-1, 1, 2, 3, 4, 5):
        raise _fail(f"{where}.nth", f"must be 1-5 or -1 (last), got {nth}")
    if nth == 5:
        raise _fail(f"{where}.nth", "a fifth weekday does not exist every year; use -1 (last)")
    return HolidayRule(name, month, weekday=weekday, nth=nth, observed=observed)


def _parse_rule(table: Any, where: str, periods: Sequence[str], seasons: Sequence[Season]) -> TouRule:
    if not isinstance(table, dict):
        raise _fail(where, "must be a table")
    _check_keys(table, ("period", "seasons", "day_types", "hours"), where)
    period = _get(table, "period", str, where)
    if period not in periods:
        raise _fail(f"{where}.period", f"{period!r} is not in periods ({', '.join(periods)})")
    season_names = [s.name for s in seasons]
    chosen = _str_list(table, "seasons", where, list(season_names))
    for name in chosen:
        if name not in season_names:
            raise _fail(f"{where}.seasons", f"unknown season {name!r} (have {', '.join(season_names)})")
    kinds = [_enum(DayKind, k, f"{where}.day_types") for k in _str_list(table, "day_types", where)]
    if not kinds:
        raise _fail(f"{where}.day_types", "must name at least one day type")
    hours = _get(table, "hours", list, where)
    if not hours:
        raise _fail(f"{where}.hours", "must hold at least one [start, end] range")
    spans: list[tuple[int, int]] = []
    for j, pair in enumerate(hours):
        key = f"{where}.hours[{j}]"
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise _fail(key, f'must be ["HH:MM", "HH:MM"], got {pair!r}')
        start, end = _time_of_day(pair[0], key), _time_of_day(pair[1], key)
        if start in (end, SECONDS_PER_DAY):
            raise _fail(key, f"empty range {pair!r}")
        if start < end:
            spans.append((start, end))
        else:  # across midnight
            spans.append((start, SECONDS_PER_DAY))
            if end:
                spans.append((0, end))
    return TouRule(period, frozenset(chosen), frozenset(kinds), tuple(sorted(spans)))


def _check_overlaps(rules: Sequence[TouRule], seasons: Sequence[Season]) -> None:
    kinds = (*BASE_DAY_KINDS, DayKind.CRITICAL_PEAK)
    for season in seasons:
        for kind in kinds:
            spans = sorted((a, b, i) for i, r in enumerate(rules)
                           if season.name in r.seasons and kind in r.day_kinds for a, b in r.spans)
            for (_a0, b0, i0), (a1, _b1, i1) in itertools.pairwise(spans):
                if a1 < b0:
                    raise _fail(f"tou[{i1}].hours", f"overlaps tou[{i0}] on {kind.value} days of season {season.name}")


def parse_tariff(doc: Mapping[str, Any], *, name: str | None = None) -> Tariff:
    """A validated tariff from a parsed TOML document (or hub.toml sub-table)."""
    _check_keys(doc, ("name", "description", "time_zone", "periods", "default_period", "weekend_days",
                      "boundary", "demand", "seasons", "holidays", "tou"), "")
    tariff_name = name if name is not None else _get(doc, "name", str, "")
    if not tariff_name:
        raise _fail("name", "must not be empty")
    zone_name = _get(doc, "time_zone", str, "")
    try:
        ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _fail("time_zone", f"unknown IANA time zone {zone_name!r}") from exc
    periods = _str_list(doc, "periods", "")
    if not periods or len(set(periods)) != len(periods) or not all(periods):
        raise _fail("periods", f"must be a non-empty list of distinct names, got {periods!r}")
    default_period = _get(doc, "default_period", str, "")
    if default_period not in periods:
        raise _fail("default_period", f"{default_period!r} is not in periods ({', '.join(periods)})")
    weekend = frozenset(_weekday(d, "weekend_days") for d in _str_list(doc, "weekend_days", "", ["sat", "sun"]))

    boundary_t = _get(doc, "boundary", dict, "", {})
    _check_keys(boundary_t, ("policy", "assign_by"), "boundary")
    policy = _enum(BoundaryPolicy, _get(boundary_t, "policy", str, "boundary", "assign"), "boundary.policy")
    assign_by = _enum(AssignBy, _get(boundary_t, "assign_by", str, "boundary", "end"), "boundary.assign_by")

    demand_t = _get(doc, "demand", dict, "", {})
    _check_keys(demand_t, ("window_minutes", "rolling"), "demand")
    window = _get(demand_t, "window_minutes", int, "demand", 15)
    if window <= 0 or 1440 % window:
        raise _fail("demand.window_minutes", f"must divide 1440 (a day), got {window}")
    rolling = _get(demand_t, "rolling", bool, "demand", True)

    seasons = _parse_seasons(doc)
    holidays = tuple(_parse_holiday(t, f"holidays[{i}]")
                     for i, t in enumerate(_get(doc, "holidays", list, "", [])))
    rules = tuple(_parse_rule(t, f"tou[{i}]", periods, seasons)
                  for i, t in enumerate(_get(doc, "tou", list, "", [])))
    _check_overlaps(rules, seasons)
    return Tariff(
        name=tariff_name,
        time_zone=zone_name,
        periods=tuple(periods),
        default_period=default_period,
        seasons=seasons,
        weekend_days=weekend,
        holidays=holidays,
        rules=rules,
        boundary=policy,
        assign_by=assign_by,
        demand=DemandRule(window, rolling),
        description=_get(doc, "description", str, "", ""),
    )


def load_tariff(path: str | Path) -> Tariff:
    """Read and validate a tariff TOML file."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tariff file {path}: {exc}", metadata={"key": str(path)}) from exc
    return parse_tariff(doc)


def bundled_tariff(name: str) -> Tariff:
    """One of the example tariffs shipped in gateway/billing/tariffs/ (file stem)."""
    resource = importlib.resources.files("gateway.billing").joinpath("tariffs", f"{name}.toml")
    if not resource.is_file():
        raise ConfigError(f"no bundled tariff {name!r}", metadata={"key": "tariff"})
    return parse_tariff(tomllib.loads(resource.read_text(encoding="utf-8")))


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """The [billing] table of hub.toml: the tariffs the hub bills with.

    The bundled example tariffs are always there; ``tariff_files`` and inline
    ``[billing.tariffs.<name>]`` tables add to them or replace one by name.
    """

    tariffs: Mapping[str, Tariff]
    # An estimate VEE made counts as billing-valid without approval (the
    # point of estimation); false holds such periods until an operator approves.
    estimates_billable: bool = True
    # Worker processes for bill cycles (0: in the hub's process).
    cycle_workers: int = 0


BUNDLED_TARIFFS = ("residential_tou", "commercial_demand")


def parse_billing_settings(table: Mapping[str, Any], base_dir: Path | None = None) -> BillingSettings:
    if not isinstance(table, Mapping):
        raise ConfigError("[billing] must be a table", metadata={"key": "billing"})
    unknown = sorted(set(table) - {"tariff_files", "tariffs", "estimates_billable", "cycle_workers"})
    if unknown:
        raise ConfigError(f"unknown key billing.{unknown[0]} (allowed: cycle_workers, estimates_billable, "
                          "tariff_files, tariffs)",
                          metadata={"key": f"billing.{unknown[0]}"})
    tariffs = {name: bundled_tariff(name) for name in BUNDLED_TARIFFS}
    files = table.get("tariff_files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError("billing.tariff_files must be a list of file paths", metadata={"key": "billing.tariff_files"})
    for file in files:
        path = Path(file)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            tariff = load_tariff(path)
        except OSError as exc:
            raise ConfigError(f"billing.tariff_files: cannot read {path}: {exc.strerror}",
                              metadata={"key": "billing.tariff_files"}) from exc
        except ConfigError as exc:
            raise ConfigError(f"billing.tariff_files: {path}: {exc.message}",
                              metadata={"key": f"billing.tariff_files:{path}"}) from exc
        tariffs[tariff.name] = tariff
    inline = table.get("tariffs", {})
    if not isinstance(inline, Mapping):
        raise ConfigError("billing.tariffs must be a table of tables: [billing.tariffs.<name>]",
                          metadata={"key": "billing.tariffs"})
    for name, doc in inline.items():
        if not isinstance(doc, Mapping):
            raise ConfigError(f"billing.tariffs.{name} must be a table", metadata={"key": f"billing.tariffs.{name}"})
        try:
            tariffs[name] = parse_tariff(doc, name=name)
        except ConfigError as exc:
            raise ConfigError(f"billing.tariffs.{name}: {exc.message}",
                              metadata={"key": f"billing.tariffs.{name}.{exc.metadata.get('key', '')}"}) from exc
    estimates = table.get("estimates_billable", True)
    if not isinstance(estimates, bool):
        raise ConfigError(f"billing.estimates_billable must be true or false, got {estimates!r}",
                          metadata={"key": "billing.estimates_billable"})
    workers = table.get("cycle_workers", min(os.cpu_count() or 1, 4))
    if not isinstance(workers, int) or isinstance(workers, bool) or not 0 <= workers <= 64:
        raise ConfigError(f"billing.cycle_workers must be an integer 0..64, got {workers!r}",
                          metadata={"key": "billing.cycle_workers"})
    return BillingSettings(tariffs=tariffs, estimates_billable=estimates, cycle_workers=workers)
