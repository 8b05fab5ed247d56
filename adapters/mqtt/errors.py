"""Errors of the MQTT adapter.

Payload errors carry the dead-letter reason code on the class; connection
errors carry the MQTT reason code (CONNACK / SUBACK) where the broker sent one.
"""

from __future__ import annotations

from adapters.errors import AdapterError, ProtocolError, TransportError


class MqttError(AdapterError):
    """Root of the MQTT adapter's errors."""

    reason = "MQTT_ERROR"


class MqttConnectionError(TransportError):
    """The broker could not be reached, refused the connection or dropped it."""

    reason = "MQTT_CONNECTION_FAILED"


class MqttSubscribeRefused(MqttError):
    """The broker answered SUBSCRIBE with a failure reason code (e.g. 0x9E,
    shared subscriptions not supported)."""

    reason = "MQTT_SUBSCRIBE_REFUSED"

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message, metadata={"code": f"0x{code:02X}"})
        self.code = code


class MqttPayloadError(ProtocolError):
    """A message payload that cannot become a ReadingBatch; it goes to the
    dead-letter store with this reason code and the message."""

    reason = "MQTT_MALFORMED_PAYLOAD"


class PayloadTooLarge(MqttPayloadError):
    reason = "MQTT_PAYLOAD_TOO_LARGE"


class UnsupportedContentType(MqttPayloadError):
    reason = "MQTT_UNSUPPORTED_CONTENT_TYPE"


class ProtobufDecodeError(MqttPayloadError):
    """The bytes are not a meterhub.v1.ReadingBatch."""

    reason = "MQTT_BAD_PROTOBUF"


class JsonDecodeError(MqttPayloadError):
    """The bytes are not UTF-8 JSON."""

    reason = "MQTT_BAD_JSON"


class PayloadSchemaError(MqttPayloadError):
    """Well-formed protobuf or JSON that breaks the payload schema (missing or
    wrongly typed field, unknown name, inexact value)."""

    reason = "MQTT_SCHEMA_VIOLATION"
