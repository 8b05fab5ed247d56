"""Opaque page tokens (AIP-158): the last key plus a fingerprint of the request,
so a token cannot be replayed against a different query."""

from __future__ import annotations

import base64
import hashlib
import json

from gateway.errors import IngestRejected, StatusCode

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class InvalidPageToken(IngestRejected):
    status = StatusCode.INVALID_ARGUMENT
    reason = "INVALID_PAGE_TOKEN"


class InvalidArgument(IngestRejected):
    status = StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(f"page_size must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def encode_token(key: list[object], request_fingerprint: str) -> str:
    raw = json.dumps({"k": key, "f": request_fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, request_fingerprint: str) -> list[object] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        key, fp = data["k"], data["f"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidPageToken("page_token is not a token this service issued") from exc
    if fp != request_fingerprint or not isinstance(key, list):
        raise InvalidPageToken("page_token belongs to a different query")
    return key
