"""Payload decoding: protobuf and the documented JSON shape, and garbage."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.mqtt.errors import (
    JsonDecodeError,
    MqttPayloadError,
    PayloadSchemaError,
    PayloadTooLarge,
    ProtobufDecodeError,
    UnsupportedContentType,
)
from adapters.mqtt.normalize import batch_to_json, decode_json, decode_payload, decode_protobuf, payload_kind
from meterhub.v1 import model_pb2 as pb
from tests.support.batches import DAY, batch, interval_block


def sample_batch() -> pb.ReadingBatch:
    b = batch(interval_block("MQTT-000001", DAY.replace(minute=15), [1, 2, 3], qualities=[0, 2, 8 | 16]),
              interval_block("MQTT-000002", DAY.replace(minute=15), [7, -4, 2**62]), key="k-1")
    b.ClearField("source")  # the hub stamps the source; payloads do not carry it
    rr = b.register_reads.add(meter_id="MQTT-000001", value=123456, quality=2)
    rr.reading_type.CopyFrom(b.interval_blocks[0].reading_type)
    rr.read_time.FromDatetime(DAY)
    ev = b.meter_events.add(meter_id="MQTT-000001", type=pb.METER_EVENT_TYPE_POWER_FAIL, cim_code="3.26.38.185")
    ev.event_time.FromDatetime(DAY)
    ev.details["phase"] = "L1"
    return b


def json_block(**overrides: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "meter_id": "M1",
        "reading_type": {"commodity": "ELECTRICITY", "kind": "ACTIVE_ENERGY", "unit": "WATT_HOUR",
                         "flow_direction": "DELIVERED", "accumulation": "DELTA", "power_of_ten_multiplier": -3},
        "first_interval_end": "2026-11-01T01:15:00+01:00",
        "interval_seconds": 900,
        "values": [1, "1.234", "-0.5"],
    }
    block.update(overrides)
    return block


def json_payload(*blocks: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"interval_blocks": list(blocks), **top}).encode()


def test_protobuf_round_trip() -> None:
    original = sample_batch()
    assert decode_protobuf(original.SerializeToString()) == original


def test_json_round_trip_is_exact() -> None:
    original = sample_batch()
    assert decode_json(batch_to_json(original)) == original


def test_json_decimal_strings_become_exact_counts_and_times_become_utc() -> None:
    got = decode_json(json_payload(json_block(qualities=[[], ["ESTIMATED"], ["POWER_FAIL", "CLOCK_SET"]])))
    block = got.interval_blocks[0]
    # Values in Wh with resolution 10^-3 Wh.
    assert list(block.values) == [1, 1234, -500]
    assert list(block.qualities) == [0, pb.QUALITY_FLAG_ESTIMATED, pb.QUALITY_FLAG_POWER_FAIL | pb.QUALITY_FLAG_CLOCK_SET]
    assert block.first_interval_end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 1, 0, 15, tzinfo=UTC)
    assert block.reading_type.unit == pb.UNIT_WATT_HOUR and block.reading_type.power_of_ten_multiplier == -3


def test_json_fractional_seconds_keep_nanoseconds() -> None:
    got = decode_json(json_payload(json_block(first_interval_end="2026-11-01T00:15:00.123456789Z")))
    assert got.interval_blocks[0].first_interval_end_time.nanos == 123456789


@pytest.mark.parametrize(("block", "error", "fragment"), [
    (json_block(values=[1, 1.5]), PayloadSchemaError, "interval_blocks[0].values[1]: expected an integer or a "
                                                      "decimal string"),
    (json_block(values=[True]), PayloadSchemaError, "interval_blocks[0].values[0]: expected an integer"),
    (json_block(values=["1.2345"]), PayloadSchemaError, "1.2345 is not a whole multiple of 10^-3"),
    (json_block(values=["1e3"]), PayloadSchemaError, "is not a decimal string"),
    (json_block(values=[2**63]), PayloadSchemaError, "does not fit in 64 bits"),
    (json_block(values=[]), PayloadSchemaError, "interval_blocks[0].values is empty"),
    (json_block(first_interval_end="2026-11-01T00:15:00"), PayloadSchemaError, "RFC 3339 time with an offset"),
    (json_block(first_interval_end="2026-13-01T00:15:00Z"), PayloadSchemaError, "is not a valid time"),
    (json_block(interval_seconds="900"), PayloadSchemaError, "interval_seconds: expected an integer, got string"),
    (json_block(qualities=[["ESTIMATED"]]), PayloadSchemaError, "qualities has 1 entries for 3 values"),
    (json_block(qualities=[[], ["NICE"], []]), PayloadSchemaError, "qualities[1][0]: 'NICE' is not a quality flag"),
    (json_block(colour="red"), PayloadSchemaError, "interval_blocks[0]: unknown key(s) 'colour'"),
    (json_block(reading_type={"unit": "FURLONG"}), PayloadSchemaError, "reading_type.unit: unknown name 'FURLONG'"),
    (json_block(reading_type={"kind": "ACTIVE_ENERGY"}), PayloadSchemaError, "reading_type: missing unit"),
    (json_block(meter_id=""), PayloadSchemaError, "interval_blocks[0].meter_id is empty"),
])
def test_json_schema_violations_name_the_place(block: dict[str, Any], error: type[MqttPayloadError],
                                               fragment: str) -> None:
    with pytest.raises(error) as caught:
        decode_json(json_payload(block))
    assert fragment in caught.value.message
    assert caught.value.reason == "MQTT_SCHEMA_VIOLATION"


@pytest.mark.parametrize(("payload", "error", "fragment"), [
    (b"\xff\xfe{", JsonDecodeError, "not UTF-8"),
    (b"{\"interval_blocks\": [", JsonDecodeError, "not JSON"),
    (b"{\"a\": 1, \"a\": 2}", JsonDecodeError, "duplicate key 'a'"),
    (b"{\"interval_blocks\": [NaN]}", JsonDecodeError, "NaN is not a number"),
    (b"[" * 100_000 + b"]" * 100_000, JsonDecodeError, "RecursionError"),
    (b"[1]", PayloadSchemaError, "$: expected an object, got array"),
    (b"{}", PayloadSchemaError, "no interval_blocks, register_reads or meter_events"),
])
def test_bad_json(payload: bytes, error: type[MqttPayloadError], fragment: str) -> None:
    with pytest.raises(error) as caught:
        decode_json(payload)
    assert fragment in caught.value.message


def test_bad_protobuf() -> None:
    with pytest.raises(ProtobufDecodeError, match="Error parsing"):
        decode_protobuf(b"\xff\x00\x01")
    with pytest.raises(ProtobufDecodeError, match="unknown field number 15 in ReadingBatch"):
        decode_protobuf(b"\x78\x01")
    block_with_unknown = pb.IntervalBlock(meter_id="M").SerializeToString() + b"\x78\x01"
    with pytest.raises(ProtobufDecodeError, match=r"number 15 in ReadingBatch.interval_blocks\[0\]"):
        decode_protobuf(b"\x1a" + bytes([len(block_with_unknown)]) + block_with_unknown)
    nested = pb.ReadingBatch(interval_blocks=[pb.IntervalBlock(meter_id="M")]).SerializeToString()
    with pytest.raises(PayloadSchemaError, match="holds no interval_blocks"):
        decode_protobuf(b"")
    with pytest.raises(PayloadSchemaError, match="has no values"):
        decode_protobuf(nested)


def test_content_type_and_format_choose_the_decoder() -> None:
    proto = sample_batch().SerializeToString()
    js = batch_to_json(sample_batch())
    assert payload_kind(js, content_type="application/json; charset=utf-8", payload_format="protobuf") == "json"
    assert payload_kind(proto, content_type="application/x-protobuf", payload_format="json") == "protobuf"
    assert payload_kind(js, content_type=None, payload_format="auto") == "json"
    assert payload_kind(proto, content_type="application/octet-stream", payload_format="auto") == "protobuf"
    assert payload_kind(js, content_type=None, payload_format="protobuf") == "protobuf"
    with pytest.raises(UnsupportedContentType, match="'text/csv'"):
        decode_payload(b"a,b", content_type="text/csv")
    with pytest.raises(PayloadTooLarge, match="payload of 11 bytes exceeds max_payload_bytes 10"):
        decode_payload(b"x" * 11, max_bytes=10)
    with pytest.raises(ProtobufDecodeError):
        decode_payload(js, payload_format="protobuf")


@given(st.binary(max_size=400))
@settings(max_examples=400, deadline=None)
def test_garbage_bytes_end_in_payload_error(payload: bytes) -> None:
    for fmt in ("auto", "protobuf", "json"):
        with contextlib.suppress(MqttPayloadError):
            decode_payload(payload, payload_format=fmt)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["interval_blocks", "meter_id", "values", "reading_type", "unit", "first_interval_end",
                         "interval_seconds", "qualities", "register_reads", "meter_events", "x"]), children,
        max_size=5),
    max_leaves=30)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_garbage_json_ends_in_payload_error(document: object) -> None:
    with contextlib.suppress(MqttPayloadError):
        decode_json(json.dumps(document).encode())


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_mutated_valid_payloads_end_in_payload_error_or_a_batch(data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from([sample_batch().SerializeToString(),
                                                    batch_to_json(sample_batch())])))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(original) - 1))
        original[index] = data.draw(st.integers(0, 255))
    try:
        got = decode_payload(bytes(original))
    except MqttPayloadError:
        return
    assert isinstance(got, pb.ReadingBatch)
