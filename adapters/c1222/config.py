"""The validated configuration of a C12.22 source (a [sources.<name>] table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.c1222.codec import C1222_BASE_OID, DEFAULT_MAX_APDU_BYTES, ApTitle, SecurityMode
from adapters.c1222.tables import NibbleMapping
from gateway.errors import ConfigError
from meterhub.v1 import model_pb2 as pb


@dataclass(frozen=True, slots=True)
class MeterEndpoint:
    meter_id: str
    host: str
    port: int
    ap_title: ApTitle


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What LP channel n (or ST23 summation n) measures; values are in unit x 10^multiplier
    after the meter's scalar and divisor."""

    kind: int = pb.MEASUREMENT_KIND_ACTIVE_ENERGY
    unit: int = pb.UNIT_WATT_HOUR
    flow_direction: int = pb.FLOW_DIRECTION_DELIVERED
    power_of_ten_multiplier: int = 0
    commodity: int = pb.COMMODITY_ELECTRICITY


DEFAULT_CALLING_AP_TITLE = ApTitle((99, 1), relative=True)
DEFAULT_CHANNELS = (ChannelSpec(), ChannelSpec(flow_direction=pb.FLOW_DIRECTION_RECEIVED))


@dataclass(frozen=True, slots=True)
class C1222Config:
    meters: tuple[MeterEndpoint, ...]
    calling_ap_title: ApTitle = DEFAULT_CALLING_AP_TITLE
    user_id: int = 2
    user: str = "meterhub"
    password: bytes = b""
    security_mode: SecurityMode = SecurityMode.CLEARTEXT
    key_id: int = 0
    keys: Mapping[int, bytes] | None = None
    base_oid: tuple[int, ...] = C1222_BASE_OID
    channels: tuple[ChannelSpec, ...] = DEFAULT_CHANNELS
    nibble_mapping: NibbleMapping = NibbleMapping.FIRST_IN_COMMON_BYTE
    poll_interval_seconds: float = 900.0
    lookback_days: int = 2
    concurrency: int = 16
    timeout_seconds: float = 10.0
    retries: int = 3
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_apdu_bytes: int = DEFAULT_MAX_APDU_BYTES
    read_chunk_bytes: int = 2048
    read_registers: bool = True


_KEYS = {"type", "meters", "fleet", "calling_ap_title", "user_id", "user", "password", "password_env",
         "security_mode", "key_id", "key", "key_env", "base_oid", "channels", "nibble_mapping",
         "poll_interval_seconds", "lookback_days", "concurrency", "timeout_seconds", "retries",
         "backoff_initial_seconds", "backoff_max_seconds", "max_apdu_bytes", "read_chunk_bytes",
         "read_registers"}
_KINDS = {name.removeprefix("MEASUREMENT_KIND_").lower(): value for name, value in pb.MeasurementKind.items()}
_UNITS = {name.removeprefix("UNIT_").lower(): value for name, value in pb.Unit.items()}
_FLOWS = {name.removeprefix("FLOW_DIRECTION_").lower(): value for name, value in pb.FlowDirection.items()}


def _fail(key: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"c1222 config: {key}={value!r}: {why}", metadata={"key": key})


def _int(cfg: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(key, value, f"must be an integer in {lo}..{hi}")
    return value


def _float(cfg: Mapping[str, Any], key: str, default: float, lo: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < lo:
        raise _fail(key, value, f"must be a number >= {lo}")
    return float(value)


def _title(key: str, value: object) -> ApTitle:
    if not isinstance(value, str):
        raise _fail(key, value, "must be an OID string such as '.7.1' or '2.16.124.113620.1.22.0.7'")
    try:
        return ApTitle.parse(value)
    except ValueError as exc:
        raise _fail(key, value, str(exc)) from None


def _secret(cfg: Mapping[str, Any], key: str) -> str | None:
    env = cfg.get(f"{key}_env")
    if env is not None:
        if not isinstance(env, str) or env not in os.environ:
            raise _fail(f"{key}_env", env, "names no set environment variable")
        return os.environ[env]
    value = cfg.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(key, "<hidden>", "must be a string")
    return value


def _meters(cfg: Mapping[str, Any]) -> tuple[MeterEndpoint, ...]:
    if ("meters" in cfg) == ("fleet" in cfg):
        raise _fail("meters", cfg.get("meters"), "give exactly one of 'meters' (a list) or 'fleet' (a table)")
    if "fleet" in cfg:
        fleet = cfg["fleet"]
        if not isinstance(fleet, Mapping):
            raise _fail("fleet", fleet, "must be a table with host, port, count, prefix, first, branch")
        host = fleet.get("host", "127.0.0.1")
        port = _int(fleet, "port", 1153, 1, 65535)
        count = _int(fleet, "count", 1, 1, 1_000_000)
        first = _int(fleet, "first", 1, 0, 10**9)
        branch = _int(fleet, "branch", 7, 0, 10**9)
        prefix = fleet.get("prefix", "C1222-")
        if not isinstance(host, str) or not isinstance(prefix, str):
            raise _fail("fleet", fleet, "host and prefix must be strings")
        return tuple(MeterEndpoint(f"{prefix}{n:06d}", host, port, ApTitle((branch, n), relative=True))
                     for n in range(first, first + count))
    raw = cfg["meters"]
    if not isinstance(raw, list) or not raw:
        raise _fail("meters", raw, "must be a non-empty list of tables")
    out = []
    for i, m in enumerate(raw):
        where = f"meters[{i}]"
        if not isinstance(m, Mapping) or not isinstance(m.get("meter_id"), str) or not m["meter_id"]:
            raise _fail(where, m, "needs meter_id, host, port and ap_title")
        host = m.get("host", "127.0.0.1")
        if not isinstance(host, str):
            raise _fail(f"{where}.host", host, "must be a string")
        out.append(MeterEndpoint(m["meter_id"], host, _int(m, "port", 1153, 1, 65535),
                                 _title(f"{where}.ap_title", m.get("ap_title"))))
    ids = [m.meter_id for m in out]
    if len(set(ids)) != len(ids):
        raise _fail("meters", ids, "meter ids must be unique")
    return tuple(out)


def _channels(cfg: Mapping[str, Any]) -> tuple[ChannelSpec, ...]:
    raw = cfg.get("channels")
    if raw is None:
        return DEFAULT_CHANNELS
    if not isinstance(raw, list) or not raw:
        raise _fail("channels", raw, "must be a non-empty list of tables")
    out = []
    for i, ch in enumerate(raw):
        where = f"channels[{i}]"
        if not isinstance(ch, Mapping):
            raise _fail(where, ch, "must be a table")
        kind, unit, flow = ch.get("kind", "active_energy"), ch.get("unit", "watt_hour"), ch.get("flow_direction",
                                                                                                 "delivered")
        if kind not in _KINDS:
            raise _fail(f"{where}.kind", kind, f"one of {sorted(_KINDS)}")
        if unit not in _UNITS:
            raise _fail(f"{where}.unit", unit, f"one of {sorted(_UNITS)}")
        if flow not in _FLOWS:
            raise _fail(f"{where}.flow_direction", flow, f"one of {sorted(_FLOWS)}")
        out.append(ChannelSpec(_KINDS[kind], _UNITS[unit], _FLOWS[flow],
                               _int(ch, "power_of_ten_multiplier", 0, -18, 18)))
    return tuple(out)


def parse_config(cfg: Mapping[str, Any]) -> C1222Config:
    """Validate a source table; raises ConfigError naming the wrong key."""
    unknown = set(cfg) - _KEYS
    if unknown:
        raise _fail(sorted(unknown)[0], cfg[sorted(unknown)[0]], "unknown key")
    mode_name = cfg.get("security_mode", "cleartext")
    modes = {"cleartext": SecurityMode.CLEARTEXT, "authenticated": SecurityMode.AUTHENTICATED,
             "ciphered": SecurityMode.CIPHERED}
    if mode_name not in modes:
        raise _fail("security_mode", mode_name, f"one of {sorted(modes)}")
    mode = modes[mode_name]
    key_id = _int(cfg, "key_id", 0, 0, 255)
    keys: dict[int, bytes] | None = None
    key_hex = _secret(cfg, "key")
    if key_hex is not None:
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            raise _fail("key", "<hidden>", "must be 32 hex digits") from None
        if len(key) != 16:
            raise _fail("key", "<hidden>", "must be 32 hex digits (AES-128)")
        keys = {key_id: key}
    if mode is not SecurityMode.CLEARTEXT and keys is None:
        raise _fail("key", None, f"security_mode {mode_name} needs 'key' or 'key_env'")
    password = (_secret(cfg, "password") or "").encode("latin-1")
    if len(password) > 20:
        raise _fail("password", "<hidden>", "at most 20 bytes")
    user = cfg.get("user", "meterhub")
    if not isinstance(user, str) or len(user) > 10:
        raise _fail("user", user, "a string of at most 10 characters")
    base = cfg.get("base_oid")
    base_oid = C1222_BASE_OID if base is None else _title("base_oid", base).arcs
    mapping = cfg.get("nibble_mapping", NibbleMapping.FIRST_IN_COMMON_BYTE.value)
    try:
        nibble_mapping = NibbleMapping(mapping)
    except ValueError:
        raise _fail("nibble_mapping", mapping, f"one of {[m.value for m in NibbleMapping]}") from None
    read_registers = cfg.get("read_registers", True)
    if not isinstance(read_registers, bool):
        raise _fail("read_registers", read_registers, "must be true or false")
    return C1222Config(
        meters=_meters(cfg),
        calling_ap_title=_title("calling_ap_title", cfg.get("calling_ap_title", ".99.1")),
        user_id=_int(cfg, "user_id", 2, 0, 0xFFFF),
        user=user,
        password=password,
        security_mode=mode,
        key_id=key_id,
        keys=keys,
        base_oid=base_oid,
        channels=_channels(cfg),
        nibble_mapping=nibble_mapping,
        poll_interval_seconds=_float(cfg, "poll_interval_seconds", 900.0, 0.0),
        lookback_days=_int(cfg, "lookback_days", 2, 1, 366),
        concurrency=_int(cfg, "concurrency", 16, 1, 10_000),
        timeout_seconds=_float(cfg, "timeout_seconds", 10.0, 0.001),
        retries=_int(cfg, "retries", 3, 0, 100),
        backoff_initial_seconds=_float(cfg, "backoff_initial_seconds", 0.5, 0.0),
        backoff_max_seconds=_float(cfg, "backoff_max_seconds", 30.0, 0.0),
        max_apdu_bytes=_int(cfg, "max_apdu_bytes", DEFAULT_MAX_APDU_BYTES, 256, 16 * 1024 * 1024),
        read_chunk_bytes=_int(cfg, "read_chunk_bytes", 2048, 16, 0xFFFF),
        read_registers=read_registers,
    )
