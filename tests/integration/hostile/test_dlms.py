"""DLMS/COSEM both ways: hostile frames at the meter simulator's ports, and
hostile "meters" feeding garbage to the hub's DLMS adapter.

The simulator must close a connection that sends garbage (promptly, bounded
by its wrapper cap, idle connections dropped) and keep serving; the adapter
must give up on a hostile meter with the precise reason after its retries,
never read past its caps, and still store the good meters of the same poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.dlms import DlmsAdapter, parse_config
from gateway.hub import Hub
from meterhub.v1 import model_pb2 as pb
from simulators.dlms import server as dlms_server
from simulators.dlms.server import MeterFleet, SimulatorConfig
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

NOW = datetime(2026, 3, 3, 0, 0, 7, tzinfo=UTC)
HISTORY = datetime(2026, 3, 2, tzinfo=UTC)
IDLE_TIMEOUT = 0.5


def wrapper(apdu: bytes, *, version: int = 1, length: int | None = None) -> bytes:
    """A DLMS WRAPPER frame (client wPort 16 -> server wPort 1) around ``apdu``."""
    size = len(apdu) if length is None else length
    return version.to_bytes(2, "big") + (16).to_bytes(2, "big") + (1).to_bytes(2, "big") + size.to_bytes(2, "big") + apdu


@pytest.fixture
async def fleet(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MeterFleet]:
    monkeypatch.setattr(dlms_server, "IDLE_TIMEOUT_SECONDS", IDLE_TIMEOUT)
    async with MeterFleet(SimulatorConfig(meters=2, history_start=HISTORY), clock=lambda: NOW) as running:
        yield running


@pytest.fixture
async def hub(tmp_path: Path, fleet: MeterFleet) -> AsyncIterator[Hub]:
    async with running_hub(tmp_path) as running:
        await register_meters(running, [e.meter_id for e in fleet.endpoints])
        yield running


@pytest.fixture(autouse=True)
def no_unhandled_exceptions(caplog: pytest.LogCaptureFixture) -> object:
    """A connection handler that dies with an exception is logged by asyncio at ERROR: a crash."""
    caplog.set_level(logging.WARNING)
    yield
    crashes = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert crashes == []


def adapter_for(hub: Hub, meters: list[dict[str, object]], **extra: object) -> DlmsAdapter:
    config = parse_config({"type": "dlms", "poll_seconds": 0, "start": HISTORY.isoformat(), "retries": 1,
                           "backoff_initial_seconds": 0.01, "response_timeout_seconds": 0.5,
                           "connect_timeout_seconds": 0.5, "meters": meters, **extra})
    return DlmsAdapter("dlms-north", config, hub.port_for("dlms-north", "dlms"), clock=lambda: NOW)


def good_meters(fleet: MeterFleet) -> list[dict[str, object]]:
    return [{"meter_id": e.meter_id, "port": e.port} for e in fleet.endpoints]


async def assert_good_meters_stored(hub: Hub, fleet: MeterFleet) -> None:
    for endpoint in fleet.endpoints:
        rows = fleet.model.rows(endpoint.meter_id, int(HISTORY.timestamp()) + 900, int(NOW.timestamp()))
        want = {datetime.fromtimestamp(int(t), UTC): int(v) for t, v in zip(rows.ends, rows.import_wh, strict=True)}
        assert want
        assert await stored_intervals(hub, endpoint.meter_id, pb.FLOW_DIRECTION_DELIVERED) == want


# -- hostile frames at the simulator ----------------------------------------------------------

SIMULATOR_GARBAGE: list[tuple[str, bytes]] = [
    ("not-a-wrapper", b"GET / HTTP/1.1\r\nHost: meter\r\n\r\n"),
    ("wrong-wrapper-version", wrapper(b"\x60\x00", version=7)),
    ("unknown-apdu", wrapper(b"\x77\x00\xff")),
    ("aarq-with-garbage-inside", wrapper(b"\x60\x1d\xa1\x09\x06\x07" + b"\xff" * 40)),
    ("get-before-association", wrapper(bytes.fromhex("c001c1000800000100ff0200"))),
]


async def test_simulator_closes_on_garbage_and_keeps_serving(fleet: MeterFleet, hub: Hub) -> None:
    port = fleet.endpoints[0].port
    for name, frame in SIMULATOR_GARBAGE:
        started = time.monotonic()
        await send_and_read(port, frame)  # whatever error answer it sends, it then hangs up
        assert time.monotonic() - started < 1.0, f"{name}: the simulator kept the connection open"
    # A frame cut short by the client's EOF.
    assert await send_and_read(port, wrapper(b"\x60\x1d\xa1\x09")[:10] + b"\x06", half_close=True) == b""
    report = await adapter_for(hub, good_meters(fleet)).poll_once()
    assert (report.meters_ok, report.failures) == (2, {})
    await assert_good_meters_stored(hub, fleet)


async def test_simulator_reads_no_further_than_one_capped_frame(fleet: MeterFleet, hub: Hub) -> None:
    # The WRAPPER length field caps a frame at 64 KiB: a flood of garbage ends after the first one.
    with traced_peak() as peak:
        sent, _ = await stream_until_closed(fleet.endpoints[0].port, wrapper(b"", length=0xFFFF),
                                            filler=b"\xee" * 4096)
    assert sent < FLOOD_BYTES, "the simulator kept reading garbage past one frame"
    assert peak() < 2 << 20, f"{peak()} bytes allocated while refusing a flood"
    report = await adapter_for(hub, good_meters(fleet)).poll_once()
    assert report.meters_ok == 2


async def test_simulator_drops_a_stalled_half_frame_at_its_idle_timeout(fleet: MeterFleet, hub: Hub) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.endpoints[0].port)
    try:
        writer.write(wrapper(b"\x60\x1d\xa1\x09")[:10])
        await writer.drain()
        started = time.monotonic()
        assert await read_to_eof(reader, seconds=IDLE_TIMEOUT + 3) == b""
        assert time.monotonic() - started < IDLE_TIMEOUT + 2
    finally:
        writer.close()
    assert (await adapter_for(hub, good_meters(fleet)).poll_once()).meters_ok == 2


# -- hostile meters feeding the adapter -------------------------------------------------------


def answering(reply: bytes, *, then_close: bool = False) -> StreamHandler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(reply)
        await writer.drain()
        if not then_close:
            await reader.read(65536)  # the client hangs up after the error
    return handler


def flooding(counter: list[int]) -> StreamHandler:
    """A full-size WRAPPER frame of garbage, then more, until the client hangs up."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        frame = wrapper(b"\x61" + b"\xee" * 0xFFFE)
        while counter[0] < FLOOD_BYTES:
            writer.write(frame)
            await writer.drain()
            counter[0] += len(frame)
    return handler


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


async def test_hostile_meters_fail_with_reasons_and_good_meters_land(fleet: MeterFleet, hub: Hub) -> None:
    flood = [0]
    hostile: dict[str, StreamHandler] = {
        "DLMS-GARBAGE": answering(b"HTTP/1.1 200 OK\r\n\r\n" + b"\xff" * 32),
        "DLMS-UNKNOWN-APDU": answering(wrapper(b"\x77\x00\xff")),
        "DLMS-TRUNCATED": answering(wrapper(b"\x61\x29\xa1\x09", length=64), then_close=True),
        "DLMS-FLOOD": flooding(flood),
        "DLMS-SILENT": silent,
    }
    await register_meters(hub, hostile)
    async with contextlib.AsyncExitStack() as stack:
        ports = {meter: await stack.enter_async_context(tcp_server(handler)) for meter, handler in hostile.items()}
        meters = good_meters(fleet) + [{"meter_id": m, "port": p} for m, p in ports.items()]
        started = time.monotonic()
        with traced_peak() as peak:
            report = await adapter_for(hub, meters).poll_once()
        elapsed = time.monotonic() - started
    assert report.meters_ok == 2
    assert report.failures == {
        "DLMS-GARBAGE": "DLMS_BAD_WRAPPER",
        "DLMS-UNKNOWN-APDU": "DLMS_UNKNOWN_TAG",
        "DLMS-TRUNCATED": "DLMS_PEER_CLOSED",
        "DLMS-FLOOD": "DLMS_BAD_BER",
        "DLMS-SILENT": "DLMS_TIMEOUT",
    }
    assert elapsed < 8, "hostile meters cost more than their timeouts and one retry"
    assert flood[0] < FLOOD_BYTES, "the adapter kept reading garbage frames"
    assert peak() < 8 << 20, f"{peak()} bytes allocated while polling hostile meters"
    await assert_good_meters_stored(hub, fleet)


async def test_response_beyond_max_response_bytes_is_refused_and_the_rest_lands(fleet: MeterFleet,
                                                                              hub: Hub) -> None:
    """A meter's profile answer reassembled from block transfer past the cap: refused at the cap."""
    small = adapter_for(hub, good_meters(fleet)[:1], max_response_bytes=1024)
    report = await small.poll_once()
    assert report.failures == {fleet.endpoints[0].meter_id: "DLMS_LENGTH_TOO_LARGE"}
    assert dead_letters(hub) == []  # nothing reached ingest: the read failed, the meter keeps its data
    report = await adapter_for(hub, good_meters(fleet)).poll_once()
    assert report.meters_ok == 2
    await assert_good_meters_stored(hub, fleet)
