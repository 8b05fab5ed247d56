"""Adapter against the simulator over real loopback TCP: exact values, faults,
and a server killed mid-poll."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import parse_config
from adapters.modbus.errors import (
    IllegalDataAddress,
    ModbusDisconnected,
    ModbusTimeout,
    ModbusTransportError,
    ServerDeviceBusy,
)
from adapters.modbus.registers import Function, ReadRange, float_to_count
from adapters.modbus.transport import ModbusConnection
from meterhub.v1 import model_pb2 as pb
from simulators.modbus.server import Fault, ModbusSimFleet, SimMeter
from tests.integration.modbus.clocks import ManualClock
from tests.support.recording_port import RecordingPort

I = 900_000_000  # noqa: E741
T0 = 1_790_000_000_000_000 - 1_790_000_000_000_000 % I
MISSING = pb.QUALITY_FLAG_MISSING
MAPS = ("sunspec_201", "sunspec_202", "sunspec_203", "sunspec_204", "float_submeter")


def float32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def expected_counter(meter: SimMeter, t_us: int) -> tuple[int, int]:
    """The delivered counter the adapter should see, as (count, exponent)."""
    delivered, _ = meter.energy_raw(t_us)
    if meter.map_name == "float_submeter":
        return float_to_count(float32(delivered * 10 ** meter.energy_sf / 1000), -2), 1
    return delivered % (1 << 32), meter.energy_sf


def delivered(port: RecordingPort, meter_id: str) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for batch in port.batches:
        for block in batch.interval_blocks:
            if block.meter_id != meter_id or block.reading_type.flow_direction != pb.FLOW_DIRECTION_DELIVERED:
                continue
            first = block.first_interval_end_time.ToMicroseconds()
            qualities = list(block.qualities) or [0] * len(block.values)
            for i, (v, q) in enumerate(zip(block.values, qualities, strict=True)):
                assert first + i * I not in out, "interval emitted twice"
                out[first + i * I] = (v, q)
    return out


@asynccontextmanager
async def running(fleet: ModbusSimFleet, clock: ManualClock, **extra: Any) -> AsyncIterator[
        tuple[ModbusAdapter, RecordingPort, Callable[[int], Any]]]:
    config = parse_config({"type": "modbus", "meters": fleet.adapter_meters(), "timeout_seconds": 0.3,
                           "retries": 1, "retry_backoff_seconds": 0.01, "max_backoff_seconds": 0.05,
                           "batch_seconds": 900, **extra})
    port = RecordingPort()
    adapter = ModbusAdapter("loop", config, port, clock=clock)
    task = asyncio.create_task(adapter.run())

    async def step(us: int) -> None:
        rounds = adapter.stats.rounds
        if us:
            clock.advance(us)
        async with asyncio.timeout(10):
            while adapter.stats.rounds <= rounds:
                assert not task.done(), "poller stopped"
                await asyncio.sleep(0.005)
            # Batches are committed beside the polling: wait for that too.
            await adapter.flush_idle.wait()

    await step(0)
    try:
        yield adapter, port, step
    finally:
        assert not task.done(), "poller crashed"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_every_map_delivers_exact_interval_deltas() -> None:
    clock = ManualClock(T0)
    async with ModbusSimFleet(servers=2, units_per_server=5, map_names=MAPS, clock=clock, energy_sf=-1) as fleet, \
            running(fleet, clock) as (adapter, port, step):
        for _ in range(3):
            await step(I)
        assert adapter.stats.polls_failed == 0
        for meter in fleet.meters:
            got = delivered(port, meter.meter_id)
            expected = {}
            for k in range(1, 4):
                (after, exp), (before, _) = expected_counter(meter, T0 + k * I), expected_counter(meter, T0 + (k - 1) * I)
                expected[T0 + k * I] = (after - before, 0)
                assert k > 1 or exp in (-1, 1)
            assert got == expected, meter.meter_id
            assert all(v > 0 for v, _ in got.values())
        # Register reads of the first poll carry the simulator's values and scale factors.
        first = port.batches[0]
        reads = {(r.meter_id, r.reading_type.device_channel): r for r in first.register_reads}
        m = fleet.meters[2]  # sunspec_203
        assert reads[(m.meter_id, "W")].value == m.model.power_w(T0)
        assert reads[(m.meter_id, "PhVphB")].value == m.model.voltage_dv(T0, 1)
        assert reads[(m.meter_id, "PhVphB")].reading_type.power_of_ten_multiplier == -1
        imp = reads[(m.meter_id, "TotWhImp")]
        assert (imp.value, imp.reading_type.power_of_ten_multiplier) == expected_counter(m, T0)
        assert imp.reading_type.accumulation == pb.ACCUMULATION_CUMULATIVE
        sub = fleet.meters[4]  # float_submeter
        peak = reads[(sub.meter_id, "MaxTotalDemand")]
        assert peak.value == sub.model.max_demand_w(T0)
        assert peak.reading_type.accumulation == pb.ACCUMULATION_MAXIMUM


async def test_exception_response_and_timeout_become_missing_intervals() -> None:
    clock = ManualClock(T0)
    async with ModbusSimFleet(servers=1, units_per_server=3, clock=clock) as fleet, \
            running(fleet, clock) as (_adapter, port, step):
        busy, silent, healthy = fleet.meters
        busy.fault, busy.exception_code = Fault.EXCEPTION, 6
        silent.fault = Fault.NO_RESPONSE
        await step(I)
        busy.clear_fault()
        silent.clear_fault()
        await step(I)
        await step(I)
        for meter in (busy, silent):
            got = delivered(port, meter.meter_id)
            assert got[T0 + I] == (0, MISSING) and got[T0 + 2 * I] == (0, MISSING)
            assert got[T0 + 3 * I][1] == 0
            assert got[T0 + 3 * I][0] == expected_counter(meter, T0 + 3 * I)[0] - expected_counter(meter, T0 + 2 * I)[0]
        assert all(q == 0 for _, q in delivered(port, healthy.meter_id).values())
        events = {e.meter_id: e.details["reason"] for b in port.batches for e in b.meter_events}
        assert events == {busy.meter_id: "MODBUS_SERVER_DEVICE_BUSY", silent.meter_id: "MODBUS_TIMEOUT"}
        assert busy.requests >= 2  # retried


async def test_rollover_and_frozen_counter() -> None:
    clock = ManualClock(T0)
    async with ModbusSimFleet(servers=1, units_per_server=2, clock=clock) as fleet:
        rolling, frozen = fleet.meters
        rolling.roll_over_in(5, T0)
        frozen.freeze(T0 + I)
        async with running(fleet, clock) as (_adapter, port, step):
            await step(I)
            await step(I)
        assert expected_counter(rolling, T0)[0] == (1 << 32) - 5
        got = delivered(port, rolling.meter_id)
        true_delta = (rolling.model.import_wus(T0 + I) // 3_600_000_000) - (rolling.model.import_wus(T0) // 3_600_000_000)
        assert got[T0 + I] == (true_delta, 0)
        assert true_delta > 5  # the counter did wrap
        assert expected_counter(rolling, T0 + I)[0] < true_delta
        got_frozen = delivered(port, frozen.meter_id)
        assert got_frozen[T0 + 2 * I] == (0, 0) and got_frozen[T0 + I][0] > 0


async def test_transport_maps_errors_to_classes() -> None:
    clock = ManualClock(T0)
    async with ModbusSimFleet(servers=1, units_per_server=2, clock=clock) as fleet:
        conn = ModbusConnection("127.0.0.1", fleet.ports[0], timeout_seconds=0.2)
        try:
            words = await conn.read(1, ReadRange(Function.HOLDING, 40000, 4))
            assert words == [0x5375, 0x6E53, 1, 65]
            with pytest.raises(IllegalDataAddress) as bad:
                await conn.read(1, ReadRange(Function.HOLDING, 100, 2))
            assert bad.value.exception_code == 2 and bad.value.reason == "MODBUS_ILLEGAL_DATA_ADDRESS"
            fleet.meters[0].fault, fleet.meters[0].exception_code = Fault.EXCEPTION, 6
            with pytest.raises(ServerDeviceBusy):
                await conn.read(1, ReadRange(Function.HOLDING, 40000, 4))
            fleet.meters[0].fault = Fault.NO_RESPONSE
            with pytest.raises(ModbusTimeout):
                await conn.read(1, ReadRange(Function.HOLDING, 40000, 4))
            assert await conn.read(2, ReadRange(Function.HOLDING, 40069, 2)) == [203, 105]
            await fleet.stop_server(0)
            # A request racing the close may only time out; after that the host refuses.
            with pytest.raises(ModbusTransportError):
                await conn.read(2, ReadRange(Function.HOLDING, 40069, 2))
            with pytest.raises(ModbusDisconnected):
                await conn.read(2, ReadRange(Function.HOLDING, 40069, 2))
        finally:
            conn.close()


async def test_poller_survives_server_killed_mid_poll() -> None:
    clock = ManualClock(T0)
    async with ModbusSimFleet(servers=2, units_per_server=3, clock=clock) as fleet, \
            running(fleet, clock, timeout_seconds=1.0, retries=0) as (adapter, port, step):
        on_dead = [m for m in fleet.meters if m.server == 0]
        on_live = [m for m in fleet.meters if m.server == 1]
        # The first unit stalls, so the round is in flight when the server dies.
        on_dead[0].fault = Fault.NO_RESPONSE
        rounds = adapter.stats.rounds
        clock.advance(I)
        await asyncio.sleep(0.2)
        assert adapter.stats.rounds == rounds, "round should still be waiting on the stalled unit"
        await fleet.stop_server(0)
        on_dead[0].clear_fault()
        await step(0)
        await step(I)
        await fleet.start_server(0)
        await asyncio.sleep(0.1)  # let the connection backoff pass
        await step(I)
        await step(I)
        for meter in on_dead:
            got = delivered(port, meter.meter_id)
            assert got[T0 + I] == (0, MISSING) and got[T0 + 2 * I] == (0, MISSING)
            assert got[T0 + 3 * I] == (0, MISSING)  # first poll after restart is a new baseline
            want = expected_counter(meter, T0 + 4 * I)[0] - expected_counter(meter, T0 + 3 * I)[0]
            assert got[T0 + 4 * I] == (want, 0)
        for meter in on_live:
            assert all(q == 0 for _, q in delivered(port, meter.meter_id).values())
            assert len(delivered(port, meter.meter_id)) == 4
