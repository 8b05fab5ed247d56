"""The C12.22 adapter against the meter simulator over real loopback TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from adapters.c1222 import create_adapter
from adapters.c1222.codec import ApTitle, FullRead, KeyRing, Logon, SecurityMode
from adapters.c1222.errors import (
    C1222ConnectionError,
    InsufficientSecurityClearance,
    InvalidServiceSequenceState,
    UnknownApplicationTitle,
)
from adapters.c1222.normalize import interval_qualities
from adapters.c1222.session import ClientSession, SecurityParams
from adapters.c1222.tables import NibbleMapping
from adapters.c1222.transport import C1222Connection
from meterhub.v1 import model_pb2 as pb
from simulators.c1222.demo import demo_fleet
from simulators.c1222.meter import FaultRates, MeterSpec, SimulatedMeter, expected_intervals
from simulators.c1222.server import FleetConfig, FleetServer
from tests.support.net import free_port
from tests.support.recording_port import RecordingPort

START = datetime(2024, 3, 1, tzinfo=UTC)
NOW = START + timedelta(days=2, hours=5, minutes=7)
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


@pytest.fixture
async def fleet() -> AsyncIterator[FleetServer]:
    spec = MeterSpec(lp_start=START, faults=FaultRates(gap=0.02, power_fail=0.02, clock_set=0.01, overflow=0.01))
    config = FleetConfig(4, spec, lambda: NOW, KeyRing({3: KEY}), b"secret")
    async with FleetServer(config, "127.0.0.1", 0) as server:
        yield server


def _adapter(server: FleetServer, port: RecordingPort, **extra: object):
    cfg = {"type": "c1222", "fleet": {"port": server.port, "count": 4}, "password": "secret", "lookback_days": 5,
           "retries": 1, "backoff_initial_seconds": 0.01, "timeout_seconds": 2, **extra}
    adapter = create_adapter("north", cfg, port)
    adapter.clock = lambda: NOW
    return adapter


def _check_meter(server: FleetServer, port: RecordingPort, number: int, after: datetime) -> int:
    meter = SimulatedMeter(number, server.config.spec)
    expected = expected_intervals(meter, after, NOW)
    got = port.interval_values(meter.id)
    # channel 0 (delivered) carries raw x scalar 2 at 10^-1 Wh
    ch0 = {datetime.fromtimestamp(int(t), UTC): int(v) * 2 for t, v in zip(expected.ends, expected.values[:, 0],
                                                                          strict=True)}
    delivered = {}
    qualities = {}
    for batch in port.batches:
        for block in batch.interval_blocks:
            if block.meter_id != meter.id or block.reading_type.flow_direction != pb.FLOW_DIRECTION_DELIVERED:
                continue
            assert block.reading_type.power_of_ten_multiplier == -1
            first = block.first_interval_end_time.ToDatetime(tzinfo=UTC)
            for i, v in enumerate(block.values):
                t = first + timedelta(seconds=i * block.interval_seconds)
                delivered[t] = v
                qualities[t] = block.qualities[i] if block.qualities else 0
    assert delivered == ch0
    status = meter.status_bytes(expected)
    want_q = interval_qualities(status, 2, NibbleMapping.FIRST_IN_COMMON_BYTE)[:, 0]
    assert [qualities[datetime.fromtimestamp(int(t), UTC)] for t in expected.ends] == want_q.tolist()
    assert len(got) == len(expected.ends)
    return len(expected.ends)


async def test_adapter_reads_every_interval_with_exact_values_and_qualities(fleet: FleetServer) -> None:
    port = RecordingPort()
    outcome = await _adapter(fleet, port).poll_once()
    assert outcome.meters_read == 4 and outcome.meters_failed == 0
    for n in range(1, 5):
        assert _check_meter(fleet, port, n, START) == 2 * 96 + 20
    flags = {q for b in port.batches for blk in b.interval_blocks for q in blk.qualities}
    assert any(q & pb.QUALITY_FLAG_POWER_FAIL for q in flags)
    assert any(q & pb.QUALITY_FLAG_SKIPPED_INTERVAL for q in flags)
    assert any(q & pb.QUALITY_FLAG_OVERFLOW for q in flags)
    # registers: ST23 summation = sum of the LP channel in Wh
    meter = SimulatedMeter(1, fleet.config.spec)
    regs = [r for b in port.batches for r in b.register_reads if r.meter_id == meter.id]
    assert tuple(r.value for r in regs) == meter.current_registers(NOW).summations
    assert regs[0].reading_type.accumulation == pb.ACCUMULATION_CUMULATIVE


async def test_adapter_reads_only_since_watermark(fleet: FleetServer) -> None:
    port = RecordingPort()
    mark = START + timedelta(days=1, hours=20)
    for n in range(1, 5):
        port.watermarks[(f"C1222-{n:06d}", 900)] = mark
    await _adapter(fleet, port).poll_once()
    assert _check_meter(fleet, port, 2, mark) == int((NOW - mark).total_seconds()) // 900
    assert min(port.interval_values("C1222-000002")) == mark + timedelta(minutes=15)


@pytest.mark.parametrize("mode", ["authenticated", "ciphered"])
async def test_secured_sessions(fleet: FleetServer, mode: str) -> None:
    port = RecordingPort()
    outcome = await _adapter(fleet, port, security_mode=mode, key_id=3, key=KEY.hex()).poll_once()
    assert outcome.meters_read == 4
    _check_meter(fleet, port, 3, START)


async def test_small_reads_split_blocks(fleet: FleetServer) -> None:
    port = RecordingPort()
    outcome = await _adapter(fleet, port, read_chunk_bytes=100, max_apdu_bytes=600).poll_once()
    assert outcome.meters_read == 4
    _check_meter(fleet, port, 4, START)


async def test_wrong_password_is_insufficient_clearance(fleet: FleetServer) -> None:
    session = ClientSession(called_ap_title=ApTitle((7, 1), True), calling_ap_title=ApTitle((99, 1), True))
    conn = await C1222Connection.open("127.0.0.1", fleet.port, session, 2)
    try:
        with pytest.raises(InvalidServiceSequenceState):
            await conn.request([FullRead(0)])
        with pytest.raises(InsufficientSecurityClearance):
            await conn.request([Logon(2, b"x", 60), FullRead(0)])
    finally:
        await conn.close()
    port = RecordingPort()
    outcome = await _adapter(fleet, port, password="wrong").poll_once()
    assert outcome.meters_failed == 4 and not port.batches


async def test_unknown_meter_title(fleet: FleetServer) -> None:
    session = ClientSession(called_ap_title=ApTitle((7, 999), True), calling_ap_title=ApTitle((99, 1), True),
                            security=SecurityParams(SecurityMode.CLEARTEXT))
    conn = await C1222Connection.open("127.0.0.1", fleet.port, session, 2)
    try:
        with pytest.raises(UnknownApplicationTitle):
            await conn.request([Logon(2, b"x", 60)])
    finally:
        await conn.close()


async def test_unreachable_meter_retries_then_fails() -> None:
    port = RecordingPort()
    cfg = {"type": "c1222", "fleet": {"port": free_port(), "count": 2}, "retries": 2,
           "backoff_initial_seconds": 0.01, "timeout_seconds": 0.5}
    adapter = create_adapter("south", cfg, port)
    outcome = await adapter.poll_once()
    assert outcome.meters_failed == 2 and not port.batches
    with pytest.raises(C1222ConnectionError):
        await C1222Connection.open("127.0.0.1", free_port(), ClientSession(
            called_ap_title=ApTitle((7, 1), True), calling_ap_title=ApTitle((9,), True)), 0.5)


async def test_silent_peer_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(100):  # swallow requests, never answer, until the client gives up
            pass
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = RecordingPort()
        cfg = {"type": "c1222", "fleet": {"port": server.sockets[0].getsockname()[1], "count": 1}, "retries": 0,
               "timeout_seconds": 0.2}
        outcome = await create_adapter("x", cfg, port).poll_once()
        assert outcome.meters_failed == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_many_meters_bounded_concurrency() -> None:
    async with demo_fleet(meters=60, start=START, days=1, interval_minutes=30) as fleet:
        port = RecordingPort()
        adapter = create_adapter("demo", {**fleet.adapter_config, "concurrency": 8}, port)
        adapter.clock = lambda: START + timedelta(days=1)
        outcome = await adapter.poll_once()
        assert outcome.meters_read == 60
        assert outcome.intervals == fleet.expected_intervals
        assert {b.interval_blocks[0].meter_id for b in port.batches} == set(fleet.meter_ids)
        assert np.all([len(b.interval_blocks) == 2 for b in port.batches])
