"""An asyncio C12.22 relay serving a fleet of simulated meters on one TCP port.

Each request APDU is routed by its called AP title to a meter; the meter answers
from its C12.19 tables through the same sans-I/O ServerSession the adapter's
codec provides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from adapters.c1222.codec import (
    ApTitle,
    FullRead,
    FullWrite,
    Ident,
    IdentResponse,
    KeyRing,
    Logoff,
    Logon,
    LogonResponse,
    Ok,
    PartialReadOffset,
    PartialWriteOffset,
    Request,
    Response,
    Security,
    TableData,
    Terminate,
    Wait,
)
from adapters.c1222.errors import (
    C1222ConnectionError,
    C1222Error,
    DataLocked,
    InappropriateActionRequested,
    InsufficientSecurityClearance,
    InvalidServiceSequenceState,
    OperationNotPossible,
    ResponseError,
    ResponseTooLarge,
    ServiceNotSupported,
    UnknownApplicationTitle,
)
from adapters.c1222.session import NEED_DATA, ConnectionClosed, Incoming, ServerSession
from simulators.c1222.meter import MeterSpec, SimulatedMeter, meter_ap_title

logger = logging.getLogger(__name__)

RELAY_AP_TITLE = ApTitle((7, 0), relative=True)
# A connection that sends nothing for this long is closed (a stalled or half-sent APDU).
IDLE_TIMEOUT_SECONDS = 120.0


@dataclass
class FleetConfig:
    meters: int
    spec: MeterSpec
    clock: Callable[[], datetime]
    keys: KeyRing = field(default_factory=KeyRing)
    password: bytes = b""
    # Largest table data one read may return; bigger requests get RSTL.
    max_response_data: int = 4096
    first_number: int = 1
    idle_timeout_seconds: float = IDLE_TIMEOUT_SECONDS


@dataclass
class _Association:
    """Per-connection, per-meter session state (logon, security clearance)."""

    logged_on: bool = False
    cleared: bool = False


class FleetServer:
    """Serves ``config.meters`` meters; use as an async context manager."""

    def __init__(self, config: FleetConfig, host: str = "127.0.0.1", port: int = 1153) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.meters = {meter_ap_title(n): SimulatedMeter(n, config.spec)
                       for n in range(config.first_number, config.first_number + config.meters)}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.sessions_served = 0

    async def __aenter__(self) -> FleetServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("C12.22 simulator: %d meters on %s:%d", len(self.meters), self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing the sockets ends each handler's read loop; no task is cancelled mid-write.
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        session = ServerSession(keys=self.config.keys)
        associations: dict[ApTitle, _Association] = {}
        try:
            while True:
                event = session.next_event()
                if event is NEED_DATA:
                    session.receive_data(await asyncio.wait_for(reader.read(65536),
                                                                self.config.idle_timeout_seconds))
                    continue
                if isinstance(event, ConnectionClosed):
                    break
                assert isinstance(event, Incoming)
                results, done = self._answer(event, associations)
                writer.write(session.send(event, results))
                await writer.drain()
                if done:
                    self.sessions_served += 1
                    break
        except C1222Error as exc:
            logger.warning("C12.22 simulator: dropping connection: %s", exc.message)
        except TimeoutError:
            logger.info("C12.22 simulator: nothing received for %.0f s; closing", self.config.idle_timeout_seconds)
        except (C1222ConnectionError, ConnectionError, asyncio.IncompleteReadError):
            # C1222ConnectionError: the peer closed in the middle of an APDU.
            logger.debug("C12.22 simulator: peer went away")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)

    def _answer(self, incoming: Incoming,
                associations: dict[ApTitle, _Association]) -> tuple[list[Response | ResponseError], bool]:
        title = incoming.apdu.called_ap_title
        meter = self.meters.get(title) if title is not None else None
        if meter is None:
            return [UnknownApplicationTitle("unknown called AP title")], False
        state = associations.setdefault(meter.ap_title, _Association())
        now = self.config.clock()
        results: list[Response | ResponseError] = []
        done = False
        for request in incoming.requests:
            try:
                results.append(self._serve(meter, state, request, now))
            except ResponseError as exc:
                results.append(exc)
                break  # C12.22: processing stops at the first failed service
            if isinstance(request, Terminate):
                done = True
        return results, done

    def _serve(self, meter: SimulatedMeter, state: _Association, request: Request, now: datetime) -> Response:
        match request:
            case Ident():
                return IdentResponse(3, 1, 0, b"\x00")
            case Logon(_, _, timeout):
                state.logged_on = True
                return LogonResponse(timeout or 60)
            case Security(password, _):
                if not state.logged_on:
                    raise InvalidServiceSequenceState("security before logon", remote=False)
                if password.rstrip(b"\x00 ") != self.config.password.rstrip(b"\x00 "):
                    raise InsufficientSecurityClearance("wrong password", remote=False)
                state.cleared = True
                return Ok()
            case Logoff():
                state.logged_on = state.cleared = False
                return Ok()
            case Terminate() | Wait():
                return Ok()
            case FullRead(table):
                self._check_clearance(state)
                size = meter.table_size(table, now)
                if size is None:
                    raise OperationNotPossible(f"table {table} not present", remote=False)
                if size > self.config.max_response_data:
                    raise ResponseTooLarge("table too large", detail=self.config.max_response_data.to_bytes(4, "big"),
                                           remote=False)
                return TableData(meter.table(table, now) or b"")
            case PartialReadOffset(table, offset, count):
                self._check_clearance(state)
                size = meter.table_size(table, now)
                if size is None:
                    raise OperationNotPossible(f"table {table} not present", remote=False)
                if count > self.config.max_response_data:
                    raise ResponseTooLarge("read too large", detail=self.config.max_response_data.to_bytes(4, "big"),
                                           remote=False)
                if offset + count > size:
                    raise InappropriateActionRequested("read beyond the table", remote=False)
                if table == 64:
                    return TableData(meter.lp_table(now, offset, count))
                data = meter.table(table, now) or b""
                return TableData(data[offset:offset + count])
            case FullWrite() | PartialWriteOffset():
                self._check_clearance(state)
                raise DataLocked("simulated meters are read-only", remote=False)
        raise ServiceNotSupported(f"service 0x{request.code:02X}", remote=False)

    def _check_clearance(self, state: _Association) -> None:
        if not state.logged_on:
            raise InvalidServiceSequenceState("read before logon", remote=False)
        if self.config.password and not state.cleared:
            raise InsufficientSecurityClearance("security service required", remote=False)
