"""MQTT 3.1.1 against amqtt, the demo fleet, and the whole chain into the real hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest

from adapters.mqtt import MqttAdapter
from adapters.mqtt.normalize import decode_payload
from gateway.config import GrpcConfig, HubConfig, SourceConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from simulators.mqtt.broker import RunningBroker
from simulators.mqtt.demo import demo_fleet
from simulators.mqtt.fleet import FaultRates, FleetSpec, PlanStats, expected_values, plan_messages
from simulators.mqtt.publisher import PublisherConfig, publish_messages
from tests.integration.mqtt.conftest import adapter_settings, intervals, running, wait_until
from tests.support.recording_port import RecordingPort

START = datetime(2026, 2, 1, tzinfo=UTC)


def distinct_intervals(port: RecordingPort) -> set[tuple[str, int]]:
    seen: set[tuple[str, int]] = set()
    for batch in port.batches:
        for block in batch.interval_blocks:
            first = block.first_interval_end_time.seconds
            seen.update((block.meter_id, first + i * block.interval_seconds) for i in range(len(block.values)))
    return seen


async def test_mqtt_311_against_amqtt(amqtt: RunningBroker) -> None:
    spec = FleetSpec(meters=20, start=START, days=1, meters_per_message=5, payload_format="json",
                     faults=FaultRates(malformed=0.5, seed=3))
    stats = PlanStats()
    messages = list(plan_messages(spec, stats))
    port = RecordingPort()
    settings = adapter_settings(amqtt, protocol="3.1.1", topics=["meterhub/+/readings"])
    async with running("legacy", settings, port) as adapter:
        await publish_messages(PublisherConfig(host=amqtt.host, port=amqtt.port, protocol="3.1.1",
                                               username=amqtt.username), messages)
        await wait_until(lambda: adapter.stats.acked == len(messages))
    assert intervals(port) == stats.intervals == 20 * 96
    assert [d.payload for d in port.dead_letters] == [m.payload for m in messages if m.kind == "malformed"]
    malformed = [m for m in messages if m.kind == "malformed"]
    # No content-type property on 3.1.1: JSON is recognised by its first byte.
    assert [d.content_type for d in port.dead_letters] == [
        "application/json" if m.fault in ("broken_json", "json_schema") else "application/octet-stream"
        for m in malformed]


@pytest.mark.parametrize("broker_kind", [pytest.param("mosquitto", marks=pytest.mark.mosquitto), "amqtt"])
async def test_demo_fleet_delivers_what_it_promises(broker_kind: str) -> None:
    async with demo_fleet(meters=120, start=START, days=1, interval_minutes=15,
                          broker_kind=broker_kind) as fleet:  # type: ignore[arg-type]
        assert fleet.adapter_config["type"] == "mqtt"
        assert fleet.meter_ids[0] == "MQTT-000001" and len(fleet.meter_ids) == 120
        port = RecordingPort()
        async with running("mqtt-headend", fleet.adapter_config, port):
            await wait_until(lambda: len(distinct_intervals(port)) >= fleet.expected_intervals)
    assert len(distinct_intervals(port)) == fleet.expected_intervals


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    config = HubConfig(store=str(tmp_path / "hub.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"))
    async with Hub(config) as started:
        yield started


@pytest.mark.mosquitto
async def test_end_to_end_into_the_hub(hub: Hub, mosquitto: RunningBroker) -> None:
    spec = FleetSpec(meters=30, start=START, days=2, meters_per_message=3,
                     faults=FaultRates(malformed=0.2, duplicates=0.2, gaps=0.2, seed=9))
    stats = PlanStats()
    messages = list(plan_messages(spec, stats))
    unregistered = "MQTT-000030"
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        admin = adm_grpc.AdminServiceStub(channel)
        await admin.UpsertMeters(adm.UpsertMetersRequest(
            meters=[adm.Meter(meter_id=m) for m in spec.meter_ids if m != unregistered]))
        adapter = hub.create_adapter(SourceConfig("mqtt-north", "mqtt", adapter_settings(mosquitto)))
        assert isinstance(adapter, MqttAdapter)
        hub.add_adapter("mqtt-north", adapter)
        await wait_until(adapter.subscribed.is_set)
        await publish_messages(PublisherConfig(host=mosquitto.host, port=mosquitto.port), messages)
        await wait_until(lambda: adapter.stats.acked == len(messages), seconds=60)

        dead = (await admin.ListDeadLetters(adm.ListDeadLettersRequest(page_size=100))).dead_letters
        rejected = [m for m in messages if m.kind != "malformed" and unregistered.encode() in m.payload]
        malformed = [m for m in messages if m.kind == "malformed"]
        assert sorted(d.payload for d in dead) == sorted(m.payload for m in [*malformed, *rejected])
        assert {d.reason_code for d in dead if d.payload in {m.payload for m in rejected}} == {"UNKNOWN_METER"}
        assert all(d.head_end == "mqtt-north" for d in dead)

        readings = rs_grpc.ReadingServiceStub(channel)
        request = rs.ListIntervalBlocksRequest(page_size=1000, filter=rs.IntervalBlockFilter(
            meter_ids=["MQTT-000001", "MQTT-000002"]))
        request.filter.start_time.FromDatetime(START)
        request.filter.end_time.FromDatetime(START + timedelta(days=2))
        stored = (await readings.ListIntervalBlocks(request)).blocks
    assert stored
    stored_reads = 0
    for item in stored:
        block = item.block
        ends = block.first_interval_end_time.seconds + 900 * np.arange(len(block.values), dtype=np.int64)
        present = np.array([q & 1 == 0 for q in block.qualities] if block.qualities else [True] * len(ends))
        got = np.array(block.values)[present]
        assert got.tolist() == expected_values(block.meter_id, ends, 900)[present].tolist()
        stored_reads += int(present.sum())
    sent = {(b.meter_id, b.first_interval_end_time.seconds + 900 * i)
            for m in messages if m.kind == "good"
            for b in decode_payload(m.payload).interval_blocks
            if b.meter_id in ("MQTT-000001", "MQTT-000002") for i in range(len(b.values))}
    assert stored_reads == len(sent)
