"""The validated configuration of one MultiSpeak head-end source (a [sources.<name>] table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError

LP_FORMATS = ("intervalData", "formattedBlock")
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CALLBACK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MultiSpeakConfig:
    # MR_Server endpoint of the head-end (http:// or https://).
    url: str
    # Meters to read, as the head-end names them.
    meters: tuple[str, ...]
    user: str = ""
    password: str = field(default="", repr=False)
    app_name: str = "meterhub"
    app_version: str = "0.1.0"
    company: str = ""
    interval_minutes: int = 15
    # First interval to read when the hub has nothing stored for a channel (UTC).
    start: datetime | None = None
    backfill_days: int = 2
    # Do not read beyond this instant (UTC); None reads up to now.
    end: datetime | None = None
    poll_interval_seconds: float = 300.0
    # Days of load profile asked per request (the head-end pages within with lastReceived).
    request_days: int = 1
    lp_format: str = "intervalData"
    poll_registers: bool = True
    # Asynchronous reads: InitiateMeterReadingsByMeterID every N seconds (0 = off); the
    # head-end answers on the callback endpoint the hub hosts.
    initiate_interval_seconds: float = 0.0
    initiate_batch_size: int = 100
    transaction_expiry_seconds: float = 600.0
    callback_listen: str = ""
    callback_url: str = ""
    callback_user: str = ""
    callback_password: str = field(default="", repr=False)
    callback_tls_cert_file: str = ""
    callback_tls_key_file: str = ""
    # Connections the callback endpoint serves at once; more get HTTP 503 without being read.
    callback_max_connections: int = 64
    timeout_seconds: float = 30.0
    max_retries: int = 3
    retry_backoff_seconds: float = 0.5
    retry_backoff_max_seconds: float = 30.0
    max_concurrency: int = 4
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_callback_bytes: int = DEFAULT_MAX_CALLBACK_BYTES
    tls_verify: bool = True
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Resolution of the counts we emit: values are integer counts of the base unit x 10^value_exponent,
    # finer when a value carries more decimals.
    value_exponent: int = 0

    @property
    def interval_seconds(self) -> int:
        return self.interval_minutes * 60

    def first_read_start(self, now: datetime) -> datetime:
        if self.start is not None:
            return self.start
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=self.backfill_days)

    @property
    def callback_host_port(self) -> tuple[str, int]:
        host, _, port = self.callback_listen.rpartition(":")
        return host.strip("[]"), int(port)


_KNOWN = {f for f in MultiSpeakConfig.__dataclass_fields__} | {
    "type", "password_env", "password_file", "callback_password_env", "callback_password_file"}


def _secret(raw: Mapping[str, Any], key: str) -> str:
    given = [k for k in (key, f"{key}_env", f"{key}_file") if raw.get(k) not in (None, "")]
    if len(given) > 1:
        raise ConfigError(f"give only one of {', '.join(given)}", metadata={"key": given[1]})
    if not given:
        return ""
    which = given[0]
    value = raw[which]
    if not isinstance(value, str):
        raise ConfigError(f"{which} must be a string", metadata={"key": which})
    if which.endswith("_env"):
        if value not in os.environ:
            raise ConfigError(f"{which}: environment variable {value!r} is not set", metadata={"key": which})
        return os.environ[value]
    if which.endswith("_file"):
        try:
            return Path(value).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{which}: cannot read {value!r} ({exc.strerror})", metadata={"key": which}) from exc
    return value


def _time(raw: Mapping[str, Any], key: str) -> datetime | None:
    value = raw.get(key)
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {value!r} is not an ISO 8601 time", metadata={"key": key}) from exc
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{key} must be a time with a UTC offset, got {value!r}", metadata={"key": key})
    return value.astimezone(UTC)


def _typed(raw: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = raw.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {kind.__name__}, got {value!r}", metadata={"key": key})
    return value


def _url(value: str, key: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key} must be an http:// or https:// URL, got {value!r}", metadata={"key": key})
    return value


def parse_config(raw: Mapping[str, Any]) -> MultiSpeakConfig:
    """Validate a source table; raises ConfigError naming the wrong key and value."""
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} for a multispeak source", metadata={"key": unknown[0]})
    d = MultiSpeakConfig.__dataclass_fields__
    url = raw.get("url")
    if not isinstance(url, str):
        raise ConfigError("url is required (the head-end's MR_Server address)", metadata={"key": "url"})
    meters = raw.get("meters")
    if not isinstance(meters, list | tuple) or not meters or not all(isinstance(m, str) and m for m in meters):
        raise ConfigError("meters must be a non-empty list of meter ids", metadata={"key": "meters"})
    values: dict[str, Any] = {"url": _url(url, "url"), "meters": tuple(meters)}
    for key in ("user", "app_name", "app_version", "company", "callback_listen", "callback_user",
                "callback_tls_cert_file", "callback_tls_key_file", "tls_ca_file", "tls_cert_file", "tls_key_file"):
        values[key] = _typed(raw, key, str, d[key].default)
    for key in ("interval_minutes", "backfill_days", "request_days", "initiate_batch_size", "max_retries",
                "max_concurrency", "max_response_bytes", "max_callback_bytes", "value_exponent",
                "callback_max_connections"):
        values[key] = _typed(raw, key, int, d[key].default)
    for key in ("poll_interval_seconds", "initiate_interval_seconds", "transaction_expiry_seconds",
                "timeout_seconds", "retry_backoff_seconds", "retry_backoff_max_seconds"):
        values[key] = _typed(raw, key, float, d[key].default)
    for key in ("poll_registers", "tls_verify"):
        values[key] = _typed(raw, key, bool, d[key].default)
    values["lp_format"] = _typed(raw, "lp_format", str, d["lp_format"].default)
    if values["lp_format"] not in LP_FORMATS:
        raise ConfigError(f"lp_format must be one of {', '.join(LP_FORMATS)}, got {values['lp_format']!r}",
                          metadata={"key": "lp_format"})
    values["password"] = _secret(raw, "password")
    values["callback_password"] = _secret(raw, "callback_password")
    values["start"] = _time(raw, "start")
    values["end"] = _time(raw, "end")
    minutes = values["interval_minutes"]
    if minutes <= 0 or 86400 % (minutes * 60):
        raise ConfigError(f"interval_minutes must divide a day, got {minutes}", metadata={"key": "interval_minutes"})
    for key in ("backfill_days", "request_days", "initiate_batch_size", "max_concurrency",
                "max_response_bytes", "max_callback_bytes", "callback_max_connections"):
        if values[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {values[key]}", metadata={"key": key})
    for key in ("max_retries",):
        if values[key] < 0:
            raise ConfigError(f"{key} must not be negative, got {values[key]}", metadata={"key": key})
    for key in ("poll_interval_seconds", "timeout_seconds", "transaction_expiry_seconds"):
        if values[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {values[key]}", metadata={"key": key})
    if not -18 <= values["value_exponent"] <= 18:
        raise ConfigError("value_exponent must be within -18..18", metadata={"key": "value_exponent"})
    if values["callback_listen"]:
        host, sep, port = values["callback_listen"].rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"callback_listen must be host:port, got {values['callback_listen']!r}",
                              metadata={"key": "callback_listen"})
    if values["initiate_interval_seconds"] > 0 and not values["callback_listen"]:
        raise ConfigError("initiate_interval_seconds needs callback_listen (where the head-end calls back)",
                          metadata={"key": "callback_listen"})
    callback_url = _typed(raw, "callback_url", str, "")
    values["callback_url"] = _url(callback_url, "callback_url") if callback_url else ""
    if bool(values["callback_tls_cert_file"]) != bool(values["callback_tls_key_file"]):
        raise ConfigError("callback_tls_cert_file and callback_tls_key_file go together",
                          metadata={"key": "callback_tls_key_file"})
    if bool(values["tls_cert_file"]) != bool(values["tls_key_file"]):
        raise ConfigError("tls_cert_file and tls_key_file go together", metadata={"key": "tls_key_file"})
    if values["start"] and values["end"] and values["end"] <= values["start"]:
        raise ConfigError("end must be after start", metadata={"key": "end"})
    return MultiSpeakConfig(**values)
