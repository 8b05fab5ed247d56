from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from vee import RULE_NAMES, Severity, default_config, default_config_text, parse_vee_toml
from vee.config import RuleSet


def test_default_file_matches_code_defaults() -> None:
    config = default_config()
    default = config.rulesets["default"]
    assert default == RuleSet(name="default")
    for rule in RULE_NAMES:
        assert f"[rulesets.default.{rule}]" in default_config_text()


def test_commercial_extends_default_and_serves_its_classes() -> None:
    config = default_config()
    rs = config.ruleset_for("industrial")
    assert rs.name == "commercial"
    assert rs.high_limit.max_per_hour == 10_000_000
    assert rs.spike.percent == 300
    assert config.ruleset_for("commercial").name == "commercial"
    assert config.ruleset_for("residential").name == "default"


def test_threshold_change_needs_no_code() -> None:
    config = parse_vee_toml('[rulesets.default.spike]\npercent = 50\nseverity = "error"\n')
    assert config.rulesets["default"].spike.percent == 50
    assert config.rulesets["default"].spike.severity is Severity.ERROR


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[rulesets.default.spiky]\npercent = 1\n", ["'default'", "unknown rule 'spiky'"]),
        ("[rulesets.default.spike]\npercnt = 1\n", ["'default'", "'spike'", "unknown parameter 'percnt'"]),
        ('[rulesets.default.spike]\npercent = "x"\n', ["'spike'", "percent must be an integer"]),
        ("[rulesets.default.spike]\npercent = 0\n", ["'spike'", "percent must be in 1..1000000"]),
        ("[rulesets.default.spike]\nenabled = 1\n", ["enabled must be true or false"]),
        ('[rulesets.default.spike]\nseverity = "loud"\n', ["severity must be one of"]),
        ('[rulesets.default.negative]\nflow_directions = ["up"]\n', ["'negative'", "unknown entry 'up'"]),
        ("[rulesets.default.interpolate]\nmax_gap_hours = -1\n", ["'interpolate'", "max_gap_hours"]),
        ("[rulesets.default.like_day]\ndays = 2\nmin_days = 3\n", ["'like_day'", "min_days"]),
        ("[rulesets.other]\n", ["'default' is required"]),
        ('[rulesets.default]\nextends = "nope"\n', ["extends unknown rule set 'nope'"]),
        ('[rulesets.default]\n[rulesets.a]\nextends = "b"\n[rulesets.b]\nextends = "a"\n', ["cycle"]),
        ('[rulesets.default]\nmeter_classes = ["x"]\n[rulesets.b]\nmeter_classes = ["x"]\n', ["already served"]),
        ("[other]\n", ["unknown key 'other'"]),
        ("not toml ===", ["not valid TOML"]),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_vee_toml(text)
    for needle in needles:
        assert needle in str(info.value)
    assert info.value.reason == "INVALID_CONFIG"
