"""hub.toml: loading and validation. Errors name the key and the value."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.billing.config import BillingSettings, parse_billing_settings
from gateway.errors import ConfigError
from gateway.secrets import resolve_secret
from gateway.security import TlsConfig, TokenAuthority

DEFAULT_STORE = "var/meterhub.sqlite"
DEFAULT_LISTEN = "127.0.0.1:50051"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class GrpcConfig:
    listen: str = DEFAULT_LISTEN
    # A plaintext listener on a non-loopback address needs this, explicitly.
    allow_plaintext_remote: bool = False
    tls: TlsConfig | None = None
    # None: no authentication (loopback or explicitly allowed); else bearer tokens.
    authority: TokenAuthority | None = None


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One [sources.<name>] table: the adapter type and its own keys."""

    name: str
    type: str
    settings: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class HubConfig:
    store: str = DEFAULT_STORE
    queue_size: int = 64
    log_level: str = "INFO"
    log_format: str = "text"
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    # host:port of the Prometheus /metrics endpoint; None turns it off.
    metrics_listen: str | None = None
    # The [vee] table: rulesets, time_zone, holidays (validated by gateway.vee_stage).
    vee: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[SourceConfig, ...] = ()
    # [outbound.<name>] sinks fed from the change feed; the table holds "type".
    outbound: tuple[SourceConfig, ...] = ()
    # The [billing] table: tariffs (bundled ones always present) and policy.
    billing: BillingSettings = field(default_factory=lambda: parse_billing_settings({}))


def _take(table: Mapping[str, Any], where: str, key: str, kind: type, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    # bool is an int in Python; a "true" where a number is expected is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key} must be {kind.__name__}, got {value!r}", metadata={"key": f"{where}.{key}"})
    return value


def _no_unknown(table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (allowed: {', '.join(sorted(allowed))})",
                          metadata={"key": f"{where}.{unknown[0]}"})


def parse_config(data: Mapping[str, Any], *, base_dir: Path | None = None) -> HubConfig:
    """Validate a parsed hub.toml document."""
    _no_unknown(data, "(top level)", {"hub", "grpc", "sources", "vee", "security", "billing", "metrics", "outbound"})
    hub = data.get("hub", {})
    if not isinstance(hub, Mapping):
        raise ConfigError("[hub] must be a table")
    _no_unknown(hub, "hub", {"store", "queue_size", "log_level", "log_format"})
    store = resolve_secret(hub.get("store", DEFAULT_STORE), "hub.store", allow_plain=True).reveal()
    if "://" not in store and base_dir is not None and not Path(store).is_absolute():
        store = str((base_dir / store).resolve())
    queue_size = _take(hub, "hub", "queue_size", int, 64)
    if not 1 <= queue_size <= 100_000:
        raise ConfigError(f"hub.queue_size must be between 1 and 100000, got {queue_size}")
    log_level = _take(hub, "hub", "log_level", str, "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"hub.log_level must be one of {', '.join(_LOG_LEVELS)}, got {log_level!r}")
    log_format = _take(hub, "hub", "log_format", str, "text")
    if log_format not in ("text", "json"):
        raise ConfigError(f"hub.log_format must be \"text\" or \"json\", got {log_format!r}")
    grpc_table = data.get("grpc", {})
    _no_unknown(grpc_table, "grpc", {"listen", "allow_plaintext_remote", "tls"})
    listen = _take(grpc_table, "grpc", "listen", str, DEFAULT_LISTEN)
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"grpc.listen must be host:port, got {listen!r}")
    allow_remote = _take(grpc_table, "grpc", "allow_plaintext_remote", bool, False)
    tls = _tls(grpc_table.get("tls"), base_dir)
    loopback = host.strip("[]") in ("127.0.0.1", "localhost", "::1")
    if tls is None and not allow_remote and not loopback:
        raise ConfigError(
            f"grpc.listen {listen!r} is not a loopback address; serving plaintext gRPC there needs "
            "grpc.allow_plaintext_remote = true (or configure [grpc.tls])",
            metadata={"key": "grpc.listen"},
        )
    authority = _authority(data.get("security", {}), base_dir)
    metrics_table = data.get("metrics", {})
    _no_unknown(metrics_table, "metrics", {"listen"})
    metrics_listen = _take(metrics_table, "metrics", "listen", str, None)
    if metrics_listen is not None and not metrics_listen.rpartition(":")[2].isdigit():
        raise ConfigError(f"metrics.listen must be host:port, got {metrics_listen!r}")
    vee_table = data.get("vee", {})
    if not isinstance(vee_table, Mapping):
        raise ConfigError("[vee] must be a table")
    from gateway.vee_stage import build_vee_stage

    build_vee_stage(vee_table)  # fail at start-up, naming the rule set, rule and key
    sources_table = data.get("sources", {})
    if not isinstance(sources_table, Mapping):
        raise ConfigError("[sources] must be a table of tables: [sources.<name>]")
    sources = []
    for name, table in sources_table.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"sources.{name} must be a table")
        kind = table.get("type")
        if not isinstance(kind, str) or not kind:
            raise ConfigError(f"sources.{name}.type is required (the adapter type, e.g. \"mqtt\")",
                              metadata={"key": f"sources.{name}.type"})
        sources.append(SourceConfig(name=name, type=kind, settings=dict(table)))
    outbound_table = data.get("outbound", {})
    if not isinstance(outbound_table, Mapping):
        raise ConfigError("[outbound] must be a table of tables: [outbound.<name>]")
    outbound = []
    for name, table in outbound_table.items():
        if not isinstance(table, Mapping) or not isinstance(table.get("type"), str):
            raise ConfigError(f"outbound.{name}.type is required (e.g. \"cim\")", metadata={"key": f"outbound.{name}"})
        outbound.append(SourceConfig(name=name, type=table["type"], settings=dict(table)))
    billing = parse_billing_settings(data.get("billing", {}), base_dir)
    return HubConfig(store=store, queue_size=queue_size, log_level=log_level, log_format=log_format,
                     grpc=GrpcConfig(listen=listen, allow_plaintext_remote=allow_remote, tls=tls,
                                     authority=authority),
                     metrics_listen=metrics_listen, vee=dict(vee_table), sources=tuple(sources),
                     outbound=tuple(outbound), billing=billing)


def _path(value: Any, key: str, base_dir: Path | None) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a file path", metadata={"key": key})
    path = Path(value)
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _tls(table: Any, base_dir: Path | None) -> TlsConfig | None:
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError("[grpc.tls] must be a table")
    _no_unknown(table, "grpc.tls", {"cert_file", "key_file", "client_ca_file"})
    ca = table.get("client_ca_file")
    return TlsConfig(cert_file=_path(table.get("cert_file"), "grpc.tls.cert_file", base_dir),
                     key_file=_path(table.get("key_file"), "grpc.tls.key_file", base_dir),
                     client_ca_file=None if ca is None else _path(ca, "grpc.tls.client_ca_file", base_dir))


def _authority(table: Any, base_dir: Path | None) -> TokenAuthority | None:
    if not isinstance(table, Mapping):
        raise ConfigError("[security] must be a table")
    _no_unknown(table, "security", {"tokens", "tokens_file"})
    entries = table.get("tokens", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError("security.tokens must be an array of tables: [[security.tokens]]")
    authority = TokenAuthority.from_entries(entries, "security.tokens")
    if "tokens_file" in table:
        from_file = TokenAuthority.from_file(_path(table["tokens_file"], "security.tokens_file", base_dir))
        authority = authority.merged(from_file)
    return authority if len(authority) else None


def load_config(path: Path) -> HubConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=path.parent)
