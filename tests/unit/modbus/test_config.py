"""Config validation: every error names the key."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from adapters.modbus.config import parse_config
from adapters.modbus.registers import DataType, Function, Quantity, WordOrder
from gateway.errors import ConfigError

METER = {"id": "M1", "host": "127.0.0.1", "port": 5020, "unit": 1, "map": "sunspec_203"}


def test_defaults() -> None:
    cfg = parse_config({"type": "modbus", "meters": [METER]})
    assert (cfg.interval_seconds, cfg.poll_seconds, cfg.timeout_seconds, cfg.retries) == (900, 900, 2.0, 2)
    assert cfg.meters[0].register_map.name == "sunspec_203"
    assert cfg.clock is None


@pytest.mark.parametrize(("change", "key"), [
    ({"interval_seconds": 7}, "interval_seconds"),
    ({"poll_seconds": 400}, "poll_seconds"),
    ({"timeout_seconds": -1}, "timeout_seconds"),
    ({"bogus": 1}, "bogus"),
    ({"meters": []}, "meters"),
    ({"meters": [{**METER, "map": "nope"}]}, "meters[0].map"),
    ({"meters": [{**METER, "unit": 300}]}, "meters[0].unit"),
    ({"meters": [METER, {**METER, "id": "M2"}]}, "meters[1].unit"),
    ({"clock": {"rate": 10, "anchor_wall_us": 0}}, "clock.start"),
    ({"maps": {"sunspec_203": {"points": []}}}, "maps.sunspec_203"),
])
def test_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"type": "modbus", "meters": [METER], **change})
    assert key in str(info.value)
    assert info.value.reason == "INVALID_CONFIG"


TOML = """
type = "modbus"
interval_seconds = 300
clock = { start = 2026-11-01T00:00:00Z, rate = 100, anchor_wall_us = 1 }

[maps.acme]
[[maps.acme.points]]
name = "Import"
address = 100
type = "uint32"
word_order = "little"
function = "input"
scale = -1
unit_exponent = 3
quantity = "energy_delivered"

[[maps.acme.points]]
name = "Power"
address = 110
type = "int16"
scale_register = "Power_SF"
quantity = "power"

[[maps.acme.points]]
name = "Power_SF"
address = 111
type = "sunssf"

[[meters]]
id = "ACME-1"
host = "10.0.0.5"
unit = 7
map = "acme"
"""


def test_custom_map_from_toml() -> None:
    cfg = parse_config(tomllib.loads(TOML))
    meter = cfg.meters[0]
    assert (meter.port, meter.unit) == (502, 7)
    imp, power, sf = meter.register_map.points
    assert (imp.data_type, imp.word_order, imp.function, imp.scale, imp.unit_exponent, imp.quantity) == (
        DataType.UINT32, WordOrder.LITTLE, Function.INPUT, -1, 3, Quantity.ENERGY_DELIVERED)
    assert power.scale_register == "Power_SF" and sf.quantity is Quantity.SCALE_FACTOR
    assert cfg.clock is not None and cfg.clock.rate == 100
    assert cfg.clock.start_us == 1_793_491_200_000_000


@pytest.mark.parametrize(("point", "fragment"), [
    ({"name": "x", "address": 1, "type": "int99", "quantity": "power"}, "type"),
    ({"name": "x", "address": 70000, "type": "int16", "quantity": "power"}, "address"),
    ({"name": "x", "address": 1, "type": "int16", "quantity": "power", "scale_register": "y"}, "scale register"),
    ({"name": "x", "address": 1, "type": "float32", "quantity": "nope"}, "quantity"),
])
def test_bad_custom_points(point: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config({"type": "modbus", "meters": [{**METER, "map": "m"}], "maps": {"m": {"points": [point]}}})
