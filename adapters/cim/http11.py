"""A small sans-I/O HTTP/1.1 codec: exactly what the CIM bindings need.

Messages are framed by Content-Length only (chunked bodies are refused with
411, which every HTTP client falls back from or reports); header blocks and
bodies are capped, and a Content-Length above the cap is an error before any
body byte is buffered. ``HttpConnection`` is the h11-style state machine:
``receive_data(bytes)``, then ``next_event()`` returning a message or
NEED_DATA; encoding is a pair of pure functions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from adapters.cim.errors import HttpProtocolError

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 64
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
           413: "Content Too Large", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class Need(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = Need.NEED_DATA


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    keep_alive: bool = True

    def header(self, name: str, default: str = "") -> str:
        return _header(self.headers, name, default)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    keep_alive: bool = True

    def header(self, name: str, default: str = "") -> str:
        return _header(self.headers, name, default)


@dataclass(frozen=True, slots=True)
class HeadTooLarge:
    """A request whose declared body exceeds the cap: we answer 413 without reading it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    content_length: int


def _header(headers: tuple[tuple[str, str], ...], name: str, default: str) -> str:
    name = name.lower()
    for key, value in headers:
        if key == name:
            return value
    return default


class Role(enum.Enum):
    SERVER = "server"  # parses requests
    CLIENT = "client"  # parses responses


class HttpConnection:
    """Parses a stream of requests (server role) or responses (client role)."""

    def __init__(self, role: Role, *, max_body: int, max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self.role = role
        self.max_body = max_body
        self.max_header_bytes = max_header_bytes
        self._buffer = bytearray()
        self._head: tuple[str, str, tuple[tuple[str, str], ...], int, bool] | None = None
        self.closed = False

    def receive_data(self, data: bytes) -> None:
        if not data:
            self.closed = True
            return
        self._buffer += data
        if self._head is None and len(self._buffer) > self.max_header_bytes and b"\r\n\r\n" not in self._buffer:
            raise HttpProtocolError("HTTP header block is too large", http_status=431)

    def next_event(self) -> HttpRequest | HttpResponse | HeadTooLarge | Need:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if self.closed and self._buffer:
                    raise HttpProtocolError("connection closed inside an HTTP header block")
                return NEED_DATA
            if end > self.max_header_bytes:
                raise HttpProtocolError("HTTP header block is too large", http_status=431)
            head = bytes(self._buffer[:end])
            del self._buffer[:end + 4]
            first, headers, length, keep_alive = self._parse_head(head)
            if length > self.max_body:
                if self.role is Role.SERVER:
                    method, target = first[0], first[1]
                    self.closed = True
                    return HeadTooLarge(method, target, headers, length)
                raise HttpProtocolError(f"response body of {length} bytes exceeds the limit of "
                                        f"{self.max_body} bytes", http_status=413)
            self._head = (first[0], first[1], headers, length, keep_alive)
        method_or_version, target_or_status, headers, length, keep_alive = self._head
        if len(self._buffer) < length:
            if self.closed:
                raise HttpProtocolError("connection closed inside an HTTP body")
            return NEED_DATA
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        self._head = None
        if self.role is Role.SERVER:
            return HttpRequest(method_or_version, target_or_status, headers, body, keep_alive)
        return HttpResponse(int(target_or_status), headers, body, keep_alive)

    def _parse_head(self, head: bytes) -> tuple[tuple[str, str], tuple[tuple[str, str], ...], int, bool]:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes any byte
            raise HttpProtocolError("undecodable HTTP header") from exc
        lines = text.split("\r\n")
        parts = lines[0].split(" ", 2)
        if self.role is Role.SERVER:
            if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/"):
                raise HttpProtocolError(f"bad HTTP request line {lines[0][:80]!r}")
            if parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
                raise HttpProtocolError(f"unsupported HTTP version {parts[2][:16]!r}", http_status=505)
            first = (parts[0], parts[1])
            version = parts[2]
        else:
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
                raise HttpProtocolError(f"bad HTTP status line {lines[0][:80]!r}")
            first = (parts[0], parts[1])
            version = parts[0]
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpProtocolError("too many HTTP header fields", http_status=431)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                raise HttpProtocolError(f"bad HTTP header line {line[:80]!r}")
            headers.append((name.lower(), value.strip()))
        frozen = tuple(headers)
        if _header(frozen, "transfer-encoding", ""):
            raise HttpProtocolError("chunked transfer encoding is not supported; send Content-Length",
                                    http_status=411)
        lengths = {v for k, v in frozen if k == "content-length"}
        if len(lengths) > 1:
            raise HttpProtocolError("conflicting Content-Length headers")
        raw_length = lengths.pop() if lengths else ""
        if raw_length:
            if not raw_length.isdigit() or len(raw_length) > 18:
                raise HttpProtocolError(f"bad Content-Length {raw_length[:24]!r}")
            length = int(raw_length)
        elif self.role is Role.SERVER and first[0] in ("POST", "PUT"):
            raise HttpProtocolError("a request body needs Content-Length", http_status=411)
        else:
            length = 0
        connection = _header(frozen, "connection", "").lower()
        keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        return first, frozen, length, keep_alive


def _encode_headers(headers: tuple[tuple[str, str], ...]) -> bytes:
    out = bytearray()
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise HttpProtocolError(f"header {name!r} contains a line break", remote=False)
        out += f"{name}: {value}\r\n".encode("latin-1")
    return bytes(out)


def encode_request(method: str, target: str, *, host: str, body: bytes,
                   headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    head = (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n").encode("latin-1")
    return head + _encode_headers(headers) + b"\r\n" + body


def encode_response(status: int, *, body: bytes, headers: tuple[tuple[str, str], ...] = (),
                    keep_alive: bool = True) -> bytes:
    reason = REASONS.get(status, "Status")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n").encode("latin-1")
    return head + _encode_headers(headers) + b"\r\n" + body
