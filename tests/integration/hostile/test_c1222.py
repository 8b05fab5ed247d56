"""ANSI C12.22 both ways: hostile frames at the meter simulator's port, and
hostile "meters" feeding garbage to the hub's C12.22 adapter.

The simulator must close a connection that sends garbage, a truncated or an
oversized APDU (promptly, without buffering the claimed size, without an
unhandled exception) and keep serving; the adapter must give up on a hostile
meter with a clear reason (a dead letter when the bytes were undecodable),
stop reading an oversized frame at its cap, and still store the good meters
polled in the same round.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.c1222 import C1222Adapter, create_adapter
from adapters.c1222.codec import Apdu, ApTitle, Logon
from adapters.c1222.errors import APDU_CONTENT_TYPE, TABLES_CONTENT_TYPE
from adapters.c1222.session import ClientSession
from adapters.c1222.tables import ST_LP_CTRL, ST_LP_DATA_SET1, ST_LP_STATUS, decode_table_reads
from gateway.hub import Hub
from meterhub.v1 import model_pb2 as pb
from simulators.c1222.meter import MeterSpec, SimulatedMeter, expected_intervals, meter_ap_title
from simulators.c1222.server import FleetConfig, FleetServer
from tests.integration.hostile.conftest import (
    FLOOD_BYTES,
    TEST_TIMEOUT_SECONDS,
    StreamHandler,
    dead_letters,
    read_to_eof,
    register_meters,
    running_hub,
    send_and_read,
    stored_intervals,
    stream_until_closed,
    tcp_server,
    traced_peak,
)

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)

START = datetime(2024, 3, 1, tzinfo=UTC)
NOW = START + timedelta(days=1, hours=3)
GOOD = ("C1222-000001", "C1222-000002")
IDLE_TIMEOUT = 0.5
CAP = 65_536  # the adapter's and the simulator's default max_apdu_bytes


@pytest.fixture
async def fleet() -> AsyncIterator[FleetServer]:
    config = FleetConfig(2, MeterSpec(lp_start=START), lambda: NOW, idle_timeout_seconds=IDLE_TIMEOUT)
    async with FleetServer(config, "127.0.0.1", 0) as server:
        yield server


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path) as running:
        await register_meters(running, [*GOOD, "C1222-HOSTILE"])
        yield running


@pytest.fixture(autouse=True)
def no_unhandled_exceptions(caplog: pytest.LogCaptureFixture) -> object:
    """A connection handler that dies with an exception is logged by asyncio at ERROR: a crash."""
    caplog.set_level(logging.WARNING)
    yield
    crashes = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert crashes == []


def good_meters(fleet: FleetServer) -> list[dict[str, object]]:
    return [{"meter_id": m, "port": fleet.port, "ap_title": f".7.{n}"} for n, m in enumerate(GOOD, 1)]


def adapter_for(hub: Hub, meters: list[dict[str, object]]) -> C1222Adapter:
    adapter = create_adapter("c1222-north", {"type": "c1222", "meters": meters, "retries": 1, "timeout_seconds": 0.5,
                                             "backoff_initial_seconds": 0.01, "lookback_days": 2},
                             hub.port_for("c1222-north", "c1222"))
    adapter.clock = lambda: NOW
    return adapter


async def assert_good_meters_stored(hub: Hub, fleet: FleetServer) -> None:
    """Every delivered interval of the good meters since the start of their profile, exactly."""
    for number, meter_id in enumerate(GOOD, 1):
        expected = expected_intervals(SimulatedMeter(number, fleet.config.spec), START, NOW)
        # Channel 0 (delivered) is the raw count x scalar 2, at 10^-1 Wh (the default MeterSpec).
        want = {datetime.fromtimestamp(int(t), UTC): int(v) * 2
                for t, v in zip(expected.ends, expected.values[:, 0], strict=True)}
        assert want
        assert await stored_intervals(hub, meter_id, pb.FLOW_DIRECTION_DELIVERED) == want


def logon_request(called: ApTitle | None = None) -> bytes:
    session = ClientSession(called_ap_title=called or meter_ap_title(1), calling_ap_title=ApTitle((99, 1), relative=True))
    return session.send([Logon(2, b"hostile", 60)], 0.0)


# -- hostile frames at the simulator ----------------------------------------------------------

SIMULATOR_GARBAGE: list[tuple[str, bytes]] = [
    ("not-an-apdu", b"\xde\xad\xbe\xef" * 16),
    ("indefinite-length", b"\x60\x80" + b"\x00" * 32),
    ("length-of-five-octets", b"\x60\x85\x01\x00\x00\x00\x00"),
    ("garbage-epsem", Apdu(1, b"\x80\x05\x00", called_ap_title=meter_ap_title(1),
                           calling_ap_title=ApTitle((99, 1), relative=True)).encode()),
    ("garbage-inside-a-valid-length", b"\x60\x10" + b"\xff" * 16),
]


async def test_simulator_closes_on_garbage_and_keeps_serving(fleet: FleetServer, hub: Hub) -> None:
    for name, frame in SIMULATOR_GARBAGE:
        started = time.monotonic()
        answer = await send_and_read(fleet.port, frame)
        assert answer == b"", name  # closed without an answer: there is no request to answer
        assert time.monotonic() - started < 1.0, f"{name}: the simulator waited for more than it needed"
    # Half an APDU, then the client's EOF: a protocol error, not an unhandled exception.
    assert await send_and_read(fleet.port, logon_request()[:7], half_close=True) == b""
    # An unknown called AP title is a protocol answer (UAT), not a dropped connection.
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.port)
    try:
        writer.write(logon_request(ApTitle((7, 999), relative=True)))
        answer = await asyncio.wait_for(reader.read(4096), 2)
        assert answer.startswith(b"\x60")
    finally:
        writer.close()
    outcome = await adapter_for(hub, good_meters(fleet)).poll_once()
    assert (outcome.meters_read, outcome.meters_failed) == (2, 0)
    await assert_good_meters_stored(hub, fleet)


async def test_simulator_refuses_an_oversized_apdu_from_its_length(fleet: FleetServer, hub: Hub) -> None:
    for claim in (b"\x60\x83\x10\x00\x00", b"\x60\x84\x01\x00\x00\x00"):  # 1 MiB, 16 MiB: above the cap
        # The length alone is refused: the simulator hangs up without waiting for the body.
        started = time.monotonic()
        assert await send_and_read(fleet.port, claim) == b""
        assert time.monotonic() - started < 1.0
        # A peer that streams the body anyway is cut off, and nothing near the claim is buffered.
        with traced_peak() as peak:
            sent, _ = await stream_until_closed(fleet.port, claim)
        assert sent < FLOOD_BYTES, "the simulator kept reading a frame longer than its cap"
        assert peak() < 2 << 20, f"{peak()} bytes allocated while refusing an oversized APDU"
    outcome = await adapter_for(hub, good_meters(fleet)).poll_once()
    assert outcome.meters_read == 2


async def test_simulator_drops_a_stalled_half_frame_at_its_idle_timeout(fleet: FleetServer, hub: Hub) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.port)
    try:
        writer.write(logon_request()[:9])
        await writer.drain()
        started = time.monotonic()
        assert await read_to_eof(reader, seconds=IDLE_TIMEOUT + 3) == b""
        assert time.monotonic() - started < IDLE_TIMEOUT + 2
    finally:
        writer.close()
    assert (await adapter_for(hub, good_meters(fleet)).poll_once()).meters_read == 2


# -- hostile meters feeding the adapter -------------------------------------------------------


def answering(reply: bytes, *, close: bool = True) -> StreamHandler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            writer.write(reply)
            await writer.drain()
            if close:
                return
    return handler


def flooding(counter: list[int]) -> StreamHandler:
    """Answers with a 1 MiB length claim (16 x the cap), then streams filler until the client hangs up."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"\x60\x83\x10\x00\x00")
        chunk = b"\x00" * 65536
        while counter[0] < FLOOD_BYTES:
            writer.write(chunk)
            await writer.drain()
            counter[0] += len(chunk)
    return handler


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


GARBAGE_EPSEM = Apdu(1, b"\x80\x05\x00", called_ap_title=ApTitle((99, 1), relative=True),
                     calling_ap_title=ApTitle((7, 9), relative=True)).encode()


async def test_hostile_meters_are_given_up_with_reasons_and_good_meters_land(fleet: FleetServer,
                                                                             hub: Hub) -> None:
    flood = [0]
    hostile: dict[str, StreamHandler] = {
        "C1222-GARBAGE": answering(b"\xde\xad\xbe\xef" * 64),
        "C1222-EPSEM": answering(GARBAGE_EPSEM),
        "C1222-FLOOD": flooding(flood),
        "C1222-TRUNCATED": answering(GARBAGE_EPSEM[:6]),
        "C1222-SILENT": silent,
    }
    await register_meters(hub, hostile)
    async with contextlib.AsyncExitStack() as stack:
        ports = {meter: await stack.enter_async_context(tcp_server(handler)) for meter, handler in hostile.items()}
        meters = good_meters(fleet) + [{"meter_id": m, "port": p, "ap_title": ".7.9"} for m, p in ports.items()]
        started = time.monotonic()
        with traced_peak() as peak:
            outcome = await adapter_for(hub, meters).poll_once()
        elapsed = time.monotonic() - started
    assert (outcome.meters_read, outcome.meters_failed) == (2, len(hostile))
    # Silent and truncated meters cost their timeout and retry, nothing more.
    assert elapsed < 8
    assert flood[0] < FLOOD_BYTES, "the adapter kept reading a frame longer than its cap"
    assert peak() < 8 << 20, f"{peak()} bytes allocated while polling hostile meters"
    dead = {d.reason.partition(":")[0]: d for d in dead_letters(hub)}
    assert {m: d.reason_code for m, d in dead.items()} == {
        "C1222-GARBAGE": "C1222_MALFORMED_APDU",
        "C1222-EPSEM": "C1222_MALFORMED_EPSEM",
        "C1222-FLOOD": "C1222_FRAME_TOO_LARGE",
    }  # truncated and silent meters are transport failures: retried, logged, not dead letters
    assert "BER length 1048576 exceeds the cap of 65536 bytes" in dead["C1222-FLOOD"].reason
    assert {(d.head_end, d.adapter_type) for d in dead.values()} == {("c1222-north", "c1222")}
    # Each dead letter keeps the bytes the meter sent: the APDU, or what was buffered when none could be framed.
    assert {d.content_type for d in dead.values()} == {APDU_CONTENT_TYPE}
    assert dead["C1222-EPSEM"].payload == GARBAGE_EPSEM
    garbage = dead["C1222-GARBAGE"].payload
    assert garbage and (b"\xde\xad\xbe\xef" * 64).startswith(garbage)
    assert dead["C1222-FLOOD"].payload.startswith(b"\x60\x83\x10\x00\x00")
    assert len(dead["C1222-FLOOD"].payload) <= CAP + 8 + 65_536  # the framer's buffer, never the claimed size
    await assert_good_meters_stored(hub, fleet)


class _LyingMeter(SimulatedMeter):
    """Well-formed C12.22, but ST62 claims divisors that do not divide its interval data."""

    def table(self, table_id: int, now: datetime) -> bytes | None:
        if table_id == ST_LP_CTRL:
            control = self.spec.control()
            return dataclasses.replace(control, divisors=tuple(7 for _ in control.divisors)).encode(
                self.spec.gen_config().order)
        return super().table(table_id, now)


async def test_meter_lying_about_its_divisors_is_dead_lettered_not_fatal(fleet: FleetServer, hub: Hub) -> None:
    fleet.meters[meter_ap_title(2)] = liar = _LyingMeter(2, fleet.config.spec)
    outcome = await adapter_for(hub, good_meters(fleet)).poll_once()
    assert (outcome.meters_read, outcome.meters_failed) == (1, 1)
    (dead,) = dead_letters(hub)
    assert (dead.head_end, dead.adapter_type, dead.reason_code) == ("c1222-north", "c1222", "C1219_TABLE_ERROR")
    assert dead.reason.startswith("C1222-000002: LP channel 1: ST62 divisor 7 does not divide the interval data")
    # The dead letter holds the table bytes as the meter returned them: the lying ST62 and the ST64 it scales.
    assert dead.content_type == TABLES_CONTENT_TYPE
    reads = decode_table_reads(dead.payload)
    assert [r.data for r in reads if r.table == ST_LP_CTRL] == [liar.table(ST_LP_CTRL, NOW)]
    lp = [r for r in reads if r.table == ST_LP_DATA_SET1]
    assert lp and all(r.data == liar.lp_table(NOW, r.offset, len(r.data)) for r in lp)
    # The other meter of the same poll landed; nothing of the liar did.
    expected = expected_intervals(SimulatedMeter(1, fleet.config.spec), START, NOW)
    assert await stored_intervals(hub, GOOD[0], pb.FLOW_DIRECTION_DELIVERED) == {
        datetime.fromtimestamp(int(t), UTC): int(v) * 2 for t, v in zip(expected.ends, expected.values[:, 0],
                                                                        strict=True)}
    assert await stored_intervals(hub, GOOD[1]) == {}


class _OverfullMeter(SimulatedMeter):
    """ST63 claims more valid intervals in the newest block than ST61 says a block holds."""

    def table(self, table_id: int, now: datetime) -> bytes | None:
        if table_id == ST_LP_STATUS:
            status = self.lp_status(now)
            return dataclasses.replace(status, valid_intervals=3 * self.spec.intervals_per_block).encode(
                self.spec.gen_config().order)
        return super().table(table_id, now)


async def test_meter_claiming_more_intervals_than_a_block_holds_is_a_table_error(fleet: FleetServer,
                                                                                hub: Hub) -> None:
    fleet.meters[meter_ap_title(2)] = liar = _OverfullMeter(2, fleet.config.spec)
    outcome = await adapter_for(hub, good_meters(fleet)).poll_once()
    assert (outcome.meters_read, outcome.meters_failed) == (1, 1)
    (dead,) = dead_letters(hub)
    assert dead.reason_code == "C1219_TABLE_ERROR"
    assert dead.reason == (f"C1222-000002: ST63 NBR_VALID_INT {3 * liar.spec.intervals_per_block} exceeds the "
                           f"{liar.spec.intervals_per_block} intervals of a block (ST61 NBR_BLK_INTS_SET1)")
    reads = decode_table_reads(dead.payload)
    assert [r.data for r in reads if r.table == ST_LP_STATUS] == [liar.table(ST_LP_STATUS, NOW)]
    assert not [r for r in reads if r.table == ST_LP_DATA_SET1]  # refused before any block was read
    assert await stored_intervals(hub, GOOD[0], pb.FLOW_DIRECTION_DELIVERED)
    assert await stored_intervals(hub, GOOD[1]) == {}
