"""Error roots of the adapter family.

Each protocol package defines its own ``<Proto>Error`` under these roots, with
its wire-level code on the class where the protocol has one.
"""

from __future__ import annotations

from gateway.errors import MeterhubError, StatusCode


class AdapterError(MeterhubError):
    """Root of every adapter error."""

    status = StatusCode.UNAVAILABLE
    reason = "ADAPTER_ERROR"


class ProtocolError(AdapterError):
    """Bytes or documents that violate the protocol. ``remote`` is True when the
    peer sent them, False when we were about to send them."""

    status = StatusCode.INVALID_ARGUMENT
    reason = "PROTOCOL_ERROR"

    def __init__(self, message: str, *, remote: bool = True, reason: str | None = None,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.remote = remote


class TransportError(AdapterError):
    """The connection failed, timed out or was closed by the peer."""

    status = StatusCode.UNAVAILABLE
    reason = "TRANSPORT_ERROR"
