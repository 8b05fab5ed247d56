"""The MQTT adapter against a real Mosquitto on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from adapters.mqtt import create_adapter
from meterhub.v1 import model_pb2 as pb
from simulators.mqtt.broker import RunningBroker, mosquitto_broker
from simulators.mqtt.fleet import FaultRates, FleetSpec, PlannedMessage, PlanStats, expected_values, plan_messages
from simulators.mqtt.publisher import PublisherConfig, publish_messages
from tests.integration.mqtt.conftest import (
    BlockingPort,
    FlakyPort,
    RejectingPort,
    SlowPort,
    adapter_settings,
    intervals,
    running,
    wait_until,
)
from tests.support.recording_port import RecordingPort

pytestmark = pytest.mark.mosquitto
START = datetime(2026, 2, 1, tzinfo=UTC)


async def publish(broker: RunningBroker, messages: Sequence[PlannedMessage], *, protocol: str = "5",
                  topic: str = "meterhub/north/readings") -> None:
    config = PublisherConfig(host=broker.host, port=broker.port, topic=topic, protocol=protocol,
                             username=broker.username, max_unacked=50)
    await publish_messages(config, messages)


def assert_values_as_generated(port: RecordingPort, interval: int = 900) -> None:
    for batch in port.batches:
        for block in batch.interval_blocks:
            ends = block.first_interval_end_time.seconds + interval * np.arange(len(block.values), dtype=np.int64)
            assert list(block.values) == expected_values(block.meter_id, ends, interval).tolist()


@pytest.mark.parametrize(("protocol", "payload_format"), [("5", "protobuf"), ("5", "json"), ("3.1.1", "json"),
                                                          ("3.1.1", "protobuf")])
async def test_good_payloads_land_and_malformed_go_to_dead_letters(
        mosquitto: RunningBroker, protocol: str, payload_format: str) -> None:
    faults = FaultRates(malformed=0.4, seed=5)
    spec = FleetSpec(meters=40, start=START, days=2, meters_per_message=4, faults=faults,
                     payload_format=payload_format)  # type: ignore[arg-type]
    stats = PlanStats()
    messages = list(plan_messages(spec, stats))
    malformed = [m for m in messages if m.kind == "malformed"]
    assert malformed and stats.good_messages == 20
    port = RecordingPort()
    async with running("north", adapter_settings(mosquitto, protocol=protocol), port) as adapter:
        await publish(mosquitto, messages, protocol=protocol)
        await wait_until(lambda: adapter.stats.acked == len(messages))
    assert len(port.batches) == stats.good_messages
    assert intervals(port) == stats.intervals == 40 * 2 * 96
    assert_values_as_generated(port)
    # Raw bytes kept, in publishing order, with the precise reason.
    assert [d.payload for d in port.dead_letters] == [m.payload for m in malformed]
    expected_codes = {"garbage": "MQTT_BAD_PROTOBUF", "truncated_protobuf": "MQTT_BAD_PROTOBUF",
                      "broken_json": "MQTT_BAD_JSON", "json_schema": "MQTT_SCHEMA_VIOLATION"}
    for dead, sent in zip(port.dead_letters, malformed, strict=True):
        assert dead.reason_code == expected_codes[sent.fault]
        assert "(topic meterhub/north/readings)" in dead.reason
        if sent.fault == "json_schema":
            assert "values[0]: expected an integer or a decimal string" in dead.reason
        if protocol == "5":
            assert dead.content_type == sent.content_type


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_message_not_committed_is_redelivered_to_the_next_instance(
        mosquitto: RunningBroker, protocol: str) -> None:
    messages = list(plan_messages(FleetSpec(meters=30, start=START, days=1, meters_per_message=10)))
    settings = adapter_settings(mosquitto, protocol=protocol, client_id="hub-a")
    stuck = BlockingPort()
    async with running("north", settings, stuck):
        await publish(mosquitto, messages, protocol=protocol)
        await wait_until(lambda: stuck.attempts == 3)
    # The first instance died before any commit: nothing was acknowledged.
    port = RecordingPort()
    async with running("north", settings, port) as adapter:
        await wait_until(lambda: adapter.stats.acked == 3)
    assert intervals(port) == 30 * 96
    assert_values_as_generated(port)
    # Acknowledged now: a third instance of the same session gets nothing.
    late = RecordingPort()
    async with running("north", settings, late):
        await asyncio.sleep(0.5)
    assert late.batches == []


async def test_store_failure_leaves_the_message_unacked_until_it_commits(mosquitto: RunningBroker) -> None:
    messages = list(plan_messages(FleetSpec(meters=5, start=START, days=1, meters_per_message=5)))
    port = FlakyPort(failures=1)
    async with running("north", adapter_settings(mosquitto, client_id="hub-flaky"), port) as adapter:
        await publish(mosquitto, messages)
        await wait_until(lambda: adapter.stats.acked == 1)
    assert port.attempts == 2
    assert adapter.stats.store_failures == 1
    assert adapter.stats.connections == 2
    assert len(port.batches) == 1 and intervals(port) == 5 * 96
    assert port.dead_letters == []


async def test_batches_refused_by_ingest_are_dead_lettered_and_the_rest_lands(mosquitto: RunningBroker) -> None:
    messages = list(plan_messages(FleetSpec(meters=6, start=START, days=1, meters_per_message=2)))
    port = RejectingPort(unknown=frozenset({"MQTT-000003"}))
    async with running("north", adapter_settings(mosquitto), port) as adapter:
        await publish(mosquitto, messages)
        await wait_until(lambda: adapter.stats.acked == 3)
    assert len(port.batches) == 2
    [dead] = port.dead_letters
    assert dead.reason_code == "UNKNOWN_METER"
    assert "MQTT-000003" in dead.reason
    assert dead.payload == messages[1].payload


async def test_shared_subscription_splits_one_stream_between_instances(mosquitto: RunningBroker) -> None:
    messages = list(plan_messages(FleetSpec(meters=60, start=START, days=1, meters_per_message=2)))
    first, second = RecordingPort(), RecordingPort()
    shared = {"share_group": "hubs"}
    async with running("north", adapter_settings(mosquitto, client_id="hub-1", **shared), first) as a, \
            running("north", adapter_settings(mosquitto, client_id="hub-2", **shared), second) as b:
        await publish(mosquitto, messages)
        await wait_until(lambda: a.stats.acked + b.stats.acked == len(messages))
        await asyncio.sleep(0.2)
    keys_first = {batch.idempotency_key for batch in first.batches}
    keys_second = {batch.idempotency_key for batch in second.batches}
    assert first.batches and second.batches
    assert not keys_first & keys_second
    assert len(first.batches) + len(second.batches) == len(messages) == 30
    assert intervals(first) + intervals(second) == 60 * 96


async def test_slow_store_bounds_messages_in_flight(mosquitto: RunningBroker) -> None:
    messages = list(plan_messages(FleetSpec(meters=40, start=START, days=1, meters_per_message=1)))
    port = SlowPort(delay=0.03)
    async with running("north", adapter_settings(mosquitto, max_in_flight=3), port) as adapter:
        await publish(mosquitto, messages)
        await wait_until(lambda: adapter.stats.acked == 40)
    assert port.most == 3
    assert len(port.batches) == 40


async def test_adapter_reconnects_when_the_broker_comes_back() -> None:
    port = RecordingPort()
    first, second = (list(plan_messages(FleetSpec(meters=2, start=START, days=1, first_meter=n))) for n in (1, 3))
    async with mosquitto_broker() as broker:
        adapter = create_adapter("north", adapter_settings(broker), port)
        task = asyncio.create_task(adapter.run())
        try:
            await asyncio.wait_for(adapter.subscribed.wait(), 10)
            await publish(broker, first)
            await wait_until(lambda: adapter.stats.acked == 1)
        except BaseException:
            task.cancel()
            raise
    try:
        await asyncio.sleep(0.3)  # the adapter retries against a closed port meanwhile
        async with mosquitto_broker(broker.port) as again:
            await wait_until(lambda: adapter.stats.subscriptions == 2)
            await publish(again, second)
            await wait_until(lambda: adapter.stats.acked == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [b.interval_blocks[0].meter_id for b in port.batches] == ["MQTT-000001", "MQTT-000003"]
    assert_values_as_generated(port)


async def test_a_plain_json_payload_from_a_third_party_publisher(mosquitto: RunningBroker) -> None:
    payload = b"""{"interval_blocks": [{
        "meter_id": "ACME-1", "first_interval_end": "2026-02-01T01:00:00+01:00", "interval_seconds": 3600,
        "reading_type": {"unit": "WATT_HOUR", "kind": "ACTIVE_ENERGY", "power_of_ten_multiplier": -3},
        "values": ["1.5", "2000", 3], "qualities": [[], ["ESTIMATED"], []]}]}"""
    port = RecordingPort()
    async with running("acme", adapter_settings(mosquitto, protocol="3.1.1", topics=["acme/#"]), port) as adapter:
        await publish(mosquitto, [PlannedMessage("good", payload, "", 3)], protocol="3.1.1", topic="acme/x/y")
        await wait_until(lambda: adapter.stats.acked == 1)
    [block] = port.batches[0].interval_blocks
    assert list(block.values) == [1500, 2_000_000, 3]
    assert list(block.qualities) == [0, pb.QUALITY_FLAG_ESTIMATED, 0]
    assert block.first_interval_end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
