"""The MQTT adapter: subscribe with QoS 1, acknowledge only after commit.

aiomqtt (on paho-mqtt) is the codec and the socket driver. paho acknowledges a
QoS 1 PUBLISH as soon as its callback returns unless manual acks are on;
aiomqtt has no switch for that, so ``_paho_client`` turns paho's
``manual_ack`` on (before CONNECT, so redeliveries of a resumed session are
covered too) and the adapter calls ``ack(mid, 1)`` itself once
``port.submit`` returned (committed) or the payload was dead-lettered.

What happens to a message:

- decodes and commits, or is refused by ingest (IngestRejected) and
  dead-lettered: PUBACK, in arrival order (see acks.py);
- cannot be decoded (MqttPayloadError): dead-lettered with its raw bytes, PUBACK;
- the store fails (any other exception from submit or dead_letter): no PUBACK;
  the connection is closed and re-opened after a back-off, and the broker
  redelivers every unacknowledged message of the persistent session.

Backpressure: at most ``max_in_flight`` messages are handled at once, and on
MQTT 5 the broker is told the same number as Receive Maximum, so it stops
sending while that many are unacknowledged: a slow store slows the stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters.mqtt.acks import InOrderAcks
from adapters.mqtt.config import MqttConfig
from adapters.mqtt.errors import (
    MqttConnectionError,
    MqttError,
    MqttPayloadError,
    MqttSubscribeRefused,
    PayloadTooLarge,
)
from adapters.mqtt.normalize import dead_letter_content_type, decode_payload
from adapters.port import IngestPort
from gateway.errors import IngestRejected

logger = logging.getLogger(__name__)

QOS = 1
# An oversized payload is dead-lettered as an excerpt this long at most (the
# reason gives the full size): the evidence, not the flood.
MAX_DEAD_LETTER_EXCERPT = 1024 * 1024


class StoreFailure(MqttError):
    """submit() or dead_letter() failed for a reason other than rejecting the
    batch: the message stays unacknowledged and the broker redelivers it."""

    reason = "MQTT_STORE_FAILURE"


@dataclass(slots=True)
class AdapterStats:
    """Counters of one adapter instance (mutable; read by tests and the bench)."""

    connections: int = 0
    subscriptions: int = 0
    messages: int = 0
    committed: int = 0
    dead_lettered: int = 0
    acked: int = 0
    store_failures: int = 0


class Backoff:
    """Exponential reconnect delays with jitter, reset after a good connection."""

    def __init__(self, low: float, high: float, rng: random.Random | None = None) -> None:
        self._low = low
        self._high = high
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = min(self._high, self._low * 2 ** min(self._attempt, 30))
        self._attempt += 1
        jittered: float = delay * self._rng.uniform(0.5, 1.0)
        return jittered

    def reset(self) -> None:
        self._attempt = 0


class MqttAdapter:
    """Reads one MQTT source into an IngestPort until cancelled."""

    def __init__(self, config: MqttConfig, port: IngestPort, *, log: logging.Logger | None = None) -> None:
        self.config = config
        self.port = port
        self.stats = AdapterStats()
        self._log = log or logger
        self._backoff = Backoff(config.reconnect_min_seconds, config.reconnect_max_seconds)
        # Set once the first SUBACK arrived; tests and the demo wait on it.
        self.subscribed = asyncio.Event()
        # True while subscribed on a live connection (the hub's health reads it).
        self.connected = False

    async def run(self) -> None:
        """Connect, subscribe and ingest; reconnect with back-off on any
        connection or store failure. Never returns; cancel it to stop."""
        while True:
            try:
                await self._connection()
            except (MqttConnectionError, MqttSubscribeRefused, StoreFailure) as exc:
                self._log.warning("mqtt source %s: %s: %s", self.config.name, exc.reason, exc.message)
            delay = self._backoff.next_delay()
            self._log.info("mqtt source %s: reconnecting in %.2f s", self.config.name, delay)
            await asyncio.sleep(delay)

    # -- one connection ---------------------------------------------------------------

    async def _connection(self) -> None:
        client = self._new_client()
        paho = _paho_client(client)
        paho.manual_ack_set(True)
        try:
            async with client:
                self.stats.connections += 1
                await self._subscribe(client)
                self._backoff.reset()
                self.stats.subscriptions += 1
                self.subscribed.set()
                self.connected = True
                self._log.info("mqtt source %s: subscribed to %s on %s:%d (MQTT %s, client id %s)",
                               self.config.name, ", ".join(self.config.subscriptions), self.config.host,
                               self.config.port, self.config.protocol, self.config.client_id)
                await self._consume(client, paho)
        except aiomqtt.MqttError as exc:
            raise MqttConnectionError(f"broker {self.config.host}:{self.config.port}: {exc}") from exc
        finally:
            self.connected = False

    def _new_client(self) -> aiomqtt.Client:
        config = self.config
        v5 = config.protocol == "5"
        properties: Properties | None = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            # Without a session expiry an MQTT 5 session ends at disconnect and
            # unacknowledged messages would be lost instead of redelivered.
            properties.SessionExpiryInterval = config.session_expiry_seconds
            properties.ReceiveMaximum = config.max_in_flight
        tls = aiomqtt.TLSParameters(ca_certs=config.ca_file) if config.tls else None
        return aiomqtt.Client(
            config.host, config.port,
            username=config.username, password=config.password,
            identifier=config.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else config.clean_start,
            # paho refuses any clean_start but its default on MQTT 3.1.1.
            clean_start=config.clean_start if v5 else paho_mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            keepalive=config.keepalive_seconds,
            timeout=config.connect_timeout_seconds,
            properties=properties,
            tls_params=tls,
            logger=logging.getLogger(f"{__name__}.paho"),
        )

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        for topic in self.config.subscriptions:
            granted = await client.subscribe(topic, qos=QOS)
            for code in _suback_codes(granted):
                if code >= 0x80:
                    raise MqttSubscribeRefused(f"broker refused SUBSCRIBE {topic!r} with reason code 0x{code:02X}",
                                               code=code)

    async def _consume(self, client: aiomqtt.Client, paho: paho_mqtt.Client) -> None:
        acks = InOrderAcks()
        slots = asyncio.Semaphore(self.config.max_in_flight)
        failure: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handlers: set[asyncio.Task[None]] = set()

        async def handle(message: aiomqtt.Message, seq: int) -> None:
            try:
                await self._deliver(message)
            except Exception as exc:  # noqa: BLE001 - logged below; the connection restarts
                # StoreFailure, or a bug: either way the message stays unacked
                # and the connection restarts, so the broker redelivers it.
                self.stats.store_failures += 1
                if not isinstance(exc, StoreFailure):
                    self._log.exception("mqtt source %s: handling a message failed", self.config.name)
                    exc = StoreFailure(f"handling a message failed: {type(exc).__name__}: {exc}")
                if not failure.done():
                    failure.set_exception(exc)
                return
            finally:
                slots.release()
            for mid, qos in acks.finished(seq):
                # A lost connection makes ack() fail; the broker redelivers then.
                if paho.ack(mid, qos) == paho_mqtt.MQTT_ERR_SUCCESS:
                    self.stats.acked += 1

        async def receive() -> None:
            async for message in client.messages:
                await slots.acquire()
                self.stats.messages += 1
                seq = acks.received(message.mid, message.qos)
                task = asyncio.create_task(handle(message, seq))
                handlers.add(task)
                task.add_done_callback(handlers.discard)

        receiver = asyncio.create_task(receive())
        try:
            await asyncio.wait({receiver, failure}, return_when=asyncio.FIRST_COMPLETED)
            if failure.done():
                failure.result()
            receiver.result()
        finally:
            receiver.cancel()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(receiver, *handlers, return_exceptions=True)
            if not failure.done():
                failure.cancel()

    async def _deliver(self, message: aiomqtt.Message) -> None:
        """Commit or dead-letter one message; raises StoreFailure when neither worked."""
        payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
        content_type = _content_type(message)
        topic = message.topic.value
        try:
            batch = decode_payload(payload, content_type=content_type, payload_format=self.config.payload_format,
                                   max_bytes=self.config.max_payload_bytes)
        except PayloadTooLarge as exc:
            kept = payload[:min(self.config.max_payload_bytes, MAX_DEAD_LETTER_EXCERPT)]
            await self._dead_letter(kept, exc.reason, f"{exc.message}; first {len(kept)} bytes kept (topic {topic})",
                                    content_type)
            return
        except MqttPayloadError as exc:
            await self._dead_letter(payload, exc.reason, f"{exc.message} (topic {topic})", content_type)
            return
        except Exception as exc:  # noqa: BLE001 - logged; the payload is dead-lettered
            # A decoder bug must not stall the stream on one message forever.
            self._log.exception("mqtt source %s: decoder failed unexpectedly", self.config.name)
            await self._dead_letter(payload, "MQTT_DECODER_FAILED", f"{type(exc).__name__}: {exc} (topic {topic})",
                                    content_type)
            return
        try:
            await self.port.submit(batch)
        except IngestRejected as exc:
            await self._dead_letter(payload, exc.reason, f"{exc.message} (topic {topic})", content_type)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever the store raised, the message must not be acked
            raise StoreFailure(f"submit failed, message left unacknowledged for redelivery: "
                               f"{type(exc).__name__}: {exc}") from exc
        self.stats.committed += 1

    async def _dead_letter(self, payload: bytes, reason_code: str, reason: str, content_type: str | None) -> None:
        recorded = dead_letter_content_type(payload, content_type=content_type,
                                            payload_format=self.config.payload_format)
        self._log.info("mqtt source %s: dead letter %s: %s", self.config.name, reason_code, reason)
        try:
            await self.port.dead_letter(payload, reason_code=reason_code, reason=reason, content_type=recorded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unrecorded rejection must not be acked either
            raise StoreFailure(f"dead_letter failed, message left unacknowledged: "
                               f"{type(exc).__name__}: {exc}") from exc
        self.stats.dead_lettered += 1


def _paho_client(client: aiomqtt.Client) -> paho_mqtt.Client:
    """The paho client inside an aiomqtt client (aiomqtt 2.x keeps it as
    ``_client`` and exposes no manual-ack option)."""
    paho = getattr(client, "_client", None)
    if not isinstance(paho, paho_mqtt.Client):
        raise MqttError("this aiomqtt version does not wrap a paho Client as _client; manual acks are impossible")
    return paho


def _content_type(message: aiomqtt.Message) -> str | None:
    properties = message.properties
    if properties is None:
        return None
    value = getattr(properties, "ContentType", None)
    return value if isinstance(value, str) and value else None


def _suback_codes(granted: object) -> list[int]:
    """SUBACK results as integers: granted QoS on 3.1.1, reason codes on 5."""
    codes: list[int] = []
    if isinstance(granted, list | tuple):
        for item in granted:
            value = getattr(item, "value", item)
            codes.append(int(value) if isinstance(value, int) else 0x80)
    return codes

