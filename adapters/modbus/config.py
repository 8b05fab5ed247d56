"""The Modbus adapter's configuration: a frozen, validated model of its
[sources.<name>] table (every key and default is listed in docs/modbus.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.modbus.clock import ScaledClock
from adapters.modbus.maps import builtin_maps, map_from_mapping
from adapters.modbus.registers import MAX_REGISTERS_PER_READ, RegisterMap
from gateway.errors import ConfigError

SECONDS_PER_DAY = 86400


@dataclass(frozen=True, slots=True)
class MeterConfig:
    meter_id: str
    host: str
    port: int
    unit: int
    register_map: RegisterMap


@dataclass(frozen=True, slots=True)
class ClockConfig:
    """An accelerated meter clock shared with a simulator (demo, tests)."""

    start_us: int
    rate: int
    anchor_wall_us: int
    end_us: int | None

    def build(self) -> ScaledClock:
        return ScaledClock(start_us=self.start_us, anchor_wall_us=self.anchor_wall_us, rate=self.rate,
                           end_us=self.end_us)

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start_us": self.start_us, "rate": self.rate, "anchor_wall_us": self.anchor_wall_us}
        if self.end_us is not None:
            out["end_us"] = self.end_us
        return out


@dataclass(frozen=True, slots=True)
class ModbusConfig:
    meters: tuple[MeterConfig, ...]
    interval_seconds: int = 900
    poll_seconds: int = 900
    alignment_tolerance_seconds: int = 60
    timeout_seconds: float = 2.0
    retries: int = 2
    retry_backoff_seconds: float = 0.1
    max_backoff_seconds: float = 30.0
    connections_per_host: int = 1
    max_register_gap: int = 16
    register_read_seconds: int = 3600
    batch_seconds: int = 3600
    instantaneous: bool = True
    multiplier_applied: bool = True
    clock: ClockConfig | None = None


_KEYS = {"type", "interval_seconds", "poll_seconds", "alignment_tolerance_seconds", "timeout_seconds", "retries",
         "retry_backoff_seconds", "max_backoff_seconds", "connections_per_host", "max_register_gap",
         "register_read_seconds", "batch_seconds", "instantaneous", "multiplier_applied", "clock", "maps", "meters"}
_METER_KEYS = {"id", "host", "port", "unit", "map"}
_CLOCK_KEYS = {"start_us", "start", "rate", "anchor_wall_us", "end_us", "end"}


def _int(table: Mapping[str, Any], key: str, default: int, *, low: int, high: int, where: str = "") -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}{key} = {value!r}: expected an integer in {low}..{high}", metadata={"key": key})
    return value


def _float(table: Mapping[str, Any], key: str, default: float, *, low: float, high: float) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{key} = {value!r}: expected a number in {low}..{high}", metadata={"key": key})
    return float(value)


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r}: expected true or false", metadata={"key": key})
    return value


def _time_us(table: Mapping[str, Any], key: str, where: str) -> int | None:
    """A time given as ``<key>_us`` (int) or ``<key>`` (TOML datetime or ISO string, with offset)."""
    if f"{key}_us" in table:
        return _int(table, f"{key}_us", 0, low=0, high=1 << 62, where=where)
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{where}{key} = {value!r} is not an ISO 8601 time", metadata={"key": key}) from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{where}{key} = {value!r}: expected a time with a UTC offset", metadata={"key": key})
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def _clock(raw: Any) -> ClockConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError("clock must be a table", metadata={"key": "clock"})
    unknown = set(raw) - _CLOCK_KEYS
    if unknown:
        raise ConfigError(f"clock: unknown key(s) {sorted(unknown)}", metadata={"key": "clock"})
    start = _time_us(raw, "start", "clock.")
    if start is None:
        raise ConfigError("clock.start is required", metadata={"key": "clock.start"})
    end = _time_us(raw, "end", "clock.")
    if end is not None and end < start:
        raise ConfigError("clock.end is before clock.start", metadata={"key": "clock.end"})
    rate = _int(raw, "rate", 1, low=1, high=10_000_000, where="clock.")
    if "anchor_wall_us" not in raw:
        raise ConfigError("clock.anchor_wall_us is required", metadata={"key": "clock.anchor_wall_us"})
    anchor = _int(raw, "anchor_wall_us", 0, low=0, high=1 << 62, where="clock.")
    return ClockConfig(start_us=start, rate=rate, anchor_wall_us=anchor, end_us=end)


def _maps(raw: Any) -> dict[str, RegisterMap]:
    maps = builtin_maps()
    if raw is None:
        return maps
    if not isinstance(raw, Mapping):
        raise ConfigError("maps must be a table of register maps", metadata={"key": "maps"})
    for name, table in raw.items():
        if name in maps:
            raise ConfigError(f"maps.{name} would replace a built-in map", metadata={"key": f"maps.{name}"})
        if not isinstance(table, Mapping):
            raise ConfigError(f"maps.{name} must be a table", metadata={"key": f"maps.{name}"})
        maps[name] = map_from_mapping(name, table)
    return maps


def _meters(raw: Any, maps: Mapping[str, RegisterMap]) -> tuple[MeterConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("meters must be a non-empty array of tables", metadata={"key": "meters"})
    meters = []
    seen_ids: set[str] = set()
    seen_addresses: set[tuple[str, int, int]] = set()
    for i, entry in enumerate(raw):
        where = f"meters[{i}]."
        if not isinstance(entry, Mapping):
            raise ConfigError(f"meters[{i}] must be a table", metadata={"key": f"meters[{i}]"})
        unknown = set(entry) - _METER_KEYS
        if unknown:
            raise ConfigError(f"meters[{i}]: unknown key(s) {sorted(unknown)}", metadata={"key": f"meters[{i}]"})
        meter_id = entry.get("id")
        if not isinstance(meter_id, str) or not meter_id:
            raise ConfigError(f"{where}id must be a non-empty string", metadata={"key": f"{where}id"})
        if meter_id in seen_ids:
            raise ConfigError(f"{where}id {meter_id!r} is listed twice", metadata={"key": f"{where}id"})
        host = entry.get("host")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{where}host must be a host name or address", metadata={"key": f"{where}host"})
        port = _int(entry, "port", 502, low=1, high=65535, where=where)
        unit = _int(entry, "unit", 1, low=0, high=255, where=where)
        map_name = entry.get("map")
        if not isinstance(map_name, str) or map_name not in maps:
            known = ", ".join(sorted(maps))
            raise ConfigError(f"{where}map = {map_name!r} is not a known map ({known})",
                              metadata={"key": f"{where}map"})
        if (host, port, unit) in seen_addresses:
            raise ConfigError(f"{where}unit: {host}:{port} unit {unit} is listed twice",
                              metadata={"key": f"{where}unit"})
        seen_ids.add(meter_id)
        seen_addresses.add((host, port, unit))
        meters.append(MeterConfig(meter_id=meter_id, host=host, port=port, unit=unit, register_map=maps[map_name]))
    return tuple(meters)


def parse_config(table: Mapping[str, Any]) -> ModbusConfig:
    """Validate a [sources.<name>] table; raises ConfigError naming the wrong key."""
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} for a modbus source", metadata={"key": sorted(unknown)[0]})
    interval = _int(table, "interval_seconds", 900, low=1, high=SECONDS_PER_DAY)
    if SECONDS_PER_DAY % interval:
        raise ConfigError(f"interval_seconds = {interval} must divide 86400", metadata={"key": "interval_seconds"})
    poll = _int(table, "poll_seconds", interval, low=1, high=interval)
    if interval % poll:
        raise ConfigError(f"poll_seconds = {poll} must divide interval_seconds = {interval}",
                          metadata={"key": "poll_seconds"})
    register_read = _int(table, "register_read_seconds", 3600, low=interval, high=SECONDS_PER_DAY)
    if register_read % interval or SECONDS_PER_DAY % register_read:
        raise ConfigError(f"register_read_seconds = {register_read} must be a multiple of interval_seconds "
                          "and divide 86400", metadata={"key": "register_read_seconds"})
    batch = _int(table, "batch_seconds", 3600, low=interval, high=SECONDS_PER_DAY)
    maps = _maps(table.get("maps"))
    clock = _clock(table["clock"]) if "clock" in table else None
    return ModbusConfig(
        meters=_meters(table.get("meters"), maps),
        interval_seconds=interval,
        poll_seconds=poll,
        alignment_tolerance_seconds=_int(table, "alignment_tolerance_seconds", min(60, interval // 2), low=0,
                                         high=interval - 1),
        timeout_seconds=_float(table, "timeout_seconds", 2.0, low=0.01, high=300),
        retries=_int(table, "retries", 2, low=0, high=20),
        retry_backoff_seconds=_float(table, "retry_backoff_seconds", 0.1, low=0, high=60),
        max_backoff_seconds=_float(table, "max_backoff_seconds", 30.0, low=0, high=3600),
        connections_per_host=_int(table, "connections_per_host", 1, low=1, high=64),
        max_register_gap=_int(table, "max_register_gap", 16, low=0, high=MAX_REGISTERS_PER_READ),
        register_read_seconds=register_read,
        batch_seconds=batch,
        instantaneous=_bool(table, "instantaneous", True),
        multiplier_applied=_bool(table, "multiplier_applied", True),
        clock=clock,
    )
