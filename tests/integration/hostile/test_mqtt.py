"""Hostile payloads through a real Mosquitto into the hub's MQTT source.

Each refused payload must end as a dead letter in the store with its exact
reason, the adapter must keep its one connection (no crash, no reconnect loop),
and a good payload published right after the garbage must be stored.

An MQTT client receives a PUBLISH whole (paho reads the packet before anyone
can look at it), so an oversized payload is bounded on the way in only by the
broker's packet limit; what the hub bounds is what it keeps: the dead letter
holds an excerpt, not the flood.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine

from adapters.mqtt import MqttAdapter, create_adapter
from gateway.hub import Hub
from simulators.mqtt.broker import RunningBroker, mosquitto_broker
from tests.integration.hostile.conftest import (
    TEST_TIMEOUT_SECONDS,
    dead_letters,
    register_meters,
    running_hub,
    stored_intervals,
    stored_slots,
    wait_until,
)
from tests.support.batches import DAY, batch, interval_block

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(TEST_TIMEOUT_SECONDS)]

MAX_PAYLOAD = 64 * 1024
TOPIC = "hostile/north/readings"
FIRST_END = DAY + timedelta(minutes=15)


def good_protobuf(meter: str, value: int) -> bytes:
    return batch(interval_block(meter, FIRST_END, [value] * 96)).SerializeToString()


def good_json(meter: str, value: int) -> bytes:
    return json.dumps({"interval_blocks": [{
        "meter_id": meter, "first_interval_end": FIRST_END.isoformat(), "interval_seconds": 900,
        "reading_type": {"unit": "WATT_HOUR", "kind": "ACTIVE_ENERGY", "flow_direction": "DELIVERED",
                         "accumulation": "DELTA"},
        "values": [value] * 96}]}).encode()


@pytest.fixture
async def mosquitto() -> AsyncIterator[RunningBroker]:
    async with mosquitto_broker() as broker:
        yield broker


async def start_source(hub: Hub, broker: RunningBroker, protocol: str) -> MqttAdapter:
    """The hub's MQTT source, supervised by the hub like a configured one."""
    settings = {"type": "mqtt", "host": broker.host, "port": broker.port, "protocol": protocol,
                "topics": ["hostile/#"], "client_id": f"hub-{protocol}", "max_payload_bytes": MAX_PAYLOAD,
                "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.2}
    adapter = create_adapter("mqtt-north", settings, hub.port_for("mqtt-north", "mqtt"))
    hub.add_adapter("mqtt-north", adapter)
    await asyncio.wait_for(adapter.subscribed.wait(), 10)
    return adapter


async def publish(broker: RunningBroker, protocol: str, messages: list[tuple[bytes, str | None]]) -> None:
    """QoS 1, in order, each acknowledged by the broker; (payload, MQTT 5 content type)."""
    v5 = protocol == "5"
    client = aiomqtt.Client(broker.host, broker.port, identifier=f"hostile-publisher-{protocol}",
                            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
                            logger=logging.getLogger("hostile.publisher"))
    async with client:
        for payload, content_type in messages:
            properties = None
            if v5 and content_type is not None:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.ContentType = content_type
            await asyncio.wait_for(client.publish(TOPIC, payload, qos=1, properties=properties), 5)


# (name, payload, MQTT 5 content type, expected reason code); every payload is distinct.
HOSTILE: list[tuple[str, bytes, str | None, str]] = [
    ("garbage", b"\xff\xfe\x00garbage\x80\x80\x80", None, "MQTT_BAD_PROTOBUF"),
    ("truncated-protobuf", good_protobuf("MQTT-GOOD", 1)[:-9], None, "MQTT_BAD_PROTOBUF"),
    ("truncated-json", good_json("MQTT-GOOD", 2)[:-40], None, "MQTT_BAD_JSON"),
    ("json-nesting-bomb", b'{"interval_blocks": ' + b"[" * 50_000, None, "MQTT_BAD_JSON"),
    ("json-huge-integer", good_json("MQTT-GOOD", 3).replace(b"[3, ", b"[" + b"9" * 5000 + b", ", 1), None,
     "MQTT_BAD_JSON"),
    ("json-not-utf8", b'{"interval_blocks": "\xff\xfe"}', None, "MQTT_BAD_JSON"),
    ("json-wrong-shape", b'{"interval_blocks": [{"meter_id": 7}]}', None, "MQTT_SCHEMA_VIOLATION"),
    ("unknown-meter", good_protobuf("MQTT-STRANGER", 4), None, "UNKNOWN_METER"),
]
HOSTILE_V5: list[tuple[str, bytes, str | None, str]] = [
    ("wrong-content-type", good_json("MQTT-GOOD", 5), "text/html", "MQTT_UNSUPPORTED_CONTENT_TYPE"),
    ("json-labelled-protobuf", good_json("MQTT-GOOD", 6), "application/x-protobuf", "MQTT_BAD_PROTOBUF"),
    ("protobuf-labelled-json", good_protobuf("MQTT-GOOD", 8), "application/json", "MQTT_BAD_JSON"),
]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_hostile_payloads_are_dead_lettered_and_the_next_good_one_lands(
        tmp_path: Path, mosquitto: RunningBroker, protocol: str) -> None:
    cases = HOSTILE + (HOSTILE_V5 if protocol == "5" else [])
    async with running_hub(tmp_path) as hub:
        await register_meters(hub, ["MQTT-GOOD"])
        adapter = await start_source(hub, mosquitto, protocol)
        await publish(mosquitto, protocol, [(payload, ctype) for _, payload, ctype, _ in cases]
                      + [(good_protobuf("MQTT-GOOD", 7), None)])
        await wait_until(lambda: adapter.stats.acked == len(cases) + 1, what="every message acknowledged")
        stored = await stored_intervals(hub, "MQTT-GOOD")
        dead = dead_letters(hub)
        assert adapter.stats.connections == 1, "the source reconnected: a payload broke its connection"
        assert adapter.stats.store_failures == 0
    # Handled concurrently (max_in_flight), so dead letters are matched by their raw bytes.
    assert len(dead) == len(cases)
    by_payload = {d.payload: d for d in dead}
    by_name = {name: by_payload[payload] for name, payload, _, _ in cases}
    assert {name: d.reason_code for name, d in by_name.items()} == {name: code for name, _, _, code in cases}
    assert {(d.head_end, d.adapter_type) for d in dead} == {("mqtt-north", "mqtt")}
    assert all(d.reason.endswith(f"(topic {TOPIC})") for d in dead)
    assert "4300 digits" in by_name["json-huge-integer"].reason
    assert "RecursionError" in by_name["json-nesting-bomb"].reason
    assert "interval_blocks[0]: missing" in by_name["json-wrong-shape"].reason
    assert "MQTT-STRANGER" in by_name["unknown-meter"].reason
    assert len(stored) == 96 and set(stored.values()) == {7}


async def test_oversized_payload_is_refused_by_size_and_the_stream_goes_on(
        tmp_path: Path, mosquitto: RunningBroker) -> None:
    oversized = b"{" + b" " * (4 * MAX_PAYLOAD)
    async with running_hub(tmp_path) as hub:
        await register_meters(hub, ["MQTT-GOOD"])
        adapter = await start_source(hub, mosquitto, "5")
        await publish(mosquitto, "5", [(oversized, "application/json"), (good_json("MQTT-GOOD", 3), None)])
        await wait_until(lambda: adapter.stats.acked == 2, what="both messages acknowledged")
        stored = await stored_intervals(hub, "MQTT-GOOD")
        (dead,) = dead_letters(hub)
        assert adapter.stats.connections == 1
    assert dead.reason_code == "MQTT_PAYLOAD_TOO_LARGE"
    assert dead.reason == (f"payload of {len(oversized)} bytes exceeds max_payload_bytes {MAX_PAYLOAD}; "
                           f"first {MAX_PAYLOAD} bytes kept (topic {TOPIC})")
    # The store keeps evidence, not the whole oversized payload.
    assert dead.payload == oversized[:MAX_PAYLOAD]
    assert len(stored) == 96 and set(stored.values()) == {3}


def batch_json(**overrides: object) -> bytes:
    """A good JSON payload for MQTT-GOOD with fields of its first block (or the batch) replaced."""
    document = json.loads(good_json("MQTT-GOOD", 9))
    block = document["interval_blocks"][0]
    for key, value in overrides.items():
        if key in ("idempotency_key", "meter_events"):
            document[key] = value
        else:
            block[key] = value
    return json.dumps(document).encode()


# Well-formed payloads that ingest must refuse as such (a dead letter), not fail on as a store
# error: a store failure leaves the message unacknowledged, so the broker would redeliver it
# forever and the source would never get past it.
NOT_STORABLE: list[tuple[str, bytes, str | None, str, str]] = [
    ("before-1970", batch_json(first_interval_end="1969-12-31T00:15:00Z"), None, "MALFORMED_BATCH",
     "fall outside the storable range"),
    ("after-4707", batch_json(first_interval_end="9999-12-31T23:00:00Z"), None, "MALFORMED_BATCH",
     "fall outside the storable range"),
    ("long-idempotency-key", batch_json(idempotency_key="k" * 300), None, "MALFORMED_BATCH",
     "idempotency_key is longer than 256 characters"),
    ("long-cim-code", batch_json(reading_type={"unit": "WATT_HOUR", "cim_code": "0." * 40}), None,
     "MALFORMED_BATCH", "reading_type.cim_code is longer than 64 characters"),
    ("long-event-code", batch_json(meter_events=[{"meter_id": "MQTT-GOOD", "type": "TAMPER",
                                                  "event_time": "2026-11-01T00:00:00Z", "cim_code": "3." * 40}]),
     None, "MALFORMED_BATCH", "cim_code is longer than 64 characters"),
    ("long-content-type", b"{}", "application/" + "x" * 300, "MQTT_UNSUPPORTED_CONTENT_TYPE", "is neither protobuf"),
]


async def test_payloads_the_store_cannot_hold_are_refused_not_redelivered_forever(
        tmp_path: Path, mosquitto: RunningBroker, engine: Engine) -> None:
    async with running_hub(tmp_path, engine=engine) as hub:
        await register_meters(hub, ["MQTT-GOOD", "MQTT-VICTIM"])
        adapter = await start_source(hub, mosquitto, "5")
        # Another meter's data: channel-days used to be keyed channel * 10^6 + day, so a day
        # before 1970 folded into the previous channel's key, another meter's.
        await publish(mosquitto, "5", [(good_protobuf("MQTT-VICTIM", 4), None)])
        await wait_until(lambda: adapter.stats.acked == 1, what="the victim's data acknowledged")
        await publish(mosquitto, "5", [(payload, ctype) for _, payload, ctype, _, _ in NOT_STORABLE]
                      + [(good_protobuf("MQTT-GOOD", 7), None)])
        await wait_until(lambda: adapter.stats.acked == len(NOT_STORABLE) + 2, what="every message acknowledged")
        assert adapter.stats.store_failures == 0 and adapter.stats.connections == 1
        dead = {d.payload: d for d in dead_letters(hub)}
        good = await stored_intervals(hub, "MQTT-GOOD")
        victim = await stored_slots(hub, "MQTT-VICTIM")
    assert len(dead) == len(NOT_STORABLE)
    for name, payload, _, code, fragment in NOT_STORABLE:
        if name == "long-content-type":
            # The sender's label is clipped to the column, not allowed to fail the dead letter.
            assert len(dead[payload].content_type) == 128
        assert (dead[payload].reason_code, fragment in dead[payload].reason) == (code, True), name
    assert len(good) == 96 and set(good.values()) == {7}
    assert len(victim) == 96 and {v for v, _ in victim.values()} == {4}
