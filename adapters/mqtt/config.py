"""Configuration of an MQTT source: one [sources.<name>] table of hub.toml.

Every key, its type and default is listed in docs/mqtt.md; ``from_mapping``
rejects unknown keys and wrong types with a ConfigError naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.errors import ConfigError

PayloadFormat = Literal["protobuf", "json", "auto"]
ProtocolName = Literal["5", "3.1.1"]

DEFAULT_TOPIC = "meterhub/+/readings"
PAYLOAD_FORMATS: tuple[PayloadFormat, ...] = ("protobuf", "json", "auto")
PROTOCOLS: tuple[ProtocolName, ...] = ("5", "3.1.1")
# MQTT 5 Receive Maximum is a two-byte integer.
MAX_RECEIVE_MAXIMUM = 65_535
# An MQTT packet cannot carry more than 256 MiB.
MAX_PACKET_BYTES = 268_435_455


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """A validated MQTT source configuration."""

    name: str
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: ProtocolName = "5"
    topics: tuple[str, ...] = (DEFAULT_TOPIC,)
    share_group: str | None = None
    client_id: str = ""
    clean_start: bool = False
    session_expiry_seconds: int = 86_400
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    payload_format: PayloadFormat = "auto"
    max_in_flight: int = 32
    max_payload_bytes: int = 16 * 1024 * 1024
    keepalive_seconds: int = 30
    connect_timeout_seconds: float = 10.0
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Topic filters as sent in SUBSCRIBE ($share/<group>/ prefixed when shared)."""
        if self.share_group is None:
            return self.topics
        return tuple(f"$share/{self.share_group}/{topic}" for topic in self.topics)

    def __repr__(self) -> str:
        # Never show the password, not even in a traceback.
        return (f"MqttConfig(name={self.name!r}, host={self.host!r}, port={self.port}, protocol={self.protocol!r}, "
                f"topics={self.topics!r}, share_group={self.share_group!r}, client_id={self.client_id!r})")

    @classmethod
    def from_mapping(cls, name: str, settings: Mapping[str, Any]) -> MqttConfig:
        reader = _Reader(name, settings)
        protocol = reader.choice("protocol", PROTOCOLS, "5")
        topics = reader.topics()
        share_group = reader.optional_str("share_group")
        if share_group is not None:
            if protocol != "5":
                raise ConfigError(f"source {name!r}: share_group needs protocol \"5\" (shared subscriptions are "
                                  f"MQTT 5), but protocol is {protocol!r}")
            if not share_group or any(c in share_group for c in "/+#"):
                raise ConfigError(f"source {name!r}: share_group {share_group!r} must be non-empty and free of "
                                  f"'/', '+' and '#'")
        username = reader.optional_str("username")
        password = reader.password()
        min_backoff = reader.number("reconnect_min_seconds", 0.5, low=0.01)
        max_backoff = reader.number("reconnect_max_seconds", 30.0, low=0.01)
        if max_backoff < min_backoff:
            raise ConfigError(f"source {name!r}: reconnect_max_seconds {max_backoff} is below "
                              f"reconnect_min_seconds {min_backoff}")
        tls = reader.boolean("tls", False)
        ca_file = reader.optional_str("ca_file")
        if ca_file is not None and not tls:
            raise ConfigError(f"source {name!r}: ca_file is set but tls is false")
        config = cls(
            name=name,
            host=reader.string("host", "127.0.0.1"),
            port=reader.integer("port", 1883, low=1, high=65_535),
            protocol=protocol,
            topics=topics,
            share_group=share_group,
            client_id=reader.string("client_id", f"meterhub-{name}"),
            clean_start=reader.boolean("clean_start", False),
            session_expiry_seconds=reader.integer("session_expiry_seconds", 86_400, low=0, high=0xFFFFFFFF),
            username=username,
            password=password,
            tls=tls,
            ca_file=ca_file,
            payload_format=reader.choice("payload_format", PAYLOAD_FORMATS, "auto"),
            max_in_flight=reader.integer("max_in_flight", 32, low=1, high=MAX_RECEIVE_MAXIMUM),
            max_payload_bytes=reader.integer("max_payload_bytes", 16 * 1024 * 1024, low=1, high=MAX_PACKET_BYTES),
            keepalive_seconds=reader.integer("keepalive_seconds", 30, low=1, high=65_535),
            connect_timeout_seconds=reader.number("connect_timeout_seconds", 10.0, low=0.1),
            reconnect_min_seconds=min_backoff,
            reconnect_max_seconds=max_backoff,
        )
        reader.reject_unknown()
        return config


class _Reader:
    """Reads typed keys from a settings table and remembers which it consumed."""

    KNOWN_ELSEWHERE = frozenset({"type"})

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = settings
        self.used: set[str] = set(self.KNOWN_ELSEWHERE)

    def _get(self, key: str) -> Any:  # TOML values are untyped
        self.used.add(key)
        return self.settings.get(key)

    def _fail(self, key: str, value: object, expected: str) -> ConfigError:
        return ConfigError(f"source {self.name!r}: {key} = {value!r} is invalid: expected {expected}")

    def string(self, key: str, default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._fail(key, value, "a non-empty string")
        return value

    def optional_str(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, value, "a string")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, value, "true or false")
        return value

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._fail(key, value, f"an integer from {low} to {high}")
        return value

    def number(self, key: str, default: float, *, low: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise self._fail(key, value, f"a number of at least {low}")
        return float(value)

    def choice(self, key: str, allowed: tuple[Any, ...], default: Any) -> Any:  # a Literal
        value = self._get(key)
        if value is None:
            return default
        if value not in allowed:
            raise self._fail(key, value, "one of " + ", ".join(f'"{a}"' for a in allowed))
        return value

    def topics(self) -> tuple[str, ...]:
        value = self._get("topics")
        if value is None:
            return (DEFAULT_TOPIC,)
        if not isinstance(value, list | tuple) or not value:
            raise self._fail("topics", value, "a non-empty list of topic filters")
        for topic in value:
            if not isinstance(topic, str) or not _valid_filter(topic):
                raise self._fail("topics", topic, "a topic filter ('+' and '#' only as whole levels, '#' last, "
                                                  "no '$share/' prefix: use share_group)")
        return tuple(value)

    def password(self) -> str | None:
        """The password comes from the environment or a file, never from hub.toml itself."""
        env = self.optional_str("password_env")
        path = self.optional_str("password_file")
        if "password" in self.settings:
            self.used.add("password")
            raise ConfigError(f"source {self.name!r}: put the password in an environment variable (password_env) "
                              f"or a file (password_file), not in the config")
        if env is not None and path is not None:
            raise ConfigError(f"source {self.name!r}: set password_env or password_file, not both")
        if env is not None:
            secret = os.environ.get(env)
            if secret is None:
                raise ConfigError(f"source {self.name!r}: password_env names {env!r}, which is not set")
            return secret
        if path is not None:
            try:
                return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"source {self.name!r}: password_file {path!r} cannot be read: "
                                  f"{exc.strerror}") from exc
        return None

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.settings) - self.used)
        if unknown:
            raise ConfigError(f"source {self.name!r}: unknown key(s) {', '.join(unknown)} for an mqtt source "
                              f"(see docs/mqtt.md)")


def _valid_filter(topic: str) -> bool:
    if not topic or topic.startswith("$share/") or "\x00" in topic:
        return False
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True
