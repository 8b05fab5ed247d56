"""MQTT payloads <-> meterhub.v1.ReadingBatch. Pure: no I/O.

A payload is either a serialized meterhub.v1.ReadingBatch (protobuf) or the
JSON shape documented in docs/mqtt.md. Anything else raises a subclass of
MqttPayloadError whose message says exactly what is wrong and where (a JSON
path such as ``interval_blocks[2].values[17]``); the adapter dead-letters the
raw bytes with that reason.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError, Message

from adapters.mqtt.config import PayloadFormat
from adapters.mqtt.errors import (
    JsonDecodeError,
    PayloadSchemaError,
    PayloadTooLarge,
    ProtobufDecodeError,
    UnsupportedContentType,
)
from meterhub.v1 import model_pb2 as pb

Format = Literal["protobuf", "json"]

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"
OCTET_STREAM = "application/octet-stream"
PROTOBUF_MEDIA_TYPES = frozenset({"application/x-protobuf", "application/protobuf", "application/vnd.google.protobuf"})
JSON_MEDIA_TYPES = frozenset({"application/json"})

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Matches gateway.ingest: more values than a year of 1-minute data is a mistake.
MAX_VALUES_PER_BLOCK = 527_040
MAX_DECIMAL_CHARS = 40
MAX_POWER_OF_TEN = 18
_DECIMAL_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])

# JSON enum names are the protobuf names without their prefix: "WATT_HOUR".
_READING_TYPE_ENUMS: dict[str, tuple[Any, str]] = {
    "commodity": (pb.Commodity, "COMMODITY_"),
    "kind": (pb.MeasurementKind, "MEASUREMENT_KIND_"),
    "unit": (pb.Unit, "UNIT_"),
    "flow_direction": (pb.FlowDirection, "FLOW_DIRECTION_"),
    "accumulation": (pb.Accumulation, "ACCUMULATION_"),
}
QUALITY_FLAGS: dict[str, int] = {
    name.removeprefix("QUALITY_FLAG_"): number
    for name, number in pb.QualityFlag.items() if number != pb.QUALITY_FLAG_UNSPECIFIED
}
_QUALITY_NAMES = {number: name for name, number in QUALITY_FLAGS.items()}


# -- choosing the decoder ----------------------------------------------------------


def media_type(content_type: str | None) -> str | None:
    """The lower-case media type of an MQTT 5 content-type, without parameters."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def payload_kind(payload: bytes, *, content_type: str | None, payload_format: PayloadFormat) -> Format:
    """Which decoder a payload needs: the MQTT 5 content type wins, then the
    configured format; ``auto`` sniffs (a protobuf ReadingBatch never starts
    with '{', which would be field 15 with the deprecated group wire type)."""
    media = media_type(content_type)
    if media in PROTOBUF_MEDIA_TYPES:
        return "protobuf"
    if media in JSON_MEDIA_TYPES:
        return "json"
    if media is not None and media != OCTET_STREAM:
        raise UnsupportedContentType(f"content type {content_type!r} is neither protobuf "
                                     f"({', '.join(sorted(PROTOBUF_MEDIA_TYPES))}) nor {JSON_CONTENT_TYPE}")
    if payload_format != "auto":
        return payload_format
    return "json" if payload.lstrip(b" \t\r\n")[:1] == b"{" else "protobuf"


def decode_payload(payload: bytes, *, content_type: str | None = None, payload_format: PayloadFormat = "auto",
                   max_bytes: int = 16 * 1024 * 1024) -> pb.ReadingBatch:
    """One MQTT payload as a ReadingBatch, or a MqttPayloadError subclass."""
    if len(payload) > max_bytes:
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds max_payload_bytes {max_bytes}")
    kind = payload_kind(payload, content_type=content_type, payload_format=payload_format)
    if kind == "protobuf":
        return decode_protobuf(payload)
    return decode_json(payload)


def dead_letter_content_type(payload: bytes, *, content_type: str | None, payload_format: PayloadFormat) -> str:
    """What to record as the content type of a rejected payload."""
    if content_type:
        return content_type
    if payload_format == "protobuf":
        return PROTOBUF_CONTENT_TYPE
    if payload_format == "json":
        return JSON_CONTENT_TYPE
    return JSON_CONTENT_TYPE if payload.lstrip(b" \t\r\n")[:1] == b"{" else OCTET_STREAM


# -- protobuf ------------------------------------------------------------------------


def decode_protobuf(payload: bytes) -> pb.ReadingBatch:
    batch = pb.ReadingBatch()
    try:
        batch.ParseFromString(payload)
    except (DecodeError, ValueError, RecursionError) as exc:
        raise ProtobufDecodeError(f"not a meterhub.v1.ReadingBatch: {exc}") from exc
    unknown = _first_unknown_field(batch, "ReadingBatch")
    if unknown is not None:
        # Random bytes often parse as unknown fields only; a real producer of
        # this schema never sends field numbers the schema lacks.
        raise ProtobufDecodeError(f"not a meterhub.v1.ReadingBatch: unknown field {unknown}")
    if not (batch.interval_blocks or batch.register_reads or batch.meter_events):
        raise PayloadSchemaError("ReadingBatch holds no interval_blocks, register_reads or meter_events")
    for index, block in enumerate(batch.interval_blocks):
        where = f"interval_blocks[{index}]"
        if not block.meter_id:
            raise PayloadSchemaError(f"{where}.meter_id is empty")
        if not block.values:
            raise PayloadSchemaError(f"{where} (meter {block.meter_id!r}) has no values")
        if not block.HasField("first_interval_end_time"):
            raise PayloadSchemaError(f"{where} (meter {block.meter_id!r}).first_interval_end_time is missing")
        if block.interval_seconds <= 0:
            raise PayloadSchemaError(f"{where} (meter {block.meter_id!r}).interval_seconds "
                                     f"{block.interval_seconds} is not positive")
    return batch


def _first_unknown_field(message: Message, path: str) -> str | None:
    fields = unknown_fields.UnknownFieldSet(message)
    if len(fields):
        return f"number {fields[0].field_number} in {path}"
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.message_type.GetOptions().map_entry:
            continue
        children = value if descriptor.is_repeated else [value]
        for index, child in enumerate(children):
            found = _first_unknown_field(child, f"{path}.{descriptor.name}[{index}]")
            if found is not None:
                return found
    return None


# -- JSON ----------------------------------------------------------------------------


def decode_json(payload: bytes) -> pb.ReadingBatch:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonDecodeError(f"payload is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        document = json.loads(text, parse_float=decimal.Decimal, parse_constant=_reject_constant,
                              object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise JsonDecodeError(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except _NotStrictJson as exc:
        raise JsonDecodeError(f"payload is not JSON for this schema: {exc}") from exc
    except (RecursionError, ValueError) as exc:
        # RecursionError: absurd nesting; ValueError: integers past Python's digit limit.
        raise JsonDecodeError(f"payload is not usable JSON: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return batch_from_json(document)


class _NotStrictJson(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _NotStrictJson(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:  # json hook signature
    raise _NotStrictJson(f"{name} is not a number")


def batch_from_json(document: object) -> pb.ReadingBatch:
    """The documented JSON shape (already parsed) as a ReadingBatch."""
    root = _object(document, "$", required=(), optional=(
        "idempotency_key", "interval_blocks", "register_reads", "meter_events"))
    batch = pb.ReadingBatch()
    if "idempotency_key" in root:
        batch.idempotency_key = _string(root["idempotency_key"], "idempotency_key", allow_empty=True)
    blocks = _array(root.get("interval_blocks", []), "interval_blocks")
    reads = _array(root.get("register_reads", []), "register_reads")
    events = _array(root.get("meter_events", []), "meter_events")
    if not (blocks or reads or events):
        raise PayloadSchemaError("$: no interval_blocks, register_reads or meter_events")
    for index, item in enumerate(blocks):
        _block_from_json(item, f"interval_blocks[{index}]", batch.interval_blocks.add())
    for index, item in enumerate(reads):
        _register_from_json(item, f"register_reads[{index}]", batch.register_reads.add())
    for index, item in enumerate(events):
        _event_from_json(item, f"meter_events[{index}]", batch.meter_events.add())
    return batch


def _block_from_json(item: object, where: str, block: pb.IntervalBlock) -> None:
    obj = _object(item, where, required=("meter_id", "reading_type", "first_interval_end", "interval_seconds",
                                         "values"),
                  optional=("qualities", "meter_multiplier_applied"))
    block.meter_id = _string(obj["meter_id"], f"{where}.meter_id")
    _reading_type_from_json(obj["reading_type"], f"{where}.reading_type", block.reading_type)
    _timestamp(obj["first_interval_end"], f"{where}.first_interval_end", block.first_interval_end_time)
    interval = _integer(obj["interval_seconds"], f"{where}.interval_seconds", low=1, high=86_400)
    block.interval_seconds = interval
    multiplier = block.reading_type.power_of_ten_multiplier
    raw_values = _array(obj["values"], f"{where}.values")
    if not raw_values:
        raise PayloadSchemaError(f"{where}.values is empty")
    if len(raw_values) > MAX_VALUES_PER_BLOCK:
        raise PayloadSchemaError(f"{where}.values: {len(raw_values)} values exceed {MAX_VALUES_PER_BLOCK}")
    if all(type(v) is int for v in raw_values):
        # The common case, checked on the whole list at once.
        if min(raw_values) < INT64_MIN or max(raw_values) > INT64_MAX:
            bad = next(i for i, v in enumerate(raw_values) if not INT64_MIN <= v <= INT64_MAX)
            raise PayloadSchemaError(f"{where}.values[{bad}]: {raw_values[bad]} does not fit in 64 bits")
        block.values.extend(raw_values)
    else:
        block.values.extend([_count(v, f"{where}.values[{i}]", multiplier) for i, v in enumerate(raw_values)])
    if "qualities" in obj:
        raw_qualities = _array(obj["qualities"], f"{where}.qualities")
        if len(raw_qualities) != len(raw_values):
            raise PayloadSchemaError(f"{where}.qualities has {len(raw_qualities)} entries for "
                                     f"{len(raw_values)} values")
        block.qualities.extend(_quality(q, f"{where}.qualities[{i}]") for i, q in enumerate(raw_qualities))
    if "meter_multiplier_applied" in obj:
        block.meter_multiplier_applied = _boolean(obj["meter_multiplier_applied"],
                                                  f"{where}.meter_multiplier_applied")


def _register_from_json(item: object, where: str, read: pb.RegisterRead) -> None:
    obj = _object(item, where, required=("meter_id", "reading_type", "read_time", "value"),
                  optional=("quality", "meter_multiplier_applied"))
    read.meter_id = _string(obj["meter_id"], f"{where}.meter_id")
    _reading_type_from_json(obj["reading_type"], f"{where}.reading_type", read.reading_type)
    _timestamp(obj["read_time"], f"{where}.read_time", read.read_time)
    read.value = _count(obj["value"], f"{where}.value", read.reading_type.power_of_ten_multiplier)
    if "quality" in obj:
        read.quality = _quality(obj["quality"], f"{where}.quality")
    if "meter_multiplier_applied" in obj:
        read.meter_multiplier_applied = _boolean(obj["meter_multiplier_applied"], f"{where}.meter_multiplier_applied")


def _event_from_json(item: object, where: str, event: pb.MeterEvent) -> None:
    obj = _object(item, where, required=("meter_id", "type", "event_time"), optional=("cim_code", "details"))
    event.meter_id = _string(obj["meter_id"], f"{where}.meter_id")
    event.type = _enum(obj["type"], f"{where}.type", pb.MeterEventType, "METER_EVENT_TYPE_")  # type: ignore[assignment]
    _timestamp(obj["event_time"], f"{where}.event_time", event.event_time)
    if "cim_code" in obj:
        event.cim_code = _string(obj["cim_code"], f"{where}.cim_code", allow_empty=True)
    if "details" in obj:
        details = obj["details"]
        if not isinstance(details, dict):
            raise _wrong_type(f"{where}.details", details, "an object of strings")
        for key, value in details.items():
            event.details[key] = _string(value, f"{where}.details.{key}", allow_empty=True)


def _reading_type_from_json(item: object, where: str, rt: pb.ReadingType) -> None:
    obj = _object(item, where, required=("unit",), optional=(
        *_READING_TYPE_ENUMS, "power_of_ten_multiplier", "cim_code", "device_channel"))
    for key, (enum, prefix) in _READING_TYPE_ENUMS.items():
        if key in obj:
            setattr(rt, key, _enum(obj[key], f"{where}.{key}", enum, prefix))
    if "power_of_ten_multiplier" in obj:
        rt.power_of_ten_multiplier = _integer(obj["power_of_ten_multiplier"], f"{where}.power_of_ten_multiplier",
                                              low=-MAX_POWER_OF_TEN, high=MAX_POWER_OF_TEN)
    if "cim_code" in obj:
        rt.cim_code = _string(obj["cim_code"], f"{where}.cim_code", allow_empty=True)
    if "device_channel" in obj:
        rt.device_channel = _string(obj["device_channel"], f"{where}.device_channel", allow_empty=True)


# -- JSON leaves -----------------------------------------------------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, decimal.Decimal):
        return "fractional number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _wrong_type(where: str, value: object, expected: str) -> PayloadSchemaError:
    return PayloadSchemaError(f"{where}: expected {expected}, got {_json_type(value)}")


def _object(value: object, where: str, *, required: Sequence[str], optional: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _wrong_type(where, value, "an object")
    missing = [key for key in required if key not in value]
    if missing:
        raise PayloadSchemaError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise PayloadSchemaError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}")
    return value


def _array(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong_type(where, value, "an array")
    return value


def _string(value: object, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _wrong_type(where, value, "a string")
    if not value and not allow_empty:
        raise PayloadSchemaError(f"{where} is empty")
    return value


def _boolean(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(where, value, "true or false")
    return value


def _integer(value: object, where: str, *, low: int, high: int) -> int:
    if type(value) is not int:
        raise _wrong_type(where, value, "an integer")
    if not low <= value <= high:
        raise PayloadSchemaError(f"{where}: {value} is outside {low}..{high}")
    return value


def _enum(value: object, where: str, enum: Any, prefix: str) -> int:  # protobuf enum wrapper
    name = _string(value, where)
    names: list[str] = list(enum.keys())  # an EnumTypeWrapper, not a dict
    if name == "UNSPECIFIED" or prefix + name not in names:
        known = ", ".join(n.removeprefix(prefix) for n in names if not n.endswith("_UNSPECIFIED"))
        raise PayloadSchemaError(f"{where}: unknown name {name!r} (one of {known})")
    number: int = enum.Value(prefix + name)
    return number


def _count(value: object, where: str, multiplier: int) -> int:
    """An integer count, or a decimal string in the reading type's unit turned
    into an exact count of unit x 10^multiplier (inexact is an error)."""
    if type(value) is int:
        count = value
    elif isinstance(value, str):
        if len(value) > MAX_DECIMAL_CHARS or not _DECIMAL_RE.fullmatch(value):
            raise PayloadSchemaError(f"{where}: {value[:MAX_DECIMAL_CHARS]!r} is not a decimal string "
                                     f"like \"-12.345\"")
        scaled = _EXACT.scaleb(decimal.Decimal(value), -multiplier)
        if scaled != scaled.to_integral_value():
            raise PayloadSchemaError(f"{where}: {value} is not a whole multiple of 10^{multiplier} "
                                     f"(the reading type's resolution)")
        count = int(scaled)
    else:
        raise _wrong_type(where, value, "an integer or a decimal string (fractional JSON numbers are not exact)")
    if not INT64_MIN <= count <= INT64_MAX:
        raise PayloadSchemaError(f"{where}: {value} does not fit in 64 bits")
    return count


def _quality(value: object, where: str) -> int:
    names = _array(value, where)
    bits = 0
    for index, name in enumerate(names):
        if not isinstance(name, str) or name not in QUALITY_FLAGS:
            shown = name if isinstance(name, str) else _json_type(name)
            raise PayloadSchemaError(f"{where}[{index}]: {shown!r} is not a quality flag name "
                                     f"(e.g. ESTIMATED, MISSING, POWER_FAIL)")
        bits |= QUALITY_FLAGS[name]
    return bits


def _timestamp(value: object, where: str, target: Any) -> None:  # a protobuf Timestamp
    text = _string(value, where)
    if not _RFC3339_RE.fullmatch(text):
        raise PayloadSchemaError(f"{where}: {text[:40]!r} is not an RFC 3339 time with an offset "
                                 f"(\"2026-11-01T00:15:00Z\")")
    fraction = re.search(r"\.([0-9]+)", text)
    try:
        # fromisoformat keeps microseconds only; nanoseconds come from the text.
        moment = datetime.fromisoformat(re.sub(r"\.[0-9]+", "", text).upper())
    except ValueError as exc:
        raise PayloadSchemaError(f"{where}: {text!r} is not a valid time: {exc}") from exc
    delta = moment - _EPOCH
    target.seconds = delta.days * 86_400 + delta.seconds
    target.nanos = int(fraction.group(1).ljust(9, "0")) if fraction else 0


# -- encoding (the simulator's side, and round-trip tests) -----------------------------


def batch_to_json(batch: pb.ReadingBatch) -> bytes:
    """The documented JSON shape of a batch; ``decode_json`` inverts it exactly."""
    document: dict[str, Any] = {}
    if batch.idempotency_key:
        document["idempotency_key"] = batch.idempotency_key
    if batch.interval_blocks:
        document["interval_blocks"] = [_block_to_json(b) for b in batch.interval_blocks]
    if batch.register_reads:
        document["register_reads"] = [{
            "meter_id": r.meter_id, "reading_type": _reading_type_to_json(r.reading_type),
            "read_time": _time_to_json(r.read_time), "value": r.value,
            "quality": _quality_names(r.quality), "meter_multiplier_applied": r.meter_multiplier_applied,
        } for r in batch.register_reads]
    if batch.meter_events:
        document["meter_events"] = [{
            "meter_id": e.meter_id, "type": pb.MeterEventType.Name(e.type).removeprefix("METER_EVENT_TYPE_"),
            "event_time": _time_to_json(e.event_time), "cim_code": e.cim_code, "details": dict(e.details),
        } for e in batch.meter_events]
    return json.dumps(document, separators=(",", ":")).encode()


def _block_to_json(block: pb.IntervalBlock) -> dict[str, Any]:
    out: dict[str, Any] = {
        "meter_id": block.meter_id,
        "reading_type": _reading_type_to_json(block.reading_type),
        "first_interval_end": _time_to_json(block.first_interval_end_time),
        "interval_seconds": block.interval_seconds,
        "values": list(block.values),
    }
    if block.qualities:
        out["qualities"] = [_quality_names(q) for q in block.qualities]
    if block.meter_multiplier_applied:
        out["meter_multiplier_applied"] = True
    return out


def _reading_type_to_json(rt: pb.ReadingType) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (enum, prefix) in _READING_TYPE_ENUMS.items():
        number = getattr(rt, key)
        if number or key == "unit":
            out[key] = enum.Name(number).removeprefix(prefix)
    out["power_of_ten_multiplier"] = rt.power_of_ten_multiplier
    if rt.cim_code:
        out["cim_code"] = rt.cim_code
    if rt.device_channel:
        out["device_channel"] = rt.device_channel
    return out


def _quality_names(bits: int) -> list[str]:
    return [name for number, name in sorted(_QUALITY_NAMES.items()) if bits & number]


def _time_to_json(ts: Any) -> str:  # a protobuf Timestamp
    text: str = ts.ToJsonString()
    return text


__all__: list[str] = [
    "JSON_CONTENT_TYPE", "PROTOBUF_CONTENT_TYPE", "QUALITY_FLAGS", "batch_from_json", "batch_to_json",
    "dead_letter_content_type", "decode_json", "decode_payload", "decode_protobuf", "media_type", "payload_kind",
]
