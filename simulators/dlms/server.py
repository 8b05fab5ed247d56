"""DLMS/COSEM meter simulator: one asyncio TCP server per meter (a port range),
speaking the WRAPPER over the adapter's own sans-I/O server session.

Each meter serves its clock (0.0.1.0.0.255), energy registers (1.0.1.8.0.255,
1.0.2.8.0.255), per-interval energy registers (1.0.1.29.0.255, 1.0.2.29.0.255),
the AMR profile status (0.0.96.10.1.255) and load profile 1 (1.0.99.1.0.255)
with selective access by range and by entry. Values come from
:class:`simulators.dlms.model.ConsumptionModel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, TracebackType

import numpy as np

from adapters.dlms import axdr, profile
from adapters.dlms.axdr import Data, Tag
from adapters.dlms.codec import Mechanism
from adapters.dlms.cosem import (
    CLOCK_OBIS,
    EXPORT_ENERGY_OBIS,
    EXPORT_INTERVAL_OBIS,
    IMPORT_ENERGY_OBIS,
    IMPORT_INTERVAL_OBIS,
    LOAD_PROFILE_OBIS,
    STATUS_OBIS,
    CaptureObject,
    ClassId,
    EntryDescriptor,
    Obis,
    RangeDescriptor,
    ScalerUnit,
    Unit,
    capture_objects_to_data,
    encode_date_time,
)
from adapters.dlms.security import Keys
from adapters.dlms.session import NEED_DATA, GetRequested, SecuritySettings, ServerSession
from adapters.errors import AdapterError
from simulators.dlms.model import NO_FAULTS, ConsumptionModel, Faults, ProfileRows, meter_id

logger = logging.getLogger(__name__)

READ_CHUNK = 4096
IDLE_TIMEOUT_SECONDS = 120.0

OBJECT_UNDEFINED = 4
OBJECT_CLASS_INCONSISTENT = 9
OBJECT_UNAVAILABLE = 11
SCOPE_OF_ACCESS_VIOLATED = 13

CAPTURE_OBJECTS = (
    CaptureObject(ClassId.CLOCK, CLOCK_OBIS, 2),
    CaptureObject(ClassId.DATA, STATUS_OBIS, 2),
    CaptureObject(ClassId.REGISTER, IMPORT_INTERVAL_OBIS, 2),
    CaptureObject(ClassId.REGISTER, EXPORT_INTERVAL_OBIS, 2),
)
ENERGY_SCALER = ScalerUnit(0, Unit.WATT_HOUR)


def system_title(index: int) -> bytes:
    """Server system title of the index-th meter: 'MHS' and five bytes of the index."""
    return b"MHS" + index.to_bytes(5, "big")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    meters: int = 10
    first_index: int = 1
    host: str = "127.0.0.1"
    # First port of the range (meter i listens on base_port + i); 0 lets the OS pick each port.
    base_port: int = 0
    interval_seconds: int = 900
    history_start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    # Data ends here even if the clock runs past it (demo fleets serve whole days).
    history_end: datetime | None = None
    faults: Faults = NO_FAULTS
    mechanism: int = Mechanism.NONE
    password: bytes | None = None
    keys: Keys | None = None
    max_pdu_size: int = 1024
    # A buffer read without selective access returns at most the last this-many entries.
    profile_entries: int = 96 * 31

    def __post_init__(self) -> None:
        if self.meters < 1:
            raise ValueError("meters must be at least 1")
        if self.history_start.tzinfo is None or (self.history_end is not None and self.history_end.tzinfo is None):
            raise ValueError("history_start and history_end must be timezone-aware")
        if not 0 <= self.base_port <= 65535 - self.meters:
            raise ValueError(f"port range {self.base_port}+{self.meters} does not fit")

    def security(self, index: int) -> SecuritySettings:
        return SecuritySettings(self.mechanism, self.password, self.keys, system_title(index))


@dataclass(frozen=True, slots=True)
class Endpoint:
    meter_id: str
    host: str
    port: int
    system_title: bytes


@dataclass
class SimulatedMeter:
    """The COSEM objects of one meter, answering Get requests."""

    index: int
    config: SimulatorConfig
    model: ConsumptionModel
    clock: Callable[[], datetime]
    sessions_served: int = field(default=0)
    # (last interval end, import Wh, export Wh): registers advance incrementally, not from the epoch each read.
    _registers: tuple[int, int, int] | None = field(default=None, repr=False)

    @property
    def meter_id(self) -> str:
        return meter_id(self.index)

    def true_now(self) -> datetime:
        return self.clock().astimezone(UTC)

    def meter_time(self) -> datetime:
        return self.true_now() + timedelta(seconds=self.model.clock_offset(self.meter_id))

    def registers(self) -> tuple[int, int]:
        """Equal to ``model.registers(meter_id, now)``, computed from the last read onward."""
        now = self.true_now()
        step = self.config.interval_seconds
        last = int(now.timestamp()) // step * step
        cached = self._registers
        if cached is None or cached[0] > last:
            imported, exported = self.model.registers(self.meter_id, now)
        else:
            ends = np.arange(cached[0] + step, last + 1, step, dtype=np.int64)
            more_import, more_export = self.model.true_values(self.meter_id, ends)
            imported, exported = cached[1] + int(more_import.sum()), cached[2] + int(more_export.sum())
        self._registers = (last, imported, exported)
        return imported, exported

    def _buffer_window(self) -> tuple[int, int]:
        step = self.config.interval_seconds
        first = int(self.config.history_start.timestamp()) + step
        last = int(self.true_now().timestamp())
        if self.config.history_end is not None:
            last = min(last, int(self.config.history_end.timestamp()))
        last = last // step * step
        first = max(first, last - (self.config.profile_entries - 1) * step)
        return first, last

    def answer(self, request: GetRequested) -> bytes | int:
        attribute = request.attribute
        handler = _OBJECTS.get(attribute.obis)
        if handler is None:
            return OBJECT_UNDEFINED
        class_id, read = handler
        if attribute.class_id != class_id:
            return OBJECT_CLASS_INCONSISTENT
        if request.access is not None and attribute.obis != LOAD_PROFILE_OBIS:
            return SCOPE_OF_ACCESS_VIOLATED
        if attribute.attribute == 1:
            return axdr.encode(axdr.octet_string(attribute.obis.raw))
        return read(self, request)

    # ---- objects

    def _clock(self, request: GetRequested) -> bytes | int:
        match request.attribute.attribute:
            case 2:
                return axdr.encode(axdr.octet_string(encode_date_time(self.meter_time())))
            case 3:
                return axdr.encode(axdr.integer(Tag.LONG, 0))
            case 4:
                return axdr.encode(axdr.integer(Tag.UNSIGNED, 0))
        return OBJECT_UNAVAILABLE

    def _status(self, request: GetRequested) -> bytes | int:
        if request.attribute.attribute != 2:
            return OBJECT_UNAVAILABLE
        return axdr.encode(axdr.integer(Tag.UNSIGNED, 0))

    def _energy(self, request: GetRequested) -> bytes | int:
        match request.attribute.attribute:
            case 2:
                imported, exported = self.registers()
                value = imported if request.attribute.obis == IMPORT_ENERGY_OBIS else exported
                return axdr.encode(axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, value))
            case 3:
                return axdr.encode(ENERGY_SCALER.to_data())
        return OBJECT_UNAVAILABLE

    def _interval_energy(self, request: GetRequested) -> bytes | int:
        match request.attribute.attribute:
            case 2:
                _first, last = self._buffer_window()
                imported, exported = self.model.true_values(self.meter_id, np.array([last], dtype=np.int64))
                value = imported if request.attribute.obis == IMPORT_INTERVAL_OBIS else exported
                return axdr.encode(axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, int(value[0])))
            case 3:
                return axdr.encode(ENERGY_SCALER.to_data())
        return OBJECT_UNAVAILABLE

    def _profile(self, request: GetRequested) -> bytes | int:
        match request.attribute.attribute:
            case 2:
                return self._buffer(request)
            case 3:
                return axdr.encode(capture_objects_to_data(CAPTURE_OBJECTS))
            case 4:
                return axdr.encode(axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, self.config.interval_seconds))
            case 5:
                return axdr.encode(axdr.integer(Tag.ENUM, 1))  # sort method: FIFO
            case 7:
                first, last = self._buffer_window()
                return axdr.encode(axdr.integer(Tag.DOUBLE_LONG_UNSIGNED,
                                                len(self.model.rows(self.meter_id, first, last))))
            case 8:
                return axdr.encode(axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, self.config.profile_entries))
        return OBJECT_UNAVAILABLE

    def _buffer(self, request: GetRequested) -> bytes | int:
        first, last = self._buffer_window()
        access = request.access
        columns = tuple(range(len(CAPTURE_OBJECTS)))
        if isinstance(access, RangeDescriptor):
            if access.restricting.obis != CLOCK_OBIS:
                return SCOPE_OF_ACCESS_VIOLATED
            rows = self.model.rows(self.meter_id, max(first, int(access.start.timestamp())),
                                   min(last, int(access.end.timestamp())))
            if access.selected:
                try:
                    columns = tuple(CAPTURE_OBJECTS.index(c) for c in access.selected)
                except ValueError:
                    return SCOPE_OF_ACCESS_VIOLATED
        else:
            rows = self.model.rows(self.meter_id, first, last)
            if isinstance(access, EntryDescriptor):
                rows, columns = _select_entries(rows, access)
        return encode_rows(rows, columns)


def _select_entries(rows: ProfileRows, access: EntryDescriptor) -> tuple[ProfileRows, tuple[int, ...]]:
    count = len(rows)
    to_entry = count if access.to_entry == 0 else min(access.to_entry, count)
    start = max(access.from_entry, 1) - 1
    width = len(CAPTURE_OBJECTS)
    to_column = width if access.to_column == 0 else min(access.to_column, width)
    columns = tuple(range(max(access.from_column, 1) - 1, to_column))
    return rows.take(slice(start, max(start, to_entry))), columns


def encode_rows(rows: ProfileRows, columns: tuple[int, ...]) -> bytes:
    """The buffer for the given rows: the columnar fast path when every column is
    selected, else one structure per row with the chosen columns."""
    if columns == tuple(range(len(CAPTURE_OBJECTS))):
        return profile.encode_buffer(rows.ends, rows.status, (rows.import_wh, rows.export_wh))
    stamps = profile.encode_date_times(rows.ends)
    out = []
    for i in range(len(rows)):
        cells: list[Data] = [
            axdr.octet_string(bytes(stamps[i])),
            axdr.integer(Tag.UNSIGNED, int(rows.status[i])),
            axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, int(rows.import_wh[i])),
            axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, int(rows.export_wh[i])),
        ]
        out.append(axdr.structure(*(cells[c] for c in columns)))
    return axdr.encode(axdr.array(*out))


_Reader = Callable[[SimulatedMeter, GetRequested], "bytes | int"]
_OBJECTS: Mapping[Obis, tuple[int, _Reader]] = MappingProxyType({
    CLOCK_OBIS: (ClassId.CLOCK, SimulatedMeter._clock),
    STATUS_OBIS: (ClassId.DATA, SimulatedMeter._status),
    IMPORT_ENERGY_OBIS: (ClassId.REGISTER, SimulatedMeter._energy),
    EXPORT_ENERGY_OBIS: (ClassId.REGISTER, SimulatedMeter._energy),
    IMPORT_INTERVAL_OBIS: (ClassId.REGISTER, SimulatedMeter._interval_energy),
    EXPORT_INTERVAL_OBIS: (ClassId.REGISTER, SimulatedMeter._interval_energy),
    LOAD_PROFILE_OBIS: (ClassId.PROFILE_GENERIC, SimulatedMeter._profile),
})


class MeterFleet:
    """Starts ``config.meters`` meters, each on its own port, for the life of the context."""

    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.model = ConsumptionModel(config.interval_seconds, config.faults)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self.meters = [SimulatedMeter(config.first_index + i, config, self.model, self._clock)
                       for i in range(config.meters)]
        self.endpoints: list[Endpoint] = []

    async def __aenter__(self) -> MeterFleet:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            for i, meter in enumerate(self.meters):
                port = self.config.base_port + i if self.config.base_port else 0
                server = await asyncio.start_server(self._handler(meter), self.config.host, port)
                self._servers.append(server)
                bound = server.sockets[0].getsockname()[1]
                self.endpoints.append(Endpoint(meter.meter_id, self.config.host, int(bound),
                                               system_title(meter.index)))
        except BaseException:
            await self.stop()
            raise
        logger.info("DLMS simulator: %d meters on %s ports %d..%d", len(self.meters), self.config.host,
                    self.endpoints[0].port, self.endpoints[-1].port)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _handler(self, meter: SimulatedMeter
                 ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(meter, reader, writer)
        return handle

    async def _serve(self, meter: SimulatedMeter, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        session = ServerSession(self.config.security(meter.index), challenge=secrets.token_bytes(16),
                                max_pdu_size=self.config.max_pdu_size)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), IDLE_TIMEOUT_SECONDS)
                if not data:
                    break
                session.receive_data(data)
                while (event := session.next_event()) is not NEED_DATA:
                    if isinstance(event, GetRequested):
                        session.respond(event, meter.answer(event))
                    logger.debug("meter %s: %s", meter.meter_id, type(event).__name__)
                writer.write(session.data_to_send())
                await writer.drain()
            meter.sessions_served += 1
        except AdapterError as exc:
            # Garbage from the client: say what and close; the next connection starts clean.
            logger.warning("meter %s: closing after %s: %s", meter.meter_id, exc.reason, exc)
            with contextlib.suppress(OSError):
                writer.write(session.data_to_send())
        except (TimeoutError, OSError) as exc:
            logger.info("meter %s: connection ended: %r", meter.meter_id, exc)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
