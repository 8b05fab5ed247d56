"""Validated configuration of a CIM source ([sources.<name>] with type = "cim")
and of the outbound CIM event sender."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.cim.message import Binding
from adapters.cim.readingtype import parse_code
from gateway.errors import ConfigError

DEFAULT_PATH = "/cim/MeterReadings"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
DEFAULT_POLL_READING_TYPE = "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0"


@dataclass(frozen=True, slots=True)
class CimConfig:
    # Push endpoint ("host:port"); None disables it.
    listen: str | None = None
    path: str = DEFAULT_PATH
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # Shared secret pushed requests must present as "Authorization: Bearer <token>".
    auth_token: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    validate_schema: bool = False
    decimals: int = 3
    meter_id_source: str = "mrid"
    meter_multiplier_applied: bool = True
    # Pull: the head-end's get endpoint; None disables polling.
    head_end_url: str | None = None
    head_end_binding: Binding = Binding.XML
    head_end_token: str | None = None
    ca_file: str | None = None
    poll_interval_seconds: float = 900.0
    poll_meters: tuple[str, ...] = ()
    poll_from: datetime | None = None
    poll_lookback_hours: int = 24
    # Longest time window of one get request; longer catch-ups are split.
    poll_window_hours: int = 24
    poll_reading_type: str = DEFAULT_POLL_READING_TYPE
    request_timeout_seconds: float = 30.0
    # Batch files: a watched directory; None disables it.
    drop_dir: str | None = None
    drop_poll_seconds: float = 2.0
    max_file_bytes: int = 1024 * 1024 * 1024
    batch_max_reads: int = 50_000
    source_name: str = "meterhub"


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    url: str
    binding: Binding = Binding.XML
    auth_token: str | None = None
    ca_file: str | None = None
    timeout_seconds: float = 30.0
    source_name: str = "meterhub"
    max_reply_bytes: int = 1024 * 1024
    retries: int = 3


def _err(key: str, message: str) -> ConfigError:
    return ConfigError(f"cim.{key} {message}", metadata={"key": key})


class _Reader:
    def __init__(self, table: Mapping[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(table) - allowed - {"type"})
        if unknown:
            raise ConfigError(f"unknown key cim.{unknown[0]} (allowed: {', '.join(sorted(allowed))})",
                              metadata={"key": unknown[0]})
        self.table = table

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise _err(key, f"must be {kinds[0].__name__}, got {value!r}")
        if not isinstance(value, kinds):
            raise _err(key, f"must be {kinds[0].__name__}, got {value!r}")
        return value

    def positive(self, key: str, default: float) -> float:
        value = self.get(key, (int, float), default)
        if value <= 0:
            raise _err(key, f"must be > 0, got {value!r}")
        return float(value)

    def positive_int(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if value <= 0:
            raise _err(key, f"must be > 0, got {value!r}")
        return int(value)

    def secret(self, key: str) -> str | None:
        """``<key>_env`` names an environment variable, ``<key>_file`` a file; never the secret itself."""
        env: str | None = self.get(f"{key}_env", str, None)
        path: str | None = self.get(f"{key}_file", str, None)
        if env and path:
            raise _err(f"{key}_env", f"and cim.{key}_file are exclusive")
        if env:
            value = os.environ.get(env)
            if not value:
                raise _err(f"{key}_env", f"names environment variable {env!r}, which is not set")
            return value
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    value = handle.read().strip()
            except OSError as exc:
                raise _err(f"{key}_file", f"cannot be read: {exc.strerror}") from exc
            if not value:
                raise _err(f"{key}_file", "is empty")
            return value
        return None


def _binding(reader: _Reader, key: str) -> Binding:
    value = reader.get(key, str, "xml")
    try:
        return Binding(value)
    except ValueError:
        raise _err(key, f"must be one of xml, soap11, soap12, got {value!r}") from None


def _url(reader: _Reader, key: str) -> str | None:
    value: str | None = reader.get(key, str, None)
    if value is not None and not value.startswith(("http://", "https://")):
        raise _err(key, f"must be an http:// or https:// URL, got {value!r}")
    return value


_SOURCE_KEYS = {
    "listen", "path", "tls_cert_file", "tls_key_file", "auth_token_env", "auth_token_file",
    "max_message_bytes", "validate_schema", "decimals", "meter_id_source", "meter_multiplier_applied",
    "head_end_url", "head_end_binding", "head_end_token_env", "head_end_token_file", "ca_file",
    "poll_interval_seconds", "poll_meters", "poll_from", "poll_lookback_hours", "poll_window_hours",
    "poll_reading_type",
    "request_timeout_seconds", "drop_dir", "drop_poll_seconds", "max_file_bytes", "batch_max_reads",
    "source_name",
}


def parse_config(table: Mapping[str, Any]) -> CimConfig:
    """Validate a source table; errors name the key and the value."""
    r = _Reader(table, _SOURCE_KEYS)
    listen = r.get("listen", str, None)
    if listen is not None:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise _err("listen", f"must be host:port, got {listen!r}")
    path = r.get("path", str, DEFAULT_PATH)
    if not path.startswith("/"):
        raise _err("path", f"must start with '/', got {path!r}")
    cert, key = r.get("tls_cert_file", str, None), r.get("tls_key_file", str, None)
    if (cert is None) != (key is None):
        raise _err("tls_cert_file", "and cim.tls_key_file must be given together")
    decimals = r.get("decimals", int, 3)
    if not 0 <= decimals <= 9:
        raise _err("decimals", f"must be 0..9, got {decimals!r}")
    meter_id_source = r.get("meter_id_source", str, "mrid")
    if meter_id_source not in ("mrid", "name"):
        raise _err("meter_id_source", f"must be 'mrid' or 'name', got {meter_id_source!r}")
    meters = r.get("poll_meters", list, [])
    if not all(isinstance(m, str) and m for m in meters):
        raise _err("poll_meters", "must be a list of meter ids (strings)")
    poll_from_text = r.get("poll_from", (str, datetime), None)
    poll_from: datetime | None = None
    if isinstance(poll_from_text, datetime):
        poll_from = poll_from_text
    elif poll_from_text is not None:
        try:
            poll_from = datetime.fromisoformat(poll_from_text)
        except ValueError:
            raise _err("poll_from", f"must be an ISO 8601 date-time, got {poll_from_text!r}") from None
    if poll_from is not None and poll_from.tzinfo is None:
        raise _err("poll_from", "must carry a UTC offset")
    reading_type = r.get("poll_reading_type", str, DEFAULT_POLL_READING_TYPE)
    try:
        parse_code(reading_type)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a config error here
        raise _err("poll_reading_type", f"is not a ReadingType code: {exc}") from None
    config = CimConfig(
        listen=listen, path=path, tls_cert_file=cert, tls_key_file=key, auth_token=r.secret("auth_token"),
        max_message_bytes=r.positive_int("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES),
        validate_schema=r.get("validate_schema", bool, False), decimals=decimals,
        meter_id_source=meter_id_source, meter_multiplier_applied=r.get("meter_multiplier_applied", bool, True),
        head_end_url=_url(r, "head_end_url"), head_end_binding=_binding(r, "head_end_binding"),
        head_end_token=r.secret("head_end_token"), ca_file=r.get("ca_file", str, None),
        poll_interval_seconds=r.positive("poll_interval_seconds", 900.0), poll_meters=tuple(meters),
        poll_from=poll_from, poll_lookback_hours=r.positive_int("poll_lookback_hours", 24),
        poll_window_hours=r.positive_int("poll_window_hours", 24),
        poll_reading_type=reading_type, request_timeout_seconds=r.positive("request_timeout_seconds", 30.0),
        drop_dir=r.get("drop_dir", str, None), drop_poll_seconds=r.positive("drop_poll_seconds", 2.0),
        max_file_bytes=r.positive_int("max_file_bytes", 1024 * 1024 * 1024),
        batch_max_reads=r.positive_int("batch_max_reads", 50_000),
        source_name=r.get("source_name", str, "meterhub"),
    )
    if config.listen is None and config.head_end_url is None and config.drop_dir is None:
        raise ConfigError("cim source needs at least one of listen, head_end_url or drop_dir",
                          metadata={"key": "listen"})
    return config


_OUTBOUND_KEYS = {"url", "binding", "auth_token_env", "auth_token_file", "ca_file", "timeout_seconds",
                  "source_name", "max_reply_bytes", "retries"}


def parse_outbound_config(table: Mapping[str, Any]) -> OutboundConfig:
    r = _Reader(table, _OUTBOUND_KEYS)
    url = _url(r, "url")
    if url is None:
        raise _err("url", "is required")
    retries = r.get("retries", int, 3)
    if retries < 0:
        raise _err("retries", f"must be >= 0, got {retries!r}")
    return OutboundConfig(url=url, binding=_binding(r, "binding"), auth_token=r.secret("auth_token"),
                          ca_file=r.get("ca_file", str, None), timeout_seconds=r.positive("timeout_seconds", 30.0),
                          source_name=r.get("source_name", str, "meterhub"),
                          max_reply_bytes=r.positive_int("max_reply_bytes", 1024 * 1024), retries=retries)
