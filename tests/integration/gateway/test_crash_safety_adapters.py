"""Kill the hub (SIGKILL) while it ingests through its own adapters, restart it
with the same hub.toml, and check that every read is stored exactly once and
that nothing it acknowledged was lost.

The sources are real: an MQTT source on a real Mosquitto (persistent session,
QoS 1, PUBACK only after commit) fed by a publisher that keeps publishing
while the hub is down, and a DLMS source polling a simulated meter fleet
(resuming from the store's watermark). The broker and the meters live in this
process and outlive the hub. Between the hub and the broker sits a relay that
reads the MQTT packets passing through, so the test knows exactly which
messages the hub acknowledged before it died.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType

import aiomqtt
import grpc
import numpy as np
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from adapters.dlms.cosem import RangeDescriptor
from adapters.dlms.session import GetRequested
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import model_pb2 as pb
from simulators.dlms.server import MeterFleet, SimulatorConfig
from simulators.mqtt.broker import RunningBroker, mosquitto_broker
from simulators.mqtt.publisher import prepare_session
from store import schema as s
from store.engine import open_engine
from tests.integration.gateway.test_cli_serve import wait_serving
from tests.integration.gateway.test_crash_safety import HubProcess, expected_value
from tests.support.batches import DAY, batch, interval_block

pytestmark = pytest.mark.mosquitto

# MQTT: meters x days of meter-day blocks, several per message, each message its own idempotency key.
MQTT_METERS = 120
MQTT_DAYS = 8
BLOCKS_PER_MESSAGE = 4
MQTT_TOPIC = "meterhub/crash-headend/readings"
PROTOBUF = "application/x-protobuf"
MQTT_CLIENT_ID = "meterhub-crash-north"
# Shares of the messages published before the hub starts, while it is down, and after the restart.
PUBLISHED_BEFORE_KILL = 0.5
PUBLISHED_WHILE_DOWN = 0.25
# DLMS: meters x whole UTC days of 15-minute load profile (import and export channels).
DLMS_METERS = 12
DLMS_DAYS = 20
SLOTS = 96
DELIVERED = int(pb.FLOW_DIRECTION_DELIVERED)
RECEIVED = int(pb.FLOW_DIRECTION_RECEIVED)
# The kill comes once this share of the MQTT messages is acknowledged and a day
# per DLMS meter (on average) is stored.
KILL_AFTER_MQTT = 0.1
KILL_AFTER_DLMS = 2 * DLMS_METERS
DEADLINE_SECONDS = 60.0


# -- the MQTT source ---------------------------------------------------------------------


def mqtt_meter(m: int) -> str:
    return f"MQ-{m:04d}"


def mqtt_messages() -> list[pb.ReadingBatch]:
    """Every meter-day once, BLOCKS_PER_MESSAGE meter-days per message."""
    meter_days = [(m, day) for day in range(MQTT_DAYS) for m in range(MQTT_METERS)]
    messages = []
    for n, start in enumerate(range(0, len(meter_days), BLOCKS_PER_MESSAGE)):
        blocks = [interval_block(mqtt_meter(m), DAY + timedelta(days=day, minutes=15),
                                 [expected_value(m, day, k) for k in range(SLOTS)])
                  for m, day in meter_days[start:start + BLOCKS_PER_MESSAGE]]
        messages.append(batch(*blocks, key=f"crash-mqtt-{n:05d}"))
    return messages


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """An MQTT variable byte integer at ``pos``: (value, position after it)."""
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def mqtt_packets(buffer: bytearray) -> Iterator[tuple[int, int, bytes]]:
    """Take every complete MQTT packet off the front of ``buffer``: (type, flags, body)."""
    while len(buffer) >= 2:
        length, shift, pos = 0, 0, 1
        while True:
            if pos >= len(buffer):
                return
            byte = buffer[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        if len(buffer) < pos + length:
            return
        first, body = buffer[0], bytes(buffer[pos:pos + length])
        del buffer[:pos + length]
        yield first >> 4, first & 0x0F, body


CONNECT, PUBLISH, PUBACK, SUBACK = 1, 3, 4, 9


@dataclass
class _Connection:
    """What the relay knows about one hub connection: its MQTT version and the
    packet ids of QoS 1 PUBLISHes delivered to it and not yet acknowledged."""

    version: int = 4
    unacked: dict[int, str] = field(default_factory=dict)


class MqttTap:
    """A TCP relay between the hub and the broker that reads the MQTT packets
    passing through: which messages (by idempotency key) the hub acknowledged
    with a PUBACK, and whether its subscription was granted. Bytes are
    forwarded unchanged and as they come."""

    def __init__(self, broker: RunningBroker) -> None:
        self.broker = broker
        self.port = 0
        self.acked: set[str] = set()
        self.deliveries = 0
        self.connections = 0
        self.open_connections = 0
        # Messages delivered to the hub and not acknowledged when its connection ended, per connection.
        self.unacked_at_close: list[int] = []
        self.subscribed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MqttTap:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, hub_reader: asyncio.StreamReader, hub_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self.connections += 1
        self.open_connections += 1
        state = _Connection()
        try:
            broker_reader, broker_writer = await asyncio.open_connection(self.broker.host, self.broker.port)
            pumps = [asyncio.create_task(self._pump(hub_reader, broker_writer, partial(self._from_hub, state))),
                     asyncio.create_task(self._pump(broker_reader, hub_writer, partial(self._from_broker, state)))]
            try:
                # Either side closing ends the relay: a killed hub drops the broker connection too.
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                broker_writer.close()
        finally:
            hub_writer.close()
            self.unacked_at_close.append(len(state.unacked))
            self.open_connections -= 1
            self._relays.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    seen: Callable[[int, int, bytes], None]) -> None:
        buffer = bytearray()
        while data := await reader.read(65536):
            buffer += data
            for kind, flags, body in mqtt_packets(buffer):
                seen(kind, flags, body)
            writer.write(data)
            await writer.drain()

    def _from_hub(self, state: _Connection, kind: int, _flags: int, body: bytes) -> None:
        if kind == CONNECT:
            name_length = int.from_bytes(body[:2], "big")
            state.version = body[2 + name_length]
        elif kind == PUBACK:
            key = state.unacked.pop(int.from_bytes(body[:2], "big"), None)
            if key is not None:
                self.acked.add(key)

    def _from_broker(self, state: _Connection, kind: int, flags: int, body: bytes) -> None:
        if kind == SUBACK:
            self.subscribed.set()
        elif kind == PUBLISH and (flags >> 1) & 3:
            pos = 2 + int.from_bytes(body[:2], "big")
            mid = int.from_bytes(body[pos:pos + 2], "big")
            pos += 2
            if state.version == 5:
                properties, pos = _varint(body, pos)
                pos += properties
            state.unacked[mid] = pb.ReadingBatch.FromString(body[pos:]).idempotency_key
            self.deliveries += 1


async def publish(client: aiomqtt.Client, messages: list[pb.ReadingBatch]) -> None:
    """QoS 1, in order; each publish returns once the broker has the message."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = PROTOBUF
    for message in messages:
        await client.publish(MQTT_TOPIC, message.SerializeToString(), qos=1, properties=properties)


# -- the DLMS source ---------------------------------------------------------------------


@dataclass
class RangeReads:
    """Load-profile range reads the simulated meters served, per meter, after the restart."""

    restarted: bool = False
    starts: dict[str, list[datetime]] = field(default_factory=dict)

    def watch(self, fleet: MeterFleet) -> None:
        for meter in fleet.meters:
            answer = meter.answer

            def recording(request: GetRequested, answer: Callable[[GetRequested], bytes | int] = answer,
                          meter_id: str = meter.meter_id) -> bytes | int:
                if self.restarted and isinstance(request.access, RangeDescriptor):
                    self.starts.setdefault(meter_id, []).append(request.access.start.astimezone(UTC))
                return answer(request)

            meter.answer = recording  # type: ignore[method-assign]


# -- the hub ----------------------------------------------------------------------------


class AdapterHub(HubProcess):
    """`meterhub serve` with [sources] in its hub.toml; its log goes to hub.log."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.log = workdir / "hub.log"

    def configure(self, sources: str = "") -> None:
        self.config.write_text(f'[hub]\nstore = "hub.sqlite"\nqueue_size = 16\n'
                               f'[grpc]\nlisten = "127.0.0.1:{self.port}"\n{sources}')

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        # A gRPC channel that failed to connect backs off for seconds: probe the port first.
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None, f"the hub exited with {self.proc.returncode}; see {self.log}"
                assert time.monotonic() < deadline, "the hub does not listen"
                time.sleep(0.02)
        wait_serving(self.target, deadline)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[AdapterHub]:
    process = AdapterHub(tmp_path)
    yield process
    if process.proc is not None:
        process.proc.kill()
        process.proc.wait()


def sources_toml(tap: MqttTap, fleet: MeterFleet, dlms_start: datetime) -> str:
    meters = ", ".join(f'{{ meter_id = "{e.meter_id}", host = "{e.host}", port = {e.port} }}'
                       for e in fleet.endpoints)
    return (
        "[sources.mqtt-north]\n"
        f'type = "mqtt"\nhost = "127.0.0.1"\nport = {tap.port}\nprotocol = "5"\n'
        f'topics = ["meterhub/+/readings"]\nclient_id = "{MQTT_CLIENT_ID}"\nclean_start = false\n'
        "reconnect_min_seconds = 0.05\nreconnect_max_seconds = 0.5\n"
        "[sources.dlms-south]\n"
        f'type = "dlms"\nstart = "{dlms_start.isoformat()}"\npoll_seconds = 1\nmax_days_per_read = 1\n'
        f"concurrency = {DLMS_METERS}\nread_registers = false\nbackoff_initial_seconds = 0.1\nbackoff_max_seconds = 1\n"
        f"meters = [{meters}]\n"
    )


async def register_meters(target: str, meter_ids: list[str]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await adm_grpc.AdminServiceStub(channel).UpsertMeters(
            adm.UpsertMetersRequest(meters=[adm.Meter(meter_id=m) for m in meter_ids]))


# -- the store ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredBlock:
    meter_id: str
    flow_direction: int
    day: int
    version: int
    values: list[int]
    qualities: list[int]


@dataclass(frozen=True, slots=True)
class StoreContents:
    blocks: dict[tuple[str, int, int], StoredBlock]
    batch_keys: frozenset[str]
    history_rows: int
    dead_letters: int

    def count(self, prefix: str) -> int:
        return sum(1 for meter_id, _flow, _day in self.blocks if meter_id.startswith(prefix))


def count_blocks(path: Path, prefix: str) -> int:
    """Channel-days stored for the meters whose id starts with ``prefix``."""
    engine = open_engine(str(path), create=False)
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(s.interval_blocks)
                .join(s.channels, s.interval_blocks.c.channel_id == s.channels.c.id)
                .join(s.meters, s.channels.c.meter_pk == s.meters.c.id)
                .where(s.meters.c.meter_id.startswith(prefix))).scalar_one())
    finally:
        engine.dispose()


def read_store(path: Path) -> StoreContents:
    engine = open_engine(str(path), create=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(s.meters.c.meter_id, s.channels.c.flow_direction, s.interval_blocks.c.day,
                       s.interval_blocks.c.version, s.interval_blocks.c["values"], s.interval_blocks.c.qualities)
                .join(s.channels, s.channels.c.meter_pk == s.meters.c.id)
                .join(s.interval_blocks, s.interval_blocks.c.channel_id == s.channels.c.id)).all()
            keys = frozenset(k for (k,) in conn.execute(select(s.ingested_batches.c.idempotency_key)))
            history = len(conn.execute(select(s.interval_block_history.c.id)).all())
            dead_letters = len(conn.execute(select(s.dead_letters.c.id)).all())
    finally:
        engine.dispose()
    blocks: dict[tuple[str, int, int], StoredBlock] = {}
    for meter_id, flow, day, version, values, qualities in rows:
        key = (meter_id, int(flow), int(day))
        assert key not in blocks, f"{key} is stored twice"
        blocks[key] = StoredBlock(meter_id, int(flow), int(day), int(version),
                                  np.frombuffer(values, "<i8").tolist(), np.frombuffer(qualities, "<i4").tolist())
    return StoreContents(blocks, keys, history, dead_letters)


@dataclass(frozen=True, slots=True)
class Expected:
    """Every block the sources hold: (meter, flow direction, day) -> values."""

    mqtt: dict[tuple[str, int, int], list[int]]
    dlms: dict[tuple[str, int, int], list[int]]
    # Idempotency key of each MQTT message -> the blocks it carries.
    messages: dict[str, list[tuple[str, int, int]]]


def expected_contents(messages: list[pb.ReadingBatch], fleet: MeterFleet, dlms_start: datetime) -> Expected:
    mqtt_day = int(DAY.timestamp()) // 86400
    mqtt = {(mqtt_meter(m), DELIVERED, mqtt_day + day): [expected_value(m, day, k) for k in range(SLOTS)]
            for m in range(MQTT_METERS) for day in range(MQTT_DAYS)}
    by_message = {message.idempotency_key: [
        (b.meter_id, DELIVERED, b.first_interval_end_time.seconds // 86400)
        for b in message.interval_blocks] for message in messages}
    first = int(dlms_start.timestamp())
    dlms: dict[tuple[str, int, int], list[int]] = {}
    for endpoint in fleet.endpoints:
        rows = fleet.model.rows(endpoint.meter_id, first + 900, first + DLMS_DAYS * 86400)
        assert len(rows) == DLMS_DAYS * SLOTS
        for flow, values in ((DELIVERED, rows.import_wh), (RECEIVED, rows.export_wh)):
            for day, day_values in enumerate(values.reshape(DLMS_DAYS, SLOTS).tolist()):
                dlms[(endpoint.meter_id, flow, first // 86400 + day)] = day_values
    return Expected(mqtt, dlms, by_message)


def check_acknowledged_stored(store: StoreContents, expected: Expected, acked: set[str]) -> None:
    """Every message the hub acknowledged is committed, with the values it carried."""
    assert acked <= store.batch_keys, f"acknowledged but not stored: {sorted(acked - store.batch_keys)[:5]}"
    for key in acked:
        for block in expected.messages[key]:
            assert block in store.blocks, f"message {key} was acknowledged, its block {block} is not stored"
            assert store.blocks[block].values == expected.mqtt[block], block


def check_complete(store: StoreContents, expected: Expected) -> None:
    """Every block once, with the expected values, in its first version, nothing missing."""
    wanted = {**expected.mqtt, **expected.dlms}
    assert set(store.blocks) == set(wanted), (f"missing {sorted(set(wanted) - set(store.blocks))[:5]}, "
                                             f"unexpected {sorted(set(store.blocks) - set(wanted))[:5]}")
    for key, block in store.blocks.items():
        assert block.values == wanted[key], key
        assert not any(q & pb.QUALITY_FLAG_MISSING for q in block.qualities), key
        assert block.version == 1, f"{key}: version {block.version}; redelivery must not make new versions"
    assert store.history_rows == 0
    assert store.dead_letters == 0
    assert set(expected.messages) <= store.batch_keys


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = DEADLINE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def broker() -> AsyncIterator[RunningBroker]:
    async with mosquitto_broker() as running:
        yield running


async def test_sigkill_mid_adapter_ingest_loses_nothing_and_duplicates_nothing(
        hub: AdapterHub, broker: RunningBroker, tmp_path: Path) -> None:
    store_path = tmp_path / "hub.sqlite"
    # Whole UTC days of DLMS history ending at the last midnight (the hub reads up to its own clock).
    dlms_end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    dlms_start = dlms_end - timedelta(days=DLMS_DAYS)
    simulator = SimulatorConfig(meters=DLMS_METERS, history_start=dlms_start, history_end=dlms_end)
    messages = mqtt_messages()
    before_kill = int(len(messages) * PUBLISHED_BEFORE_KILL)
    while_down = before_kill + int(len(messages) * PUBLISHED_WHILE_DOWN)
    ranges = RangeReads()
    async with MqttTap(broker) as tap, MeterFleet(simulator) as fleet, \
            aiomqtt.Client(broker.host, broker.port, identifier="crash-publisher",
                           protocol=aiomqtt.ProtocolVersion.V5) as publisher:
        expected = expected_contents(messages, fleet, dlms_start)
        ranges.watch(fleet)

        # Meters first, on a hub without sources.
        hub.configure()
        await asyncio.to_thread(hub.start)
        await register_meters(hub.target, [mqtt_meter(m) for m in range(MQTT_METERS)]
                              + [e.meter_id for e in fleet.endpoints])
        assert await asyncio.to_thread(hub.signal, signal.SIGTERM) == 0

        # The hub's persistent session exists before the head-end publishes; the broker queues for it.
        await prepare_session(broker.host, broker.port, client_id=MQTT_CLIENT_ID, topics=["meterhub/+/readings"],
                              protocol="5")
        await publish(publisher, messages[:before_kill])

        # The hub with its adapters: both sources ingest at once.
        hub.configure(sources_toml(tap, fleet, dlms_start))
        await asyncio.to_thread(hub.start)
        await asyncio.wait_for(tap.subscribed.wait(), 30)

        async def both_sources_under_way() -> bool:
            if len(tap.acked) < KILL_AFTER_MQTT * len(messages):
                return False
            dlms = await asyncio.to_thread(count_blocks, store_path, "DLMS-")
            return dlms >= KILL_AFTER_DLMS
        await wait_for(both_sources_under_way, "both sources to have committed a share of their reads")

        assert await asyncio.to_thread(hub.signal, signal.SIGKILL) == -signal.SIGKILL

        async def relay_closed() -> bool:
            return tap.open_connections == 0
        # Every byte the hub sent before it died has passed the relay: its acks are all counted.
        await wait_for(relay_closed, "the killed hub's broker connection to close", 10)
        acked_before_kill = set(tap.acked)
        assert tap.unacked_at_close[-1] > 0, "the kill must land while MQTT messages are in flight"
        at_kill = await asyncio.to_thread(read_store, store_path)
        check_acknowledged_stored(at_kill, expected, acked_before_kill)
        assert 0 < at_kill.count("MQ-") < len(expected.mqtt), "the kill must land mid-ingest (MQTT)"
        assert 0 < at_kill.count("DLMS-") < len(expected.dlms), "the kill must land mid-ingest (DLMS)"
        # Where each meter's profile continues: the end of its last stored day (or the configured start).
        resume = {e.meter_id: dlms_start + timedelta(seconds=900) for e in fleet.endpoints}
        for meter_id, _flow, day in at_kill.blocks:
            if meter_id in resume:
                resume[meter_id] = max(resume[meter_id],
                                       datetime.fromtimestamp((day + 1) * 86400 + 900, UTC))

        # The head-end keeps publishing while the hub is down; the broker queues for the session.
        await publish(publisher, messages[before_kill:while_down])
        assert tap.open_connections == 0

        ranges.restarted = True
        await asyncio.to_thread(hub.start)
        await publish(publisher, messages[while_down:])

        async def everything_stored() -> bool:
            stored_now = await asyncio.to_thread(count_blocks, store_path, "")
            return stored_now == len(expected.mqtt) + len(expected.dlms)
        await wait_for(everything_stored, "every read to arrive after the restart")
        assert await asyncio.to_thread(hub.signal, signal.SIGTERM) == 0

    final = read_store(store_path)
    check_complete(final, expected)
    check_acknowledged_stored(final, expected, tap.acked)
    assert tap.connections >= 2
    # The restarted poller read each meter from its watermark on, never what was already stored.
    assert set(ranges.starts) == set(resume)
    for meter_id, starts in ranges.starts.items():
        assert starts[0] == resume[meter_id], meter_id
        assert min(starts) == resume[meter_id], meter_id
