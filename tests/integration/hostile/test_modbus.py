"""Modbus TCP: hostile servers answering the hub's Modbus poller with garbage.

Each hostile meter's poll must fail with its precise reason (a
COMMUNICATION_FAILURE event in the store carries it), within its timeout,
without buffering a flood or dumping it into the log; the poller keeps
running, and the good meters polled in the same rounds are stored exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import parse_config
from gateway.hub import Hub
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from simulators.modbus.server import ModbusSimFleet, SimMeter
from tests.integration.hostile.conftest import (
    FLOOD_BYTES,
    TEST_TIMEOUT_SECONDS,
    StreamHandler,
    register_meters,
    running_hub,
    stored_intervals,
    tcp_server,
    traced_peak,
)
from tests.integration.modbus.clocks import ManualClock

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)

I = 900_000_000  # noqa: E741 - one 15-minute interval in microseconds
T0 = 1_790_000_000_000_000 - 1_790_000_000_000_000 % I
TIMEOUT = 0.3


def mbap(tid: int, pdu: bytes, *, unit: int = 1, length: int | None = None) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1 if length is None else length, unit) + pdu


Reply = Callable[[int, int], bytes]  # (transaction id, register count) -> what the hostile server sends


def replying(reply: Reply) -> StreamHandler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await reader.read(260):
            tid, count = struct.unpack(">H", request[:2])[0], struct.unpack(">H", request[10:12])[0]
            writer.write(reply(tid, count))
            await writer.drain()
    return handler


def flooding(durations: list[float]) -> StreamHandler:
    """A frame header claiming 64 KiB (a Modbus ADU is at most 260 bytes), then garbage until the
    poller hangs up; ``durations`` gets how long each connection lasted from the first garbage byte."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read(260)
        started = time.monotonic()
        try:
            writer.write(mbap(struct.unpack(">H", request[:2])[0], b"", length=0xFFFF))
            chunk = b"\x03" * 65536
            for _ in range(FLOOD_BYTES // len(chunk)):
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0)  # a hostile peer is another process: leave the hub its loop
        finally:
            durations.append(time.monotonic() - started)
    return handler


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(260):
        pass


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(260)


def holding(count: int, value: int = 1) -> bytes:
    return bytes([3, 2 * count]) + struct.pack(f">{count}H", *([value] * count))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def fleet(clock: ManualClock) -> AsyncIterator[ModbusSimFleet]:
    async with ModbusSimFleet(servers=1, units_per_server=2, map_names=("sunspec_203",), clock=clock) as running:
        yield running


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path) as running:
        yield running


async def meter_events(hub: Hub, meter_ids: list[str]) -> dict[str, list[pb.MeterEvent]]:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        request = rs.ListMeterEventsRequest(meter_ids=meter_ids, page_size=1000)
        request.start_time.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))
        request.end_time.FromDatetime(datetime(2100, 1, 1, tzinfo=UTC))
        response = await rs_grpc.ReadingServiceStub(channel).ListMeterEvents(request, timeout=5)
    out: dict[str, list[pb.MeterEvent]] = {}
    for event in response.events:
        out.setdefault(event.meter_id, []).append(event)
    return out


async def test_hostile_servers_fail_their_meters_with_reasons_and_good_meters_land(
        fleet: ModbusSimFleet, hub: Hub, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    flood: list[float] = []
    hostile: dict[str, StreamHandler] = {
        "MB-FLOOD": flooding(flood),
        "MB-GARBAGE": replying(lambda tid, count: b"\xde\xad\xbe\xef" * 64),
        "MB-WRONG-FUNCTION": replying(lambda tid, count: mbap(tid, bytes([4]) + holding(count)[1:])),
        "MB-SHORT": replying(lambda tid, count: mbap(tid, holding(1))),
        "MB-BAD-EXCEPTION": replying(lambda tid, count: mbap(tid, b"\x83\x77")),
        "MB-WRONG-UNIT": replying(lambda tid, count: mbap(tid, holding(count), unit=9)),
        "MB-SILENT": silent,
        "MB-HANG-UP": hang_up,
    }
    good: list[SimMeter] = fleet.meters
    await register_meters(hub, [m.meter_id for m in good] + list(hostile))
    async with contextlib.AsyncExitStack() as stack:
        ports = {meter: await stack.enter_async_context(tcp_server(handler)) for meter, handler in hostile.items()}
        meters = fleet.adapter_meters() + [{"id": m, "host": "127.0.0.1", "port": p, "unit": 1, "map": "sunspec_203"}
                                           for m, p in ports.items()]
        config = parse_config({"type": "modbus", "meters": meters, "timeout_seconds": TIMEOUT, "retries": 1,
                               "retry_backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "batch_seconds": 900})
        adapter = ModbusAdapter("modbus-plant", config, hub.port_for("modbus-plant", "modbus"), clock=clock)
        task = asyncio.create_task(adapter.run())
        try:
            with traced_peak() as peak:
                for advance in (0, I, I):
                    await one_round(adapter, clock, advance, task)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert peak() < 16 << 20, f"{peak()} bytes allocated while hostile servers were polled"
    # pymodbus reads and drops the flood until the request times out; then the poller hangs up.
    assert flood and max(flood) < TIMEOUT + 1.5, f"flood connections lasted {flood} s"
    # A hostile peer's bytes never reach the log as a hex dump (pymodbus dumps frames into ERRORs).
    assert max(len(r.getMessage()) for r in caplog.records) < 4096
    events = await meter_events(hub, list(hostile))
    reasons = {meter: [e.details["reason"] for e in found if e.type == pb.METER_EVENT_TYPE_COMMUNICATION_FAILURE]
               for meter, found in events.items()}
    assert reasons == {
        "MB-FLOOD": ["MODBUS_TIMEOUT"],
        "MB-GARBAGE": ["MODBUS_TIMEOUT"],
        "MB-WRONG-FUNCTION": ["MODBUS_PROTOCOL_ERROR"],
        "MB-SHORT": ["MODBUS_PROTOCOL_ERROR"],
        "MB-BAD-EXCEPTION": ["MODBUS_EXCEPTION"],
        "MB-WRONG-UNIT": ["MODBUS_TIMEOUT"],
        "MB-SILENT": ["MODBUS_TIMEOUT"],
        "MB-HANG-UP": ["MODBUS_TIMEOUT"],
    }
    for meter in good:
        want = {datetime.fromtimestamp((T0 + k * I) / 1e6, UTC):
                meter.energy_raw(T0 + k * I)[0] - meter.energy_raw(T0 + (k - 1) * I)[0] for k in (1, 2)}
        assert await stored_intervals(hub, meter.meter_id, pb.FLOW_DIRECTION_DELIVERED) == want
    for meter in hostile:
        assert await stored_intervals(hub, meter) == {}


async def one_round(adapter: ModbusAdapter, clock: ManualClock, advance: int, task: Awaitable[None]) -> None:
    """Move the clock and wait until the poller finished (and committed) the round."""
    rounds = adapter.stats.rounds
    if advance:
        clock.advance(advance)
    async with asyncio.timeout(10):
        while adapter.stats.rounds <= rounds:
            assert not task.done(), "the poller stopped"  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)
