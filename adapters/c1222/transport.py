"""asyncio transport for C12.22 over TCP, and the read procedure of one meter.

Library exceptions become C1222 errors at one seam (:func:`map_exceptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import numpy as np

from adapters.c1222.codec import (
    FullRead,
    KeyRing,
    Logoff,
    Logon,
    PartialReadOffset,
    Request,
    Response,
    Security,
    TableData,
    Terminate,
)
from adapters.c1222.config import C1222Config, MeterEndpoint
from adapters.c1222.errors import (
    TABLES_CONTENT_TYPE,
    C1222ConnectionError,
    C1222Error,
    C1222Timeout,
    ResponseError,
    TableError,
    UnexpectedResponse,
)
from adapters.c1222.normalize import LpRead, MeterRead, RegisterSnapshot
from adapters.c1222.session import NEED_DATA, ClientSession, ConnectionClosed, Responses, SecurityParams
from adapters.c1222.tables import (
    ST_ACT_LP,
    ST_ACT_REGS,
    ST_CLOCK,
    ST_CURRENT_REG_DATA,
    ST_DATA_SELECTION,
    ST_GEN_CONFIG,
    ST_LP_CTRL,
    ST_LP_DATA_SET1,
    ST_LP_STATUS,
    ActualRegisters,
    Clock,
    CurrentRegisters,
    GenConfig,
    LpControl,
    LpDimensions,
    LpFlag,
    LpLayout,
    LpStatus,
    TableRead,
    decode_lp_blocks,
    encode_table_reads,
    ni_decimal_exponent,
)

logger = logging.getLogger(__name__)

SinceLookup = Callable[[int, tuple[int, ...]], Awaitable[datetime | None]]


@contextlib.contextmanager
def map_exceptions(where: str) -> Iterator[None]:
    """The one place OS and asyncio errors turn into C12.22 transport errors."""
    try:
        yield
    except TimeoutError as exc:
        raise C1222Timeout(f"{where}: timed out") from exc
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise C1222ConnectionError(f"{where}: {exc}") from exc


class C1222Connection:
    """One TCP connection to a meter or relay, driving a ClientSession."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: ClientSession,
                 timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self.session = session
        self.timeout = timeout
        self.last_frame = b""
        self.round_trips = 0

    @classmethod
    async def open(cls, host: str, port: int, session: ClientSession, timeout_seconds: float) -> C1222Connection:
        with map_exceptions(f"connect {host}:{port}"):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_seconds)
        return cls(reader, writer, session, timeout_seconds)

    async def exchange(self, requests: Sequence[Request]) -> Responses:
        loop = asyncio.get_running_loop()
        wire = self.session.send(requests, loop.time())
        with map_exceptions("send"):
            self._writer.write(wire)
            await asyncio.wait_for(self._writer.drain(), self.timeout)
        self.round_trips += 1
        while True:
            event = self.session.next_event()
            if isinstance(event, Responses):
                return event
            if isinstance(event, ConnectionClosed):
                raise C1222ConnectionError("peer closed the connection before responding")
            assert event is NEED_DATA
            deadline = self.session.deadline if self.session.deadline is not None else loop.time()
            self.session.handle_timer(loop.time())  # raises C1222Timeout once the deadline passed
            try:
                with map_exceptions("receive"):
                    data = await asyncio.wait_for(self._reader.read(65536), max(deadline - loop.time(), 0.0))
            except C1222Timeout:
                self.session.handle_timer(deadline)
                raise
            self.last_frame = data
            self.session.receive_data(data)

    async def request(self, requests: Sequence[Request]) -> tuple[Response, ...]:
        """Results of every service; the first <nok> raises its ResponseError."""
        event = await self.exchange(requests)
        for result in event.results:
            if isinstance(result, ResponseError):
                raise result
        return event.results  # type: ignore[return-value]

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()


class Requester(Protocol):
    """What the read procedure needs of a connection (tests hand it a scripted one)."""

    async def request(self, requests: Sequence[Request]) -> tuple[Response, ...]: ...


def _table(result: Response, what: str) -> bytes:
    if not isinstance(result, TableData):
        raise UnexpectedResponse(f"{what}: expected table data, got {type(result).__name__}")
    return result.data


@dataclass(slots=True)
class TableLog:
    """The table bytes one session read, in order: what an undecodable read is dead-lettered with."""

    reads: list[TableRead] = field(default_factory=list)

    def add(self, table: int, offset: int, data: bytes) -> bytes:
        self.reads.append(TableRead(table, offset, data))
        return data

    def encode(self) -> bytes:
        return encode_table_reads(self.reads)


@dataclass(frozen=True, slots=True)
class _LpSetup:
    cfg: GenConfig
    dims: LpDimensions
    control: LpControl
    status: LpStatus
    layout: LpLayout


def block_ranges(setup: _LpSetup, seq: int, chunk: int) -> list[tuple[int, int]]:
    """(offset, count) partial reads covering block ``seq`` (only valid intervals of the newest)."""
    st, layout = setup.status, setup.layout
    n_blocks = setup.dims.sets[0].blocks
    element = (st.last_block_element - (st.last_block_seq - seq)) % n_blocks
    start = element * layout.block_bytes
    size = layout.block_bytes
    if seq == st.last_block_seq:
        size = layout.header_bytes + st.valid_intervals * layout.interval_bytes
    return [(start + o, min(chunk, size - o)) for o in range(0, size, chunk)]


def _lp_chunk(result: Response, offset: int, count: int, log: TableLog) -> bytes:
    """One partial read of ST64: exactly the bytes asked for (short data is not zero data)."""
    data = log.add(ST_LP_DATA_SET1, offset, _table(result, "table 64"))
    if len(data) != count:
        raise TableError(f"ST64 partial read at offset {offset} returned {len(data)} of the {count} bytes asked")
    return data


class MeterReader:
    """Reads one meter: LP since ``since`` with partial reads, and ST23 registers."""

    def __init__(self, config: C1222Config) -> None:
        self.config = config
        self.keys = KeyRing(dict(config.keys or {}))

    def session_for(self, meter: MeterEndpoint) -> ClientSession:
        security = SecurityParams(self.config.security_mode, self.config.key_id, self.keys, self.config.base_oid)
        return ClientSession(called_ap_title=meter.ap_title, calling_ap_title=self.config.calling_ap_title,
                             security=security, max_apdu_bytes=self.config.max_apdu_bytes,
                             response_timeout=self.config.timeout_seconds)

    async def read(self, meter: MeterEndpoint, since: SinceLookup, now: datetime) -> MeterRead:
        """``since(interval_seconds, divisors)`` gives the last stored interval end (or None)
        once the meter's LP setup is known.

        A C1222Error other than a <nok> carries the received bytes in ``raw``: the APDU that
        could not be decoded, or the table reads of the session when a table made no sense.
        """
        conn = await C1222Connection.open(meter.host, meter.port, self.session_for(meter), self.config.timeout_seconds)
        try:
            result = await self.read_tables(conn, meter, since, now)
            await conn.request([Logoff(), Terminate()])
            return result
        except C1222Error as exc:
            if exc.remote and not isinstance(exc, ResponseError):
                exc.keep_raw(conn.session.last_apdu)
            raise
        finally:
            await conn.close()

    async def read_tables(self, conn: Requester, meter: MeterEndpoint, since: SinceLookup,
                          now: datetime) -> MeterRead:
        """The read procedure on an open association (logon included, logoff not)."""
        log = TableLog()
        try:
            return await self._read(conn, meter, since, now, log)
        except TableError as exc:
            exc.keep_raw(log.encode(), TABLES_CONTENT_TYPE)
            raise

    async def _read(self, conn: Requester, meter: MeterEndpoint, since: SinceLookup, now: datetime,
                    log: TableLog) -> MeterRead:
        cfg_ = self.config
        opening: list[Request] = [Logon(cfg_.user_id, cfg_.user.encode("latin-1"), 60)]
        if cfg_.password:
            opening.append(Security(cfg_.password, cfg_.user_id))
        tables = [ST_GEN_CONFIG, ST_ACT_LP, ST_LP_STATUS, ST_CLOCK]
        if cfg_.read_registers:
            tables += [ST_ACT_REGS, ST_DATA_SELECTION, ST_CURRENT_REG_DATA]
        results = await conn.request([*opening, *(FullRead(t) for t in tables)])
        data = {t: log.add(t, 0, _table(r, f"table {t}"))
                for r, t in zip(results[len(opening):], tables, strict=True)}
        cfg = GenConfig.decode(data[ST_GEN_CONFIG])
        order = cfg.order
        dims = LpDimensions.decode(data[ST_ACT_LP], order)
        status = LpStatus.decode(data[ST_LP_STATUS], order)
        clock = Clock.decode(data[ST_CLOCK], cfg.time_format, order)
        (ctrl_raw,) = await conn.request([FullRead(ST_LP_CTRL)])
        lp_set = dims.sets[0]
        status.check(lp_set)
        control = LpControl.decode(log.add(ST_LP_CTRL, 0, _table(ctrl_raw, "table 62")), order, lp_set.channels,
                                   bool(dims.flags & LpFlag.SCALAR_DIVISOR_SET1))
        layout = LpLayout(lp_set.channels, lp_set.intervals_per_block, lp_set.interval_minutes, control.int_format,
                          dims.flags, cfg.time_format, order, cfg.ni_format1)
        setup = _LpSetup(cfg, dims, control, status, layout)
        mark = await since(lp_set.interval_minutes * 60, control.divisors)
        floor = mark if mark is not None else now - timedelta(days=cfg_.lookback_days)
        lp = await self._read_lp(conn, setup, floor, log)
        registers = None
        if cfg_.read_registers:
            regs = ActualRegisters.decode(data[ST_ACT_REGS])
            current = CurrentRegisters.decode(data[ST_CURRENT_REG_DATA], regs, cfg)
            registers = RegisterSnapshot(clock.time, current.summations, ni_decimal_exponent(cfg.ni_format1))
        return MeterRead(meter.meter_id, lp, registers, tuple(log.reads))

    async def _read_lp(self, conn: Requester, setup: _LpSetup, floor: datetime, log: TableLog) -> LpRead | None:
        status, layout = setup.status, setup.layout
        step = layout.interval_minutes * 60
        empty = LpRead(step, np.zeros(0, np.int64), np.zeros((0, layout.channels), np.int64),
                       np.zeros((0, layout.status_bytes), np.uint8), setup.control.scalars, setup.control.divisors)
        if status.valid_blocks == 0:
            return empty
        floor_s = int(floor.astimezone(UTC).timestamp())
        chunk = min(self.config.read_chunk_bytes, max(16, self.config.max_apdu_bytes - 64))
        per_apdu = max(1, (self.config.max_apdu_bytes - 128) // (chunk + 8))
        pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        seq = status.last_block_seq
        oldest = status.last_block_seq - status.valid_blocks + 1
        done = False
        while seq >= oldest and not done:
            # Plan as many whole blocks as fit in one request APDU, newest first.
            plan: list[tuple[int, list[tuple[int, int]]]] = []
            services = 0
            s = seq
            while s >= oldest:
                ranges = block_ranges(setup, s, chunk)
                if plan and services + len(ranges) > per_apdu:
                    break
                plan.append((s, ranges))
                services += len(ranges)
                s -= 1
            requests = [PartialReadOffset(ST_LP_DATA_SET1, off, count) for _, rs in plan for off, count in rs]
            answers: list[Response] = []
            for i in range(0, len(requests), per_apdu):  # a block bigger than one APDU spans several
                answers.extend(await conn.request(requests[i:i + per_apdu]))
            results = iter(answers)
            for block_seq, ranges in plan:
                raw = b"".join(_lp_chunk(next(results), offset, count, log) for offset, count in ranges)
                valid = status.valid_intervals if block_seq == status.last_block_seq else layout.intervals_per_block
                raw = raw.ljust(layout.block_bytes, b"\x00")
                blocks = decode_lp_blocks(raw, layout)
                end = int(blocks.end_times[0].timestamp())
                ends = end - step * np.arange(valid - 1, -1, -1, dtype=np.int64)
                keep = ends > floor_s
                pieces.append((ends[keep], blocks.values[0, :valid][keep], blocks.status[0, :valid][keep]))
                if end - step * (valid - 1) <= floor_s or valid == 0:
                    done = True
                    break
            seq = s
        pieces.reverse()
        ends = np.concatenate([p[0] for p in pieces]) if pieces else empty.ends
        order_idx = np.argsort(ends, kind="stable")
        ends = ends[order_idx]
        unique = np.concatenate(([True], np.diff(ends) != 0)) if len(ends) else np.zeros(0, bool)
        values = np.concatenate([p[1] for p in pieces])[order_idx][unique] if pieces else empty.values
        stat = np.concatenate([p[2] for p in pieces])[order_idx][unique] if pieces else empty.status
        return LpRead(step, ends[unique], values, stat, setup.control.scalars, setup.control.divisors)
