"""Publishing a planned fleet over MQTT with QoS 1.

The publisher caps its unacknowledged publishes itself: paho-mqtt was seen to
stall after ~65k in-flight QoS 1 publishes, and an unbounded burst only moves
the queue into the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators.mqtt.fleet import PlannedMessage

logger = logging.getLogger(__name__)

DEFAULT_TOPIC = "meterhub/sim-headend/readings"


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    host: str
    port: int
    topic: str = DEFAULT_TOPIC
    protocol: str = "5"
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    max_unacked: int = 1000
    # Seconds to pause between messages (0: as fast as the cap allows).
    pace_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError(f"protocol {self.protocol!r} must be \"5\" or \"3.1.1\"")
        if not 1 <= self.max_unacked <= 60_000:
            raise ValueError(f"max_unacked {self.max_unacked} must be between 1 and 60000")


@dataclass(slots=True)
class PublishStats:
    published: int = 0
    bytes: int = 0


async def publish_messages(config: PublisherConfig, messages: Iterable[PlannedMessage],
                           stats: PublishStats | None = None) -> PublishStats:
    """Publish every message (QoS 1, in order) and wait for all PUBACKs."""
    stats = stats if stats is not None else PublishStats()
    v5 = config.protocol == "5"
    client = aiomqtt.Client(
        config.host, config.port, identifier=config.client_id or None,
        username=config.username, password=config.password,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        max_inflight_messages=config.max_unacked,
        logger=logging.getLogger(f"{__name__}.paho"),
    )
    # aiomqtt warns above this many pending publishes; our own cap governs.
    client.pending_calls_threshold = config.max_unacked + 1
    slots = asyncio.Semaphore(config.max_unacked)
    pending: set[asyncio.Task[None]] = set()

    async def publish(message: PlannedMessage) -> None:
        try:
            properties: Properties | None = None
            if v5:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.ContentType = message.content_type
            await client.publish(config.topic, message.payload, qos=1, properties=properties)
            stats.published += 1
            stats.bytes += len(message.payload)
        finally:
            slots.release()

    async with client:
        try:
            for message in messages:
                await slots.acquire()
                task = asyncio.create_task(publish(message))
                pending.add(task)
                task.add_done_callback(pending.discard)
                if config.pace_seconds:
                    await asyncio.sleep(config.pace_seconds)
            if pending:
                await asyncio.gather(*pending)
        finally:
            for task in list(pending):
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    logger.info("published %d messages (%d bytes) to %s", stats.published, stats.bytes, config.topic)
    return stats


async def prepare_session(host: str, port: int, *, client_id: str, topics: Iterable[str], protocol: str,
                          username: str | None = None, session_expiry_seconds: int = 86_400) -> None:
    """Create a subscriber's persistent session before anything is published,
    so the broker queues messages for it until the adapter connects."""
    v5 = protocol == "5"
    properties: Properties | None = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_seconds
    client = aiomqtt.Client(
        host, port, identifier=client_id, username=username,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else False, properties=properties,
        logger=logging.getLogger(f"{__name__}.paho"),
    )
    async with client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
