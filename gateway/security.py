"""gRPC security: TLS / mutual TLS credentials and role-based bearer tokens.

Tokens are random strings handed to client systems; the hub keeps only their
SHA-256 hashes (in hub.toml or a tokens file), so a leaked config does not
leak a credential. Tokens are high-entropy (``meterhub token new`` makes 256
bits), which is why a plain hash is enough here, unlike for passwords.
Each RPC names the roles that may call it; health and reflection are open.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from gateway.errors import ConfigError

logger = logging.getLogger(__name__)

ROLES = frozenset({"reader", "billing", "cis", "operator", "admin"})
_READERS = frozenset({"reader", "billing", "cis", "operator", "admin"})
_OPERATORS = frozenset({"operator", "admin"})

# Roles per RPC, by full method name. Methods not listed here are denied
# (fail closed) unless they belong to an open service.
METHOD_ROLES: dict[str, frozenset[str]] = {
    "/meterhub.v1.IngestService/SubmitBatch": _OPERATORS,
    "/meterhub.v1.IngestService/StreamBatches": _OPERATORS,
    "/meterhub.v1.ReadingService/ListIntervalBlocks": _READERS,
    "/meterhub.v1.ReadingService/ExportIntervalBlocks": _READERS,
    "/meterhub.v1.ReadingService/SubscribeIntervalBlocks": _READERS,
    "/meterhub.v1.ReadingService/ListRegisterReads": _READERS,
    "/meterhub.v1.ReadingService/ListMeterEvents": _READERS,
    "/meterhub.v1.AdminService/UpsertMeters": frozenset({"cis", "admin"}),
    "/meterhub.v1.AdminService/ListMeters": _READERS,
    "/meterhub.v1.AdminService/ListSources": _OPERATORS,
    "/meterhub.v1.AdminService/ListDeadLetters": _OPERATORS,
    "/meterhub.v1.ExceptionService/ListExceptions": _READERS,
    "/meterhub.v1.ExceptionService/AssignException": _OPERATORS,
    "/meterhub.v1.ExceptionService/ResolveException": _OPERATORS,
    "/meterhub.v1.EditService/EditIntervals": _OPERATORS,
    "/meterhub.v1.EditService/ApproveEstimates": _OPERATORS,
    "/meterhub.v1.EditService/GetAuditTrail": _READERS,
    "/meterhub.v1.CisService/SyncRecords": frozenset({"cis", "admin"}),
    "/meterhub.v1.CisService/ListServicePoints": _READERS,
    "/meterhub.v1.CisService/GetServicePointStatus": _READERS,
    "/meterhub.v1.BillingService/GetBillingDeterminants": frozenset({"billing", "admin"}),
    "/meterhub.v1.BillingService/StreamBillCycle": frozenset({"billing", "admin"}),
    "/meterhub.v1.BillingService/ListBillingIntervals": frozenset({"billing", "admin"}),
    "/meterhub.v1.BillingService/SetCriticalPeakEvents": frozenset({"billing", "admin"}),
}
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")


def register_method_roles(roles: Mapping[str, frozenset[str]]) -> None:
    """Services added later (billing, CIS, edits) declare their roles here at import."""
    METHOD_ROLES.update(roles)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    roles: frozenset[str]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "mh_" + secrets.token_urlsafe(32)


class TokenAuthority:
    """Verifies bearer tokens against configured hashes."""

    def __init__(self, entries: Mapping[str, Principal]) -> None:
        self._by_hash = dict(entries)

    @classmethod
    def from_entries(cls, entries: list[Mapping[str, Any]], where: str) -> TokenAuthority:
        out: dict[str, Principal] = {}
        for i, entry in enumerate(entries):
            key = f"{where}[{i}]"
            unknown = set(entry) - {"name", "roles", "sha256"}
            if unknown:
                raise ConfigError(f"unknown key {key}.{sorted(unknown)[0]}", metadata={"key": key})
            name, roles, digest = entry.get("name"), entry.get("roles"), entry.get("sha256")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{key}.name is required", metadata={"key": key})
            if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
                raise ConfigError(f"{key}.roles must be a non-empty list of roles", metadata={"key": key})
            bad = sorted(set(roles) - ROLES)
            if bad:
                raise ConfigError(f"{key}.roles: unknown role {bad[0]!r} (roles: {', '.join(sorted(ROLES))})",
                                  metadata={"key": key})
            if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{key}.sha256 must be the 64-digit hex SHA-256 of the token "
                                  "(`meterhub token new` prints it)", metadata={"key": key})
            out[digest] = Principal(name, frozenset(roles))
        return cls(out)

    @classmethod
    def from_file(cls, path: Path) -> TokenAuthority:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read tokens file {path}: {exc}") from exc
        return cls.from_entries(list(data.get("tokens", [])), f"{path}:tokens")

    def __len__(self) -> int:
        return len(self._by_hash)

    def merged(self, other: TokenAuthority) -> TokenAuthority:
        return TokenAuthority({**self._by_hash, **other._by_hash})

    def verify(self, token: str) -> Principal | None:
        digest = hash_token(token)
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    def identify(self, metadata: Any) -> Principal | None:
        """The caller named by an ``authorization: Bearer <token>`` header."""
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                return self.verify(value.removeprefix("Bearer ").strip())
        return None


ANONYMOUS = Principal("anonymous", ROLES)


def caller(context: grpc.aio.ServicerContext[Any, Any], authority: TokenAuthority | None) -> Principal:
    """Who is calling; with authentication off every caller is 'anonymous'."""
    if authority is None:
        return ANONYMOUS
    principal = authority.identify(context.invocation_metadata())
    return principal if principal is not None else Principal("unknown", frozenset())


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler that answers any call with the status before reading a request
    (the shape of the refused method does not matter for that)."""

    async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks the bearer token and the method's roles before any handler runs."""

    def __init__(self, authority: TokenAuthority) -> None:
        self._authority = authority

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(details)
        principal = self._authority.identify(details.invocation_metadata)
        if principal is None:
            logger.warning("unauthenticated call to %s refused", method)
            return _deny(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required")
        allowed = METHOD_ROLES.get(method, frozenset())
        if not principal.roles & allowed:
            logger.warning("%s (roles %s) refused %s", principal.name, ",".join(sorted(principal.roles)), method)
            return _deny(grpc.StatusCode.PERMISSION_DENIED,
                         f"{method} needs one of the roles {', '.join(sorted(allowed)) or '(none)'}")
        return await continuation(details)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    # Client certificates are required when a CA is given (mutual TLS).
    client_ca_file: Path | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        try:
            cert = self.cert_file.read_bytes()
            key = self.key_file.read_bytes()
            ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        except OSError as exc:
            raise ConfigError(f"cannot read TLS material: {exc}") from exc
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
