"""The error root of meterhub.

Every error the hub raises on purpose derives from :class:`MeterhubError`. Each
class carries the gRPC status it maps to and an UPPER_SNAKE_CASE reason code,
so the API layer turns any of them into a google.rpc.Status with an ErrorInfo
without knowing where it came from. This module imports nothing but the
standard library, so sans-I/O codecs may depend on it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class StatusCode(enum.Enum):
    """gRPC status codes by name (mirrors grpc.StatusCode without importing grpc)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class MeterhubError(Exception):
    """Root of all meterhub errors.

    Subclasses set ``status`` and ``reason`` as class attributes; an instance may
    override the reason and attach string metadata (meter id, offset, key...).
    """

    status: StatusCode = StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class ConfigError(MeterhubError):
    """Configuration that cannot be used; the message names the key and the value."""

    status = StatusCode.INVALID_ARGUMENT
    reason = "INVALID_CONFIG"


class IngestRejected(MeterhubError):
    """A batch that ingest refuses as a whole; nothing of it is written."""

    status = StatusCode.INVALID_ARGUMENT
    reason = "MALFORMED_BATCH"


class UnknownMeter(IngestRejected):
    status = StatusCode.FAILED_PRECONDITION
    reason = "UNKNOWN_METER"


class MisalignedInterval(IngestRejected):
    reason = "MISALIGNED_INTERVAL"


class IngestFailed(IngestRejected):
    """A batch the writer failed on for a reason that retrying cannot change
    (data the store refuses, or a defect triggered by this batch's content).
    It is refused like a malformed batch, so sources dead-letter it instead of
    redelivering it forever in front of every later batch."""

    status = StatusCode.INTERNAL
    reason = "INGEST_FAILED"


class StoreUnavailable(MeterhubError):
    status = StatusCode.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"


class Overloaded(MeterhubError):
    """The ingest queue is full and the caller chose not to wait."""

    status = StatusCode.RESOURCE_EXHAUSTED
    reason = "INGEST_QUEUE_FULL"
