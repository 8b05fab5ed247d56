"""Simulator pieces that need no network: the model, fault selection, the printed config."""

from __future__ import annotations

import argparse
import tomllib

import pytest

from adapters.modbus.config import parse_config
from simulators.modbus.cli import COMMAND, adapter_toml, apply_faults
from simulators.modbus.model import MeterModel, energy_count
from simulators.modbus.server import Fault, ModbusSimFleet

T = 1_790_000_000_000_000


class FixedClock:
    def now_us(self) -> int:
        return T


def test_model_is_deterministic_and_monotonic() -> None:
    a, b = MeterModel.for_meter("MODBUS-000001"), MeterModel.for_meter("MODBUS-000001")
    assert a == b
    samples = [a.import_wus(T + k * 60_000_000) for k in range(200)]
    assert samples == sorted(samples)
    assert energy_count(7_200_000_000, 0) == 2 and energy_count(7_200_000_000, -1) == 20


async def test_printed_config_is_valid_adapter_config() -> None:
    async with ModbusSimFleet(servers=2, units_per_server=3, map_names=("sunspec_201", "float_submeter"),
                              clock=FixedClock()) as fleet:
        table = tomllib.loads(adapter_toml(fleet, {"start_us": T, "anchor_wall_us": 1, "rate": 60}))
        assert len(set(fleet.ports)) == 2
    cfg = parse_config(table["sources"]["modbus-sim"])
    assert [m.meter_id for m in cfg.meters] == [f"MODBUS-{i:06d}" for i in range(1, 7)]
    assert [m.register_map.name for m in cfg.meters][:2] == ["sunspec_201", "float_submeter"]
    assert cfg.clock is not None and cfg.clock.rate == 60


def test_fault_selection_is_deterministic() -> None:
    fleet = ModbusSimFleet(servers=1, units_per_server=200, clock=FixedClock())
    hit = apply_faults(fleet, [("exception", 0.25)], exception_code=6, now_us=T)
    faulty = [m for m in fleet.meters if m.fault is Fault.EXCEPTION]
    assert hit == len(faulty) and 25 < hit < 75
    assert {m.exception_code for m in faulty} == {6}
    again = ModbusSimFleet(servers=1, units_per_server=200, clock=FixedClock())
    apply_faults(again, [("exception", 0.25)], exception_code=6, now_us=T)
    assert [m.meter_id for m in again.meters if m.fault is Fault.EXCEPTION] == [m.meter_id for m in faulty]


def test_cli_rejects_unknown_fault() -> None:
    parser = argparse.ArgumentParser()
    COMMAND.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault", "meltdown=0.1"])
