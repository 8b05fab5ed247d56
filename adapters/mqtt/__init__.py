"""MQTT source: head-ends that publish meterhub.v1.ReadingBatch (protobuf or
JSON) to a broker. See docs/mqtt.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.mqtt.config import MqttConfig
from adapters.mqtt.errors import (
    JsonDecodeError,
    MqttConnectionError,
    MqttError,
    MqttPayloadError,
    MqttSubscribeRefused,
    PayloadSchemaError,
    PayloadTooLarge,
    ProtobufDecodeError,
    UnsupportedContentType,
)
from adapters.mqtt.transport import AdapterStats, MqttAdapter, StoreFailure
from adapters.port import IngestPort


def create_adapter(name: str, config: Mapping[str, Any], port: IngestPort) -> MqttAdapter:
    """Entry point ``meterhub.adapters: mqtt``; raises ConfigError naming a bad key."""
    return MqttAdapter(MqttConfig.from_mapping(name, config), port)


__all__ = [
    "AdapterStats",
    "JsonDecodeError",
    "MqttAdapter",
    "MqttConfig",
    "MqttConnectionError",
    "MqttError",
    "MqttPayloadError",
    "MqttSubscribeRefused",
    "PayloadSchemaError",
    "PayloadTooLarge",
    "ProtobufDecodeError",
    "StoreFailure",
    "UnsupportedContentType",
    "create_adapter",
]
