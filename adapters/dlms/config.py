"""The [sources.<name>] table of a DLMS source, validated into a frozen dataclass.

Secrets (LLS password, HLS keys) may be given inline (simulators, tests) or,
better, by the name of an environment variable (``password_env``,
``encryption_key_env``, ``authentication_key_env``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.dlms.codec import Mechanism
from adapters.dlms.cosem import LOAD_PROFILE_OBIS, Obis
from adapters.dlms.security import Keys
from gateway.errors import ConfigError

AUTHENTICATION = {"none": Mechanism.NONE, "lls": Mechanism.LLS, "hls-gmac": Mechanism.HLS_GMAC}
KNOWN_KEYS = frozenset({
    "type", "meters", "meter_range", "authentication", "password", "password_env", "encryption_key",
    "encryption_key_env", "authentication_key", "authentication_key_env", "client_system_title", "client_wport",
    "server_wport", "max_pdu_size", "connect_timeout_seconds", "response_timeout_seconds", "retries",
    "backoff_initial_seconds", "backoff_max_seconds", "concurrency", "poll_seconds", "clock_tolerance_seconds",
    "history_days", "start", "max_days_per_read", "read_registers", "profile_obis", "max_response_bytes",
})


@dataclass(frozen=True, slots=True)
class MeterEndpoint:
    meter_id: str
    host: str
    port: int


@dataclass(frozen=True, slots=True, repr=False)
class DlmsConfig:
    meters: tuple[MeterEndpoint, ...]
    mechanism: int = Mechanism.NONE
    password: bytes | None = None
    keys: Keys | None = None
    client_system_title: bytes = b"MHHUB001"
    client_wport: int = 16
    server_wport: int = 1
    max_pdu_size: int = 1024
    connect_timeout_seconds: float = 5.0
    response_timeout_seconds: float = 10.0
    retries: int = 3
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    concurrency: int = 32
    # 0: read every meter once, then return.
    poll_seconds: float = 900.0
    clock_tolerance_seconds: float = 30.0
    # Where reading starts for a channel the hub has nothing of: `start`, else now - history_days.
    history_days: int = 1
    start: datetime | None = None
    max_days_per_read: int = 7
    read_registers: bool = True
    profile_obis: Obis = LOAD_PROFILE_OBIS
    max_response_bytes: int = 4 * 1024 * 1024

    def __repr__(self) -> str:
        return (f"DlmsConfig(meters={len(self.meters)}, mechanism={self.mechanism}, "
                f"concurrency={self.concurrency}, poll_seconds={self.poll_seconds})")


def _bad(key: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"dlms: {key}={value!r}: {why}", metadata={"key": key})


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(key, value, f"must be an integer in [{low}, {high}]")
    return value


def _float(raw: Mapping[str, Any], key: str, default: float, low: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise _bad(key, value, f"must be a number >= {low}")
    return float(value)


def _secret(raw: Mapping[str, Any], key: str) -> str | None:
    if key in raw and f"{key}_env" in raw:
        raise _bad(key, "<secret>", f"give {key} or {key}_env, not both")
    env = raw.get(f"{key}_env")
    if env is not None:
        if not isinstance(env, str) or env not in os.environ:
            raise _bad(f"{key}_env", env, "names no set environment variable")
        return os.environ[env]
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(key, "<secret>", "must be a string")
    return value


def _hex(raw: Mapping[str, Any], key: str, size: int) -> bytes | None:
    text = _secret(raw, key)
    if text is None:
        return None
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise _bad(key, "<secret>", "must be hex") from None
    if len(value) != size:
        raise _bad(key, "<secret>", f"must be {size} bytes ({size * 2} hex digits)")
    return value


def _meters(raw: Mapping[str, Any]) -> tuple[MeterEndpoint, ...]:
    meters: list[MeterEndpoint] = []
    listed = raw.get("meters", [])
    if not isinstance(listed, list | tuple):
        raise _bad("meters", listed, "must be a list of {meter_id, host, port} tables")
    for i, entry in enumerate(listed):
        if not isinstance(entry, Mapping) or set(entry) - {"meter_id", "host", "port"}:
            raise _bad(f"meters[{i}]", entry, "must be a table with meter_id, host, port")
        meter_id, host, port = entry.get("meter_id"), entry.get("host", "127.0.0.1"), entry.get("port")
        if not isinstance(meter_id, str) or not meter_id:
            raise _bad(f"meters[{i}].meter_id", meter_id, "must be a non-empty string")
        if not isinstance(host, str) or not host:
            raise _bad(f"meters[{i}].host", host, "must be a host name")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _bad(f"meters[{i}].port", port, "must be a TCP port")
        meters.append(MeterEndpoint(meter_id, host, port))
    ranged = raw.get("meter_range")
    if ranged is not None:
        allowed = {"host", "first_port", "count", "first_index", "id_format"}
        if not isinstance(ranged, Mapping) or set(ranged) - allowed:
            raise _bad("meter_range", ranged, f"must be a table with keys {sorted(allowed)}")
        host = ranged.get("host", "127.0.0.1")
        first_port = _int(ranged, "first_port", 4059, 1, 65535)
        count = _int(ranged, "count", 1, 1, 65535 - first_port + 1)
        first_index = _int(ranged, "first_index", 1, 0, 10**9)
        id_format = ranged.get("id_format", "DLMS-{index:06d}")
        if not isinstance(id_format, str) or "{index" not in id_format:
            raise _bad("meter_range.id_format", id_format, "must contain {index}")
        meters += [MeterEndpoint(id_format.format(index=first_index + i), str(host), first_port + i)
                   for i in range(count)]
    if not meters:
        raise _bad("meters", listed, "no meters configured (give meters or meter_range)")
    ids = [m.meter_id for m in meters]
    if len(set(ids)) != len(ids):
        raise _bad("meters", "...", "meter ids must be unique")
    return tuple(meters)


def parse_config(raw: Mapping[str, Any]) -> DlmsConfig:
    unknown = set(raw) - KNOWN_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise _bad(key, raw[key], f"unknown key (known: {', '.join(sorted(KNOWN_KEYS))})")
    auth_name = raw.get("authentication", "none")
    if auth_name not in AUTHENTICATION:
        raise _bad("authentication", auth_name, f"must be one of {sorted(AUTHENTICATION)}")
    mechanism = AUTHENTICATION[auth_name]
    password_text = _secret(raw, "password")
    password = password_text.encode() if password_text is not None else None
    if mechanism == Mechanism.LLS and not password:
        raise _bad("password", None, "LLS needs password or password_env")
    encryption_key = _hex(raw, "encryption_key", 16)
    authentication_key = _hex(raw, "authentication_key", 16)
    if (encryption_key is None) != (authentication_key is None):
        raise _bad("encryption_key", "<secret>", "give both encryption_key and authentication_key")
    keys = Keys(encryption_key, authentication_key) if encryption_key and authentication_key else None
    if mechanism == Mechanism.HLS_GMAC and keys is None:
        raise _bad("authentication", auth_name, "hls-gmac needs encryption_key and authentication_key")
    title_text = raw.get("client_system_title", "4D48485542303031")
    try:
        title = bytes.fromhex(title_text) if isinstance(title_text, str) else b""
    except ValueError:
        title = b""
    if len(title) != 8:
        raise _bad("client_system_title", title_text, "must be 16 hex digits")
    start_text = raw.get("start")
    start = None
    if start_text is not None:
        try:
            start = datetime.fromisoformat(str(start_text))
        except ValueError:
            raise _bad("start", start_text, "must be an ISO 8601 date-time") from None
        if start.tzinfo is None:
            raise _bad("start", start_text, "must carry a UTC offset")
        start = start.astimezone(UTC)
    read_registers = raw.get("read_registers", True)
    if not isinstance(read_registers, bool):
        raise _bad("read_registers", read_registers, "must be true or false")
    try:
        profile_obis = Obis.parse(str(raw.get("profile_obis", "1.0.99.1.0.255")))
    except ValueError:
        raise _bad("profile_obis", raw.get("profile_obis"), "must be an OBIS code A.B.C.D.E.F") from None
    backoff_initial = _float(raw, "backoff_initial_seconds", 1.0, 0.0)
    backoff_max = _float(raw, "backoff_max_seconds", 60.0, 0.0)
    if backoff_max < backoff_initial:
        raise _bad("backoff_max_seconds", backoff_max, "must be >= backoff_initial_seconds")
    return DlmsConfig(
        meters=_meters(raw), mechanism=mechanism, password=password, keys=keys, client_system_title=title,
        client_wport=_int(raw, "client_wport", 16, 0, 0xFFFF), server_wport=_int(raw, "server_wport", 1, 0, 0xFFFF),
        max_pdu_size=_int(raw, "max_pdu_size", 1024, 64, 0xFFFF),
        connect_timeout_seconds=_float(raw, "connect_timeout_seconds", 5.0, 0.001),
        response_timeout_seconds=_float(raw, "response_timeout_seconds", 10.0, 0.001),
        retries=_int(raw, "retries", 3, 0, 100), backoff_initial_seconds=backoff_initial,
        backoff_max_seconds=backoff_max, concurrency=_int(raw, "concurrency", 32, 1, 10_000),
        poll_seconds=_float(raw, "poll_seconds", 900.0, 0.0),
        clock_tolerance_seconds=_float(raw, "clock_tolerance_seconds", 30.0, 0.0),
        history_days=_int(raw, "history_days", 1, 1, 3660), start=start,
        max_days_per_read=_int(raw, "max_days_per_read", 7, 1, 366), read_registers=read_registers,
        profile_obis=profile_obis, max_response_bytes=_int(raw, "max_response_bytes", 4 * 1024 * 1024, 1024, 2**31),
    )
