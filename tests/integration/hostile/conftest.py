"""Shared pieces of the hostile-input suite: a real hub on SQLite, raw sockets
with deadlines, and readers of what the hub stored (dead letters, intervals).

Every wait here has a deadline, so a hung endpoint fails its test instead of
stalling the run; each module's per-test timeout (TEST_TIMEOUT_SECONDS) is the
backstop. Memory is measured with tracemalloc: the hub, the adapters and the
simulators run in this process, so what they buffer shows in the peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from sqlalchemy import Engine, select

from gateway.config import GrpcConfig, HubConfig, SourceConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from store import schema as s

# Each module marks its tests with this timeout (pytest-timeout): a hang fails fast.
TEST_TIMEOUT_SECONDS = 20
IO_SECONDS = 5.0
# More than loopback sockets can buffer in the kernel (tcp_rmem + tcp_wmem are tens of MiB at most):
# a peer that has not hung up before this much was sent is reading the flood, not refusing it.
FLOOD_BYTES = 256 << 20
NOT_DELIVERED = pb.QUALITY_FLAG_MISSING | pb.QUALITY_FLAG_ESTIMATED

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def running_hub(tmp_path: Path, *sources: SourceConfig, engine: Engine | None = None) -> AsyncIterator[Hub]:
    """The real hub (ingest pipeline, VEE, store, gRPC) with the given sources, on SQLite
    unless given an engine (the ``engine`` fixture of tests/conftest.py: SQLite and PostgreSQL)."""
    config = HubConfig(store=str(tmp_path / "hub.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"), sources=sources)
    async with Hub(config, engine=engine) as hub:
        yield hub


async def register_meters(hub: Hub, meter_ids: Iterable[str]) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        await adm_grpc.AdminServiceStub(channel).UpsertMeters(
            adm.UpsertMetersRequest(meters=[adm.Meter(meter_id=m) for m in meter_ids]), timeout=IO_SECONDS)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    head_end: str
    adapter_type: str
    reason_code: str
    reason: str
    content_type: str
    payload: bytes


def dead_letters(hub: Hub) -> list[DeadLetter]:
    """The dead_letters table, oldest first."""
    d = s.dead_letters
    with hub.engine.connect() as conn:
        rows = conn.execute(select(d.c.head_end, d.c.adapter_type, d.c.reason_code, d.c.reason, d.c.content_type,
                                   d.c.payload).order_by(d.c.id)).all()
    return [DeadLetter(*row) for row in rows]


async def stored_slots(hub: Hub, meter_id: str, flow_direction: int = 0) -> dict[datetime, tuple[int, int]]:
    """Every stored slot of a meter as (value, quality) by interval end, read back over gRPC;
    ``flow_direction`` (a FlowDirection) picks one channel when the meter has several."""
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        request = rs.ListIntervalBlocksRequest(page_size=1000, filter=rs.IntervalBlockFilter(
            meter_ids=[meter_id], flow_direction=flow_direction))  # type: ignore[arg-type]
        request.filter.start_time.FromDatetime(datetime(2000, 1, 1, tzinfo=UTC))
        request.filter.end_time.FromDatetime(datetime(2100, 1, 1, tzinfo=UTC))
        page = await rs_grpc.ReadingServiceStub(channel).ListIntervalBlocks(request, timeout=IO_SECONDS)
    out: dict[datetime, tuple[int, int]] = {}
    for item in page.blocks:
        block = item.block
        first = int(block.first_interval_end_time.seconds)
        for i, value in enumerate(block.values):
            quality = int(block.qualities[i]) if block.qualities else 0
            out[datetime.fromtimestamp(first + i * block.interval_seconds, UTC)] = (int(value), quality)
    return out


async def stored_intervals(hub: Hub, meter_id: str, flow_direction: int = 0) -> dict[datetime, int]:
    """The values a source delivered for a meter (slots the hub marks missing or estimated left out)."""
    slots = await stored_slots(hub, meter_id, flow_direction)
    return {end: value for end, (value, quality) in slots.items() if not quality & NOT_DELIVERED}


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds} s")
        await asyncio.sleep(0.02)


async def wait_listening(port: int, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


# -- raw sockets -------------------------------------------------------------------------------


async def read_to_eof(reader: asyncio.StreamReader, seconds: float = IO_SECONDS, limit: int = 1 << 20) -> bytes:
    """What the peer sends until it closes; fails the test if it does not close in time."""
    data = bytearray()
    async with asyncio.timeout(seconds):
        while len(data) < limit:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return bytes(data)


async def send_and_read(port: int, data: bytes, *, seconds: float = IO_SECONDS, half_close: bool = False) -> bytes:
    """Connect, send ``data`` (optionally followed by EOF), return everything the peer sent until it closed."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), seconds)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(data)
            await asyncio.wait_for(writer.drain(), seconds)
            if half_close:
                writer.write_eof()
        return await read_to_eof(reader, seconds)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def stream_until_closed(port: int, head: bytes, *, filler: bytes = b"\x00" * 65536,
                              give_up_after: int = FLOOD_BYTES, seconds: float = IO_SECONDS) -> tuple[int, bytes]:
    """Send ``head``, then keep sending ``filler`` until the peer closes or ``give_up_after``
    bytes went out. Returns (bytes sent after the head, what the peer answered; an answer
    may be lost to the reset our unread bytes cause)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), seconds)
    sent = 0
    answer = b""
    try:
        async with asyncio.timeout(seconds):
            try:
                writer.write(head)
                await writer.drain()
                while sent < give_up_after and not reader.at_eof():
                    writer.write(filler)
                    await writer.drain()
                    sent += len(filler)
                    await asyncio.sleep(0)
            except ConnectionError:
                pass
            answer = await read_to_eof(reader, seconds)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return sent, answer


@asynccontextmanager
async def tcp_server(handler: StreamHandler) -> AsyncIterator[int]:
    """A hostile peer on a free loopback port, for the life of the block; yields its port."""
    connections: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            connections.discard(task)
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()


# -- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_response(raw: bytes) -> RawResponse:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response: {raw[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return RawResponse(status, headers, rest[:length])


def http_post(path: str, body: bytes, *, content_type: str | None = "text/xml; charset=utf-8",
              extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    headers = [("Host", "127.0.0.1"), ("Content-Length", str(len(body))), ("Connection", "close")]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    headers.extend(extra)
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


async def post(port: int, path: str, body: bytes, **kwargs: object) -> RawResponse:
    return parse_response(await send_and_read(port, http_post(path, body, **kwargs)))  # type: ignore[arg-type]


# -- memory ----------------------------------------------------------------------------------


@contextlib.contextmanager
def traced_peak() -> Iterator[Callable[[], int]]:
    """Peak bytes allocated by Python code in this process inside the block."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    peak = [0]
    try:
        yield lambda: peak[0]
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()


# -- payloads shared by the XML endpoints ---------------------------------------------------

XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE m [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
       b"<m>&secret;</m>")
BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
                             for i in range(1, 10))
                  + b"]><lolz>&lol9;</lolz>")
