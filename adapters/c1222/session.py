"""C12.22 association state machines (sans-I/O), client and server side.

``receive_data(bytes)`` feeds the machine (``b""`` means the peer closed),
``next_event()`` returns an event or :data:`NEED_DATA`, ``send(...)`` returns the
bytes to write. Time is an input (``now`` in seconds, any monotonic origin);
nothing here sleeps or touches a socket.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adapters.c1222.codec import (
    C1222_BASE_OID,
    DEFAULT_MAX_APDU_BYTES,
    Apdu,
    ApTitle,
    AuthValue,
    Epsem,
    KeyRing,
    Request,
    Response,
    ResponseControl,
    SecurityMode,
    apdu_length,
    decode_apdu,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    open_epsem,
    seal,
)
from adapters.c1222.errors import (
    C1222ConnectionError,
    C1222Error,
    C1222Timeout,
    FrameTooLarge,
    ResponseError,
    UnexpectedResponse,
)


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = _NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class Responses:
    """The answer to one request APDU: one result per request service, in order."""

    invocation_id: int
    results: tuple[Response | ResponseError, ...]
    apdu: Apdu


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request APDU as a server sees it."""

    apdu: Apdu
    epsem: Epsem
    requests: tuple[Request, ...]


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the stream between APDUs."""


@dataclass(frozen=True, slots=True)
class SecurityParams:
    mode: SecurityMode = SecurityMode.CLEARTEXT
    key_id: int = 0
    keys: KeyRing = field(default_factory=KeyRing)
    base_oid: tuple[int, ...] = C1222_BASE_OID


def _random_iv() -> bytes:
    return secrets.token_bytes(4)


class _Framer:
    """Splits a byte stream into APDUs with a bounded buffer."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buffer = bytearray()
        self.closed = False

    def feed(self, data: bytes) -> None:
        if self.closed and data:
            raise C1222ConnectionError("data after end of stream")
        if not data:
            self.closed = True
            return
        self.buffer += data
        # A header claiming more than the cap is refused by apdu_length; this bounds
        # a stream that never completes its header.
        if len(self.buffer) > self.cap + 8:
            raise FrameTooLarge(f"more than {self.cap} bytes buffered without a complete APDU")

    def unframed(self) -> bytes:
        """The bytes buffered without a complete APDU (evidence for an error)."""
        return bytes(self.buffer)

    def next_apdu(self) -> bytes | ConnectionClosed | None:
        total = apdu_length(self.buffer, self.cap)
        if total is None or total > len(self.buffer):
            if self.closed:
                if self.buffer:
                    raise C1222ConnectionError("peer closed the connection inside an APDU")
                return ConnectionClosed()
            return None
        frame = bytes(self.buffer[:total])
        del self.buffer[:total]
        return frame


class ClientSession:
    """One C12.22 client association: one outstanding request APDU at a time."""

    def __init__(self, *, called_ap_title: ApTitle, calling_ap_title: ApTitle,
                 security: SecurityParams | None = None, max_apdu_bytes: int = DEFAULT_MAX_APDU_BYTES,
                 response_timeout: float = 10.0, first_invocation_id: int = 1,
                 iv_source: Callable[[], bytes] = _random_iv) -> None:
        self.called_ap_title = called_ap_title
        self.calling_ap_title = calling_ap_title
        self.security = security or SecurityParams()
        self.response_timeout = response_timeout
        self._framer = _Framer(max_apdu_bytes)
        self._next_id = first_invocation_id
        self._iv_source = iv_source
        self._pending: tuple[int, tuple[Request, ...]] | None = None
        self.deadline: float | None = None
        # The last APDU taken off the stream (what a response that made no sense looked like).
        self.last_apdu = b""

    @property
    def awaiting_response(self) -> bool:
        return self._pending is not None

    def send(self, requests: Sequence[Request], now: float) -> bytes:
        if self._pending is not None:
            raise C1222Error("a request is already outstanding", remote=False)
        if not requests:
            raise C1222Error("a request APDU needs at least one service", remote=False)
        invocation_id = self._next_id
        self._next_id = self._next_id % 0x7FFFFFFF + 1
        epsem = Epsem(tuple(encode_request(r) for r in requests), self.security.mode, ResponseControl.ALWAYS)
        auth = None
        if self.security.mode is not SecurityMode.CLEARTEXT:
            auth = AuthValue(self.security.key_id, self._iv_source())
        apdu = Apdu(invocation_id, b"", called_ap_title=self.called_ap_title, calling_ap_title=self.calling_ap_title,
                    auth_value=auth)
        wire = seal(apdu, epsem, self.security.keys, self.security.base_oid).encode()
        self._pending = (invocation_id, tuple(requests))
        self.deadline = now + self.response_timeout
        return wire

    def receive_data(self, data: bytes) -> None:
        try:
            self._framer.feed(data)
        except C1222Error as exc:
            exc.keep_raw(self._framer.unframed())
            raise

    def handle_timer(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            self._pending = None
            raise C1222Timeout("no C12.22 response before the deadline")

    def next_event(self) -> Responses | ConnectionClosed | _NeedData:
        """The next event; a C1222Error raised here carries the offending bytes in ``raw``."""
        try:
            frame = self._framer.next_apdu()
        except C1222Error as exc:
            exc.keep_raw(self._framer.unframed())
            raise
        if frame is None:
            return NEED_DATA
        if isinstance(frame, ConnectionClosed):
            return frame
        self.last_apdu = frame
        try:
            return self._responses(frame)
        except C1222Error as exc:
            exc.keep_raw(frame)
            raise

    def _responses(self, frame: bytes) -> Responses:
        apdu = decode_apdu(frame, self._framer.cap)
        if self._pending is None:
            raise UnexpectedResponse("response without an outstanding request")
        invocation_id, requests = self._pending
        # Some stacks omit the echo; a different id is a stale or foreign response.
        if apdu.called_ap_invocation_id not in (None, invocation_id):
            raise UnexpectedResponse(f"response for invocation {apdu.called_ap_invocation_id}, "
                                     f"expected {invocation_id}")
        epsem = open_epsem(apdu, self.security.keys, self.security.base_oid, self._framer.cap)
        if epsem.security_mode is not self.security.mode:
            raise UnexpectedResponse(f"response in security mode {epsem.security_mode.name}, "
                                     f"request used {self.security.mode.name}")
        if len(epsem.services) > len(requests):
            raise UnexpectedResponse(f"{len(epsem.services)} responses to {len(requests)} requests")
        results: list[Response | ResponseError] = []
        for request, service in zip(requests, epsem.services, strict=False):
            try:
                results.append(decode_response(request, service))
            except ResponseError as exc:
                results.append(exc)
        if len(results) < len(requests) and not any(isinstance(r, ResponseError) for r in results):
            raise UnexpectedResponse(f"{len(results)} responses to {len(requests)} requests")
        self._pending = None
        self.deadline = None
        return Responses(invocation_id, tuple(results), apdu)


class ServerSession:
    """The meter side: decodes request APDUs, encodes their responses."""

    def __init__(self, *, keys: KeyRing | None = None, base_oid: tuple[int, ...] = C1222_BASE_OID,
                 max_apdu_bytes: int = DEFAULT_MAX_APDU_BYTES, iv_source: Callable[[], bytes] = _random_iv) -> None:
        self.keys = keys or KeyRing()
        self.base_oid = base_oid
        self._framer = _Framer(max_apdu_bytes)
        self._iv_source = iv_source
        self._next_id = 1

    def receive_data(self, data: bytes) -> None:
        self._framer.feed(data)

    def next_event(self) -> Incoming | ConnectionClosed | _NeedData:
        frame = self._framer.next_apdu()
        if frame is None:
            return NEED_DATA
        if isinstance(frame, ConnectionClosed):
            return frame
        apdu = decode_apdu(frame, self._framer.cap)
        epsem = open_epsem(apdu, self.keys, self.base_oid, self._framer.cap)
        return Incoming(apdu, epsem, tuple(decode_request(s) for s in epsem.services))

    def send(self, incoming: Incoming, results: Sequence[Response | ResponseError]) -> bytes:
        """The response APDU: addressed back to the caller, in the caller's security mode."""
        request = incoming.apdu
        invocation_id = self._next_id
        self._next_id = self._next_id % 0x7FFFFFFF + 1
        auth = None
        if incoming.epsem.security_mode is not SecurityMode.CLEARTEXT:
            key_id = request.auth_value.key_id if request.auth_value is not None else None
            auth = AuthValue(key_id, self._iv_source())
        apdu = Apdu(invocation_id, b"", called_ap_title=request.calling_ap_title,
                    called_ap_invocation_id=request.calling_ap_invocation_id,
                    calling_ap_title=request.called_ap_title, auth_value=auth)
        epsem = Epsem(tuple(encode_response(r) for r in results), incoming.epsem.security_mode, ResponseControl.ALWAYS)
        return seal(apdu, epsem, self.keys, self.base_oid).encode()
