"""The simulator's COSEM objects, robustness, CLI and demo fleet, over real TCP."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from adapters.dlms import axdr
from adapters.dlms.codec import Mechanism
from adapters.dlms.cosem import (
    CLOCK_OBIS,
    LOAD_PROFILE_OBIS,
    AttributeRef,
    ClassId,
    EntryDescriptor,
    Obis,
    capture_objects_from_data,
)
from adapters.dlms.errors import DlmsObjectClassInconsistent, DlmsObjectUndefined, DlmsScopeOfAccessViolated
from adapters.dlms.profile import decode_buffer
from adapters.dlms.session import SecuritySettings
from adapters.dlms.transport import Association
from simulators.dlms.cli import COMMAND, config_from_args
from simulators.dlms.demo import demo_fleet
from simulators.dlms.server import CAPTURE_OBJECTS, MeterFleet, SimulatorConfig
from tests.support.recording_port import RecordingPort

NOW = datetime(2026, 3, 3, 0, 0, 7, tzinfo=UTC)
HISTORY = datetime(2026, 3, 1, tzinfo=UTC)


def frozen() -> datetime:
    return NOW


async def test_objects_and_entry_selection() -> None:
    async with MeterFleet(SimulatorConfig(meters=1, history_start=HISTORY), clock=frozen) as fleet:
        endpoint = fleet.endpoints[0]
        async with Association(endpoint.host, endpoint.port, SecuritySettings()) as client:
            captures = capture_objects_from_data(axdr.decode(
                await client.get(AttributeRef(ClassId.PROFILE_GENERIC, LOAD_PROFILE_OBIS, 3))))
            assert captures == CAPTURE_OBJECTS
            entries = axdr.decode(await client.get(AttributeRef(ClassId.PROFILE_GENERIC, LOAD_PROFILE_OBIS, 7)))
            assert entries.integer == 192
            raw = await client.get(AttributeRef(ClassId.PROFILE_GENERIC, LOAD_PROFILE_OBIS, 2),
                                   EntryDescriptor(from_entry=96, to_entry=98))
            columns = decode_buffer(raw)
            rows = fleet.model.rows(endpoint.meter_id, int(HISTORY.timestamp()) + 900, int(NOW.timestamp()))
            assert columns.columns[0].tolist() == rows.ends[95:98].tolist()
            narrow = axdr.decode(await client.get(AttributeRef(ClassId.PROFILE_GENERIC, LOAD_PROFILE_OBIS, 2),
                                                  EntryDescriptor(1, 2, 3, 3)))
            assert [[c.integer for c in row.items] for row in narrow.items] == [[int(v)] for v in
                                                                                rows.import_wh[:2]]
            with pytest.raises(DlmsObjectUndefined):
                await client.get(AttributeRef(ClassId.REGISTER, Obis.parse("1.0.99.99.0.255"), 2))
            with pytest.raises(DlmsObjectClassInconsistent):
                await client.get(AttributeRef(ClassId.REGISTER, CLOCK_OBIS, 2))
            with pytest.raises(DlmsScopeOfAccessViolated):
                await client.get(AttributeRef(ClassId.CLOCK, CLOCK_OBIS, 2), EntryDescriptor())
            # The association survives data-access errors.
            assert axdr.decode(await client.get(AttributeRef(ClassId.CLOCK, CLOCK_OBIS, 2))).octets


@pytest.mark.parametrize("garbage", [b"\x00\x01\x00\x10\x00\x01\x00\x03\x77\x00\xff",  # unknown APDU
                                     b"\x00\x07\x00\x10\x00\x01\x00\x00",  # wrong wrapper version
                                     b"\x00\x01\x00\x10\x00\x01\xff\xff"])  # 64 KiB claimed
async def test_garbage_closes_the_connection_and_the_meter_keeps_serving(garbage: bytes) -> None:
    async with MeterFleet(SimulatorConfig(meters=1, history_start=HISTORY, mechanism=Mechanism.LLS,
                                          password=b"secret12"), clock=frozen) as fleet:
        endpoint = fleet.endpoints[0]
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        writer.write(garbage)
        await writer.drain()
        if garbage.endswith(b"\xff\xff"):
            writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await writer.wait_closed()
        async with Association(endpoint.host, endpoint.port, SecuritySettings(Mechanism.LLS, b"secret12")) as client:
            assert await client.get(AttributeRef(ClassId.CLOCK, CLOCK_OBIS, 2))


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    COMMAND.add_arguments(parser)
    args = parser.parse_args(["--meters", "5", "--port", "0", "--start", "2026-03-01", "--authentication",
                              "hls-gmac", "--encryption-key", "00" * 16, "--authentication-key", "D0" * 16,
                              "--fault-gap", "0.1", "--fault-drift", "1", "--drift-seconds", "90"])
    config = config_from_args(args)
    assert (config.meters, config.mechanism, config.faults.gap_rate, config.faults.drift_seconds) == (
        5, Mechanism.HLS_GMAC, 0.1, 90)
    assert config.history_start == HISTORY
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault-gap", "2"])
    with pytest.raises(SystemExit):
        config_from_args(parser.parse_args(["--authentication", "lls"]))


async def test_demo_fleet_delivers_expected_intervals() -> None:
    from adapters.dlms import create_adapter

    start = datetime(2026, 3, 1, tzinfo=UTC)
    async with demo_fleet(meters=20, start=start, days=2, interval_minutes=15) as fleet:
        assert fleet.meter_ids[0] == "DLMS-000001"
        assert fleet.adapter_config["type"] == "dlms"
        port = RecordingPort()
        await create_adapter("dlms-meters", fleet.adapter_config, port).run()
    delivered = sum(len(b.values) for batch in port.batches for b in batch.interval_blocks)
    assert delivered == fleet.expected_intervals == 20 * 2 * 96 * 2
    assert np.all([not b.qualities for batch in port.batches for b in batch.interval_blocks])


def test_registers_advance_incrementally_and_equal_the_model() -> None:
    from datetime import timedelta

    from simulators.dlms.model import ConsumptionModel
    from simulators.dlms.server import SimulatedMeter

    moments = [NOW, NOW + timedelta(hours=5, minutes=3), NOW + timedelta(days=3), NOW]
    clock = iter(moments)
    current = [NOW]

    def ticking() -> datetime:
        return current[0]

    meter = SimulatedMeter(1, SimulatorConfig(meters=1), ConsumptionModel(), ticking)
    for moment in clock:
        current[0] = moment
        assert meter.registers() == ConsumptionModel().registers("DLMS-000001", moment)
