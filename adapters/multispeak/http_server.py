"""A small asyncio HTTP/1.1 server for SOAP endpoints (h11 is the sans-I/O codec).

Used by the hub's callback endpoint (CB_Server) and by the head-end simulator. Bodies
above the cap are refused before they are read (and reported to ``on_too_large``); slow
or silent clients time out; connections above ``max_connections`` get 503 at once; a
handler that raises is logged and answered with ``error_response`` (HTTP 500), never a
dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11

logger = logging.getLogger(__name__)

READ_CHUNK = 65536
MAX_HEADER_BYTES = 16384
DEFAULT_MAX_CONNECTIONS = 64
# Body bytes kept with a 413 refusal (for the dead-letter store).
TOO_LARGE_EVIDENCE_BYTES = 4096
_REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A request refused with 413: its head, and the first body bytes when some were read."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    max_body: int
    # The Content-Length that was refused, or None for a body that grew past the cap as it came.
    declared: int | None
    received: int = 0
    first_bytes: bytes = b""

    def describe(self) -> str:
        what = f"{self.method[:16]} {self.target[:200]}"
        if self.declared is not None:
            return (f"{what} declared a body of {self.declared} bytes, above the {self.max_body}-byte cap; "
                    "body not read")
        return f"{what}: body passed the {self.max_body}-byte cap after {self.received} bytes; the rest not read"

    def evidence(self) -> bytes:
        """The request head as received (credentials redacted), then the first body bytes read."""
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        lines += [f"{k}: {'[redacted]' if k in _REDACTED_HEADERS else v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + self.first_bytes


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
TooLargeHandler = Callable[[TooLarge], Awaitable[None]]
ErrorResponder = Callable[[Exception], HttpResponse]


class _BodyTooLarge(Exception):
    def __init__(self, refused: TooLarge) -> None:
        super().__init__(refused.describe())
        self.refused = refused


def _plain_error(exc: Exception) -> HttpResponse:
    return HttpResponse(500, b"internal error", "text/plain")


def _head_of(chunks: list[bytes], size: int) -> bytes:
    out = bytearray()
    for chunk in chunks:
        out += chunk[:size - len(out)]
        if len(out) >= size:
            break
    return bytes(out)


def _content_length(value: str) -> int | None:
    """A Content-Length header value, or None when it is not plain ASCII digits of sane length."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 20 else None


class HttpServer:
    """Serves ``handler`` on host:port (port 0 picks a free one) until stopped."""

    def __init__(self, handler: Handler, *, host: str, port: int, max_body_bytes: int,
                 ssl_context: ssl.SSLContext | None = None, read_timeout: float = 30.0,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, on_too_large: TooLargeHandler | None = None,
                 error_response: ErrorResponder = _plain_error) -> None:
        if max_connections <= 0:
            raise ValueError("max_connections must be positive")
        self._handler = handler
        self._host = host
        self._port = port
        self._max_body = max_body_bytes
        self._ssl = ssl_context
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._on_too_large = on_too_large
        self._error_response = error_response
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._serving = 0
        self.refused_busy = 0

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    async def start(self) -> None:
        # A TLS handshake happens before _accept counts the connection: bound it like a read.
        handshake = {"ssl_handshake_timeout": self._read_timeout} if self._ssl is not None else {}
        self._server = await asyncio.start_server(self._accept, self._host, self._port, ssl=self._ssl,
                                                  **handshake)  # type: ignore[arg-type]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing the transports ends each connection's read with EOF; cancelling the handler
        # tasks instead makes asyncio's stream callback report them as errors.
        for writer in list(self._connections.values()):
            writer.close()
        if self._connections:
            _, pending = await asyncio.wait(list(self._connections), timeout=2.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        # Only connections being served count: the ones refused below leave at once.
        busy = self._serving >= self._max_connections
        if not busy:
            self._serving += 1
        self._connections[task] = writer
        try:
            if busy:
                # Answered without reading the request: a flood costs a socket for a moment, no more.
                self.refused_busy += 1
                if self.refused_busy == 1 or self.refused_busy % 1000 == 0:
                    logger.warning("HTTP endpoint at its limit of %d connections: refused %d so far",
                                   self._max_connections, self.refused_busy)
                writer.write(_BUSY)
                await asyncio.wait_for(writer.drain(), self._read_timeout)
                return
            await self._serve(reader, writer)
        except (TimeoutError, ConnectionError, ssl.SSLError, h11.ProtocolError) as exc:
            logger.debug("HTTP connection ended: %s", exc)
        except Exception:
            # Nothing may escape to asyncio's stream callback (it would log it as unhandled).
            logger.exception("HTTP connection failed")
        finally:
            if not busy:
                self._serving -= 1
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _next(self, conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            data = await asyncio.wait_for(reader.read(READ_CHUNK), self._read_timeout)
            conn.receive_data(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            try:
                request = await self._read_request(conn, reader)
            except _BodyTooLarge as too_large:
                await self._send(conn, writer, HttpResponse(413, b"request body too large", "text/plain"))
                if self._on_too_large is not None:
                    try:
                        await self._on_too_large(too_large.refused)
                    except Exception:
                        logger.exception("recording a refused oversized request failed")
                return
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, HttpResponse(400, b"bad HTTP request", "text/plain"))
                return
            if request is None:
                return
            try:
                response = await self._handler(request)
            except Exception as exc:
                logger.exception("HTTP handler failed on %s %s", request.method, request.path[:200])
                await self._send(conn, writer, self._error_response(exc), close=True)
                return
            await self._send(conn, writer, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> HttpRequest | None:
        # The whole head within one read timeout: a client trickling header bytes is cut off too.
        async with asyncio.timeout(self._read_timeout):
            event = await self._next(conn, reader)
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            raise h11.RemoteProtocolError("expected a request")
        raw_headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers)
        headers = dict(raw_headers)
        method = event.method.decode("ascii", "replace")
        target = event.target.decode("ascii", "replace")
        declared = _content_length(headers.get("content-length", ""))
        if declared is not None and declared > self._max_body:
            raise _BodyTooLarge(TooLarge(method, target, raw_headers, self._max_body, declared))
        chunks: list[bytes] = []
        size = 0
        while True:
            part = await self._next(conn, reader)
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > self._max_body:
                    first = _head_of([*chunks, bytes(part.data)], TOO_LARGE_EVIDENCE_BYTES)
                    raise _BodyTooLarge(TooLarge(method, target, raw_headers, self._max_body, None, size, first))
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
        return HttpRequest(method, target, headers, b"".join(chunks))

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: HttpResponse, *,
                    close: bool = False) -> None:
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
        if close:
            headers.append(("Connection", "close"))
        try:
            data = conn.send(h11.Response(status_code=response.status, headers=headers))
            data += conn.send(h11.Data(data=response.body)) if response.body else b""
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        writer.write(data)
        await writer.drain()
