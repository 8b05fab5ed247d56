"""A real Mosquitto (or amqtt) on a free port, and ports that misbehave on purpose.

Mosquitto is required: when the binary is missing the fixture errors (CI
installs it); nothing is skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.mqtt import MqttAdapter, create_adapter
from adapters.port import IngestPort, SubmitOutcome
from gateway.errors import StoreUnavailable, UnknownMeter
from meterhub.v1 import model_pb2 as pb
from simulators.mqtt.broker import RunningBroker, amqtt_broker, mosquitto_broker
from tests.support.recording_port import RecordingPort


@pytest.fixture
async def mosquitto() -> AsyncIterator[RunningBroker]:
    async with mosquitto_broker() as broker:
        yield broker


@pytest.fixture
async def amqtt() -> AsyncIterator[RunningBroker]:
    async with amqtt_broker() as broker:
        yield broker


def adapter_settings(broker: RunningBroker, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"type": "mqtt", "host": broker.host, "port": broker.port,
                                "protocol": broker.protocols[0], "reconnect_min_seconds": 0.05,
                                "reconnect_max_seconds": 0.2}
    if broker.username:
        settings["username"] = broker.username
    settings.update(overrides)
    return settings


@asynccontextmanager
async def running(name: str, settings: Mapping[str, Any], port: IngestPort) -> AsyncIterator[MqttAdapter]:
    """An adapter running in a task, subscribed before the block starts."""
    adapter = create_adapter(name, settings, port)
    task = asyncio.create_task(adapter.run())
    try:
        await asyncio.wait_for(adapter.subscribed.wait(), 10)
        yield adapter
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def intervals(port: RecordingPort) -> int:
    return sum(len(block.values) for batch in port.batches for block in batch.interval_blocks)


@dataclass
class BlockingPort(RecordingPort):
    """submit() never returns: the commit never happens."""

    attempts: int = 0

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        self.attempts += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@dataclass
class FlakyPort(RecordingPort):
    """The store fails for the first ``failures`` submits."""

    failures: int = 1
    attempts: int = 0

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreUnavailable("database is locked (simulated)")
        return await super().submit(batch)


@dataclass
class RejectingPort(RecordingPort):
    """Refuses batches that mention an unregistered meter, like the hub."""

    unknown: frozenset[str] = frozenset()

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        bad = sorted({b.meter_id for b in batch.interval_blocks} & self.unknown)
        if bad:
            raise UnknownMeter(f"unknown meter(s): {', '.join(bad)}")
        return await super().submit(batch)


@dataclass
class SlowPort(RecordingPort):
    """A slow store that records how many submits ran at once."""

    delay: float = 0.05
    running: int = 0
    most: int = 0
    concurrency: list[int] = field(default_factory=list)

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.delay)
            return await super().submit(batch)
        finally:
            self.running -= 1
