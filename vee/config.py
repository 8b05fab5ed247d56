"""Rule sets: which rules run for a meter class, with which parameters.

A VEE configuration is a TOML document (or the ``[vee]`` table of hub.toml)::

    [rulesets.default.spike]
    percent = 300

    [rulesets.commercial]
    extends = "default"
    meter_classes = ["commercial", "industrial"]
    [rulesets.commercial.high_limit]
    max_per_hour = 5_000_000

Every rule has documented defaults (docs/vee.md); a rule set overrides them and
may extend another rule set. A rule set named like a meter class serves that
class, ``meter_classes`` adds aliases, and ``default`` (required) serves the
rest. Unknown rule names or parameters, wrong types and out-of-range values
raise ConfigError naming the rule set, the rule and the key.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ConfigError
from vee.flags import STATUS_FLAG_BITS
from vee.items import Severity

FLOW_DIRECTION_NAMES = ("delivered", "received", "net", "total")


def _int(lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
    return {"kind": "int", "lo": lo, "hi": hi}


def _float(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"kind": "float", "lo": lo, "hi": hi}


def _choices(*names: str) -> dict[str, Any]:
    return {"kind": "list", "choices": names}


_BOOL: dict[str, Any] = {"kind": "bool"}
_SEVERITY: dict[str, Any] = {"kind": "severity"}


@dataclass(frozen=True, slots=True)
class MissingRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    min_intervals: int = field(default=1, metadata=_int(1))
    report_estimated: bool = field(default=False, metadata=_BOOL)


@dataclass(frozen=True, slots=True)
class NegativeRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.ERROR, metadata=_SEVERITY)
    flow_directions: tuple[str, ...] = field(
        default=("delivered", "received", "total"), metadata=_choices(*FLOW_DIRECTION_NAMES)
    )


@dataclass(frozen=True, slots=True)
class HighLimitRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    max_per_hour: int = field(default=100_000, metadata=_int(0))


@dataclass(frozen=True, slots=True)
class LowLimitRule:
    enabled: bool = field(default=False, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    min_per_hour: int = field(default=0, metadata=_int())


@dataclass(frozen=True, slots=True)
class SpikeRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    percent: int = field(default=300, metadata=_int(1, 1_000_000))
    min_value: int = field(default=1_000, metadata=_int(0))


@dataclass(frozen=True, slots=True)
class ZeroRunRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    min_hours: float = field(default=12.0, metadata=_float(0.0, 24.0 * 366))
    # Consumption channels only: a received (export) channel of a meter
    # without generation is legitimately zero all day.
    flow_directions: tuple[str, ...] = field(
        default=("delivered", "total"), metadata=_choices(*FLOW_DIRECTION_NAMES)
    )


@dataclass(frozen=True, slots=True)
class FlatLineRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    min_hours: float = field(default=12.0, metadata=_float(0.0, 24.0 * 366))


@dataclass(frozen=True, slots=True)
class SumCheckRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.ERROR, metadata=_SEVERITY)
    tolerance_percent: float = field(default=1.0, metadata=_float(0.0, 100.0))
    tolerance_counts: int = field(default=0, metadata=_int(0))


@dataclass(frozen=True, slots=True)
class TimeToleranceRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    max_clock_error_seconds: int = field(default=120, metadata=_int(0))
    flag_clock_set: bool = field(default=True, metadata=_BOOL)


@dataclass(frozen=True, slots=True)
class MeterStatusRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    flags: tuple[str, ...] = field(
        default=("overflow", "tamper", "test_mode", "device_error"), metadata=_choices(*STATUS_FLAG_BITS)
    )


@dataclass(frozen=True, slots=True)
class InactiveUsageRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.ERROR, metadata=_SEVERITY)
    min_total: int = field(default=1, metadata=_int(1))


@dataclass(frozen=True, slots=True)
class ZeroFillEstimation:
    enabled: bool = field(default=True, metadata=_BOOL)


@dataclass(frozen=True, slots=True)
class InterpolateEstimation:
    enabled: bool = field(default=True, metadata=_BOOL)
    max_gap_hours: float = field(default=2.0, metadata=_float(0.0, 24.0 * 31))


@dataclass(frozen=True, slots=True)
class LikeDayEstimation:
    enabled: bool = field(default=True, metadata=_BOOL)
    days: int = field(default=4, metadata=_int(1, 60))
    min_days: int = field(default=1, metadata=_int(1, 60))
    lookback_days: int = field(default=28, metadata=_int(1, 400))


@dataclass(frozen=True, slots=True)
class ScaleToRegisterEstimation:
    enabled: bool = field(default=True, metadata=_BOOL)


@dataclass(frozen=True, slots=True)
class LongEstimationRule:
    enabled: bool = field(default=True, metadata=_BOOL)
    severity: Severity = field(default=Severity.WARNING, metadata=_SEVERITY)
    max_days: int = field(default=3, metadata=_int(1, 400))


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of one rule set, each with its parameters (frozen)."""

    name: str = "default"
    missing: MissingRule = MissingRule()
    negative: NegativeRule = NegativeRule()
    high_limit: HighLimitRule = HighLimitRule()
    low_limit: LowLimitRule = LowLimitRule()
    spike: SpikeRule = SpikeRule()
    zero_run: ZeroRunRule = ZeroRunRule()
    flat_line: FlatLineRule = FlatLineRule()
    sum_check: SumCheckRule = SumCheckRule()
    time_tolerance: TimeToleranceRule = TimeToleranceRule()
    meter_status: MeterStatusRule = MeterStatusRule()
    inactive_usage: InactiveUsageRule = InactiveUsageRule()
    zero_fill: ZeroFillEstimation = ZeroFillEstimation()
    interpolate: InterpolateEstimation = InterpolateEstimation()
    like_day: LikeDayEstimation = LikeDayEstimation()
    scale_to_register: ScaleToRegisterEstimation = ScaleToRegisterEstimation()
    long_estimation: LongEstimationRule = LongEstimationRule()


RULE_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RuleSet) if f.name != "name")
_RULE_TYPES: dict[str, type[Any]] = {
    f.name: type(f.default) for f in dataclasses.fields(RuleSet) if f.name != "name"
}
_RULESET_KEYS = {"extends", "meter_classes", "description"}


@dataclass(frozen=True, slots=True)
class VeeConfig:
    """All rule sets and the meter class -> rule set mapping."""

    rulesets: Mapping[str, RuleSet]
    class_map: Mapping[str, str]

    def ruleset_for(self, meter_class: str) -> RuleSet:
        name = self.class_map.get(meter_class, meter_class)
        return self.rulesets.get(name) or self.rulesets["default"]


def _check_value(where: str, key: str, spec: Mapping[str, Any], value: Any) -> Any:
    kind = spec["kind"]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}", metadata={"key": key})
        return value
    if kind == "severity":
        try:
            return Severity(value)
        except ValueError:
            allowed = ", ".join(s.value for s in Severity)
            raise ConfigError(
                f"{where}: {key} must be one of {allowed}, got {value!r}", metadata={"key": key}
            ) from None
    if kind == "list":
        choices = spec["choices"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings, got {value!r}", metadata={"key": key})
        for v in value:
            if v not in choices:
                raise ConfigError(
                    f"{where}: {key} has unknown entry {v!r} (allowed: {', '.join(choices)})", metadata={"key": key}
                )
        return tuple(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}", metadata={"key": key})
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}", metadata={"key": key})
        value = float(value)
    lo, hi = spec["lo"], spec["hi"]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{'-inf' if lo is None else lo}..{'inf' if hi is None else hi}"
        raise ConfigError(f"{where}: {key} must be in {bounds}, got {value!r}", metadata={"key": key})
    return value


def _parse_rule(ruleset: str, rule: str, table: Any, base: Any) -> Any:
    where = f"VEE rule set {ruleset!r}, rule {rule!r}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown parameter {key!r} (known: {', '.join(fields)})",
                metadata={"ruleset": ruleset, "rule": rule, "key": key},
            )
        changes[key] = _check_value(where, key, fields[key].metadata, value)
    result = dataclasses.replace(base, **changes)
    like_day = result if isinstance(result, LikeDayEstimation) else None
    if like_day is not None and like_day.min_days > like_day.days:
        raise ConfigError(f"{where}: min_days ({like_day.min_days}) must not exceed days ({like_day.days})")
    return result


def parse_vee_config(data: Mapping[str, Any]) -> VeeConfig:
    """Validate a parsed VEE document (the top level holds ``rulesets``)."""
    unknown = set(data) - {"rulesets"}
    if unknown:
        raise ConfigError(f"VEE config: unknown key {sorted(unknown)[0]!r} (expected 'rulesets')")
    tables = data.get("rulesets", {})
    if not isinstance(tables, Mapping):
        raise ConfigError("VEE config: rulesets must be a table of rule sets")
    if "default" not in tables:
        raise ConfigError("VEE config: a rule set named 'default' is required")
    resolved: dict[str, RuleSet] = {}
    class_map: dict[str, str] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> RuleSet:
        if name in resolved:
            return resolved[name]
        if name in chain:
            raise ConfigError(f"VEE rule set {name!r}: extends forms a cycle ({' -> '.join((*chain, name))})")
        table = tables.get(name)
        if not isinstance(table, Mapping):
            if chain:
                raise ConfigError(f"VEE rule set {chain[-1]!r}: extends unknown rule set {name!r}")
            raise ConfigError(f"VEE rule set {name!r}: must be a table")
        parent_name = table.get("extends")
        if parent_name is not None and not isinstance(parent_name, str):
            raise ConfigError(f"VEE rule set {name!r}: extends must be a rule set name, got {parent_name!r}")
        base = resolve(parent_name, (*chain, name)) if parent_name else RuleSet()
        changes: dict[str, Any] = {"name": name}
        for key, value in table.items():
            if key in _RULESET_KEYS:
                continue
            if key not in _RULE_TYPES:
                raise ConfigError(
                    f"VEE rule set {name!r}: unknown rule {key!r} (known: {', '.join(RULE_NAMES)})",
                    metadata={"ruleset": name, "rule": key},
                )
            changes[key] = _parse_rule(name, key, value, getattr(base, key))
        classes = table.get("meter_classes", [])
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"VEE rule set {name!r}: meter_classes must be a list of strings, got {classes!r}")
        for cls in classes:
            if class_map.get(cls, name) != name:
                raise ConfigError(f"VEE rule set {name!r}: meter class {cls!r} is already served by {class_map[cls]!r}")
            class_map[cls] = name
        description = table.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"VEE rule set {name!r}: description must be a string")
        ruleset = dataclasses.replace(base, **changes)
        resolved[name] = ruleset
        return ruleset

    for name in tables:
        resolve(str(name), ())
    return VeeConfig(rulesets=resolved, class_map=class_map)


def parse_vee_toml(text: str) -> VeeConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"VEE config is not valid TOML: {exc}") from exc
    return parse_vee_config(data)


def default_config_text() -> str:
    """The shipped default rule set file (vee/rulesets/default.toml)."""
    return importlib.resources.files("vee.rulesets").joinpath("default.toml").read_text(encoding="utf-8")


def default_config() -> VeeConfig:
    return parse_vee_toml(default_config_text())
