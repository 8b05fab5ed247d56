"""A small asyncio HTTP/1.1 server for SOAP endpoints (h11 is the sans-I/O codec).

Used by the hub's callback endpoint (CB_Server) and by the head-end simulator. Bodies
above the cap are refused before they are read; slow or silent clients time out.
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


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class _BodyTooLarge(Exception):
    pass


class HttpServer:
    """Serves ``handler`` on host:port (port 0 picks a free one) until stopped."""

    def __init__(self, handler: Handler, *, host: str, port: int, max_body_bytes: int,
                 ssl_context: ssl.SSLContext | None = None, read_timeout: float = 30.0) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._max_body = max_body_bytes
        self._ssl = ssl_context
        self._read_timeout = read_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port, ssl=self._ssl)

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
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (TimeoutError, ConnectionError, ssl.SSLError, h11.ProtocolError) as exc:
            logger.debug("HTTP connection ended: %s", exc)
        finally:
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
            except _BodyTooLarge:
                await self._send(conn, writer, HttpResponse(413, b"request body too large", "text/plain"))
                return
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, HttpResponse(400, b"bad HTTP request", "text/plain"))
                return
            if request is None:
                return
            response = await self._handler(request)
            await self._send(conn, writer, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> HttpRequest | None:
        event = await self._next(conn, reader)
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            raise h11.RemoteProtocolError("expected a request")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            part = await self._next(conn, reader)
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > self._max_body:
                    raise _BodyTooLarge
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
        return HttpRequest(event.method.decode("ascii", "replace"), event.target.decode("ascii", "replace"),
                           headers, b"".join(chunks))

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: HttpResponse) -> None:
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body)))]
        try:
            data = conn.send(h11.Response(status_code=response.status, headers=headers))
            data += conn.send(h11.Data(data=response.body)) if response.body else b""
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            return
        writer.write(data)
        await writer.drain()
