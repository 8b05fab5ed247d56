"""asyncio HTTP(S) transport for the CIM bindings: a bounded server for
pushed events and a keep-alive client for get requests and outbound events.

Library and socket exceptions are translated to CimTransportError at one
seam (``map_exceptions``); the HTTP framing lives in the sans-I/O http11.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from adapters.cim.errors import CimTransportError, HttpProtocolError
from adapters.cim.http11 import (
    NEED_DATA,
    HeadTooLarge,
    HttpConnection,
    HttpRequest,
    HttpResponse,
    Role,
    encode_request,
    encode_response,
)

logger = logging.getLogger(__name__)
READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    """What a request handler answers."""

    status: int
    body: bytes
    content_type: str = "text/xml; charset=utf-8"
    close: bool = False


RequestHandler = Callable[[HttpRequest], Awaitable[Reply]]
TooLargeHandler = Callable[[HeadTooLarge], Awaitable[None]]


@contextlib.contextmanager
def map_exceptions(what: str) -> Iterator[None]:
    """The one place where socket, TLS and timeout errors become ours."""
    try:
        yield
    except TimeoutError as exc:
        raise CimTransportError(f"{what}: timed out") from exc
    except asyncio.IncompleteReadError as exc:
        raise CimTransportError(f"{what}: connection closed by peer") from exc
    except ssl.SSLError as exc:
        raise CimTransportError(f"{what}: TLS error: {exc.reason or exc}") from exc
    except OSError as exc:
        raise CimTransportError(f"{what}: {exc.strerror or exc}") from exc


class HttpServer:
    """HTTP/1.1 server on asyncio streams with bounded bodies and connections."""

    def __init__(self, handler: RequestHandler, *, host: str, port: int, max_body: int,
                 ssl_context: ssl.SSLContext | None = None, on_too_large: TooLargeHandler | None = None,
                 read_timeout: float = 30.0, max_connections: int = 64) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._max_body = max_body
        self._ssl = ssl_context
        self._on_too_large = on_too_large
        self._read_timeout = read_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, ssl=self._ssl,
                                                  limit=READ_CHUNK)
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info("CIM endpoint listening on %s:%d%s", self._host, self.port, " (TLS)" if self._ssl else "")

    async def close(self) -> None:
        if self._server is not None:
            self._closing = True
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if self._slots.locked():
                writer.write(encode_response(503, body=b"too many connections", keep_alive=False))
                return
            async with self._slots:
                await self._converse(reader, writer)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            logger.debug("CIM endpoint connection ended: %s", exc)
        except asyncio.CancelledError:
            # Our own shutdown: end quietly (asyncio's stream callback would log a
            # cancelled handler as an error); anyone else's cancellation propagates.
            if not self._closing:
                raise
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = HttpConnection(Role.SERVER, max_body=self._max_body)
        while True:
            try:
                event = conn.next_event()
            except HttpProtocolError as exc:
                writer.write(encode_response(exc.http_status, body=exc.message.encode(), keep_alive=False))
                await writer.drain()
                return
            if event is NEED_DATA:
                if conn.closed:
                    return
                data = await asyncio.wait_for(reader.read(READ_CHUNK), self._read_timeout)
                try:
                    conn.receive_data(data)
                except HttpProtocolError as exc:
                    writer.write(encode_response(exc.http_status, body=exc.message.encode(), keep_alive=False))
                    await writer.drain()
                    return
                continue
            if isinstance(event, HeadTooLarge):
                if self._on_too_large is not None:
                    await self._on_too_large(event)
                body = f"body of {event.content_length} bytes exceeds the limit of {self._max_body} bytes"
                writer.write(encode_response(413, body=body.encode(), keep_alive=False))
                await writer.drain()
                return
            assert isinstance(event, HttpRequest)
            reply = await self._handler(event)
            keep = event.keep_alive and not reply.close
            writer.write(encode_response(reply.status, body=reply.body, keep_alive=keep,
                                         headers=(("Content-Type", reply.content_type),)))
            await writer.drain()
            if not keep:
                return


def client_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class HttpClient:
    """One keep-alive connection to one URL; requests are sent one at a time."""

    def __init__(self, url: str, *, timeout: float, max_body: int, ca_file: str | None = None,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._host_header = parts.netloc.rpartition("@")[2]
        self._ssl = client_ssl_context(ca_file) if parts.scheme == "https" else None
        self._timeout = timeout
        self._max_body = max_body
        self._headers = headers
        self._lock = asyncio.Lock()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def post(self, body: bytes, *, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
        """POST and read the whole response; retries once if a reused connection was stale."""
        async with self._lock:
            reused = self._streams is not None
            try:
                return await self._exchange(body, headers)
            except CimTransportError:
                await self.close()
                if not reused:
                    raise
            return await self._exchange(body, headers)

    async def _exchange(self, body: bytes, headers: tuple[tuple[str, str], ...]) -> HttpResponse:
        with map_exceptions(f"POST {self.url}"):
            async with asyncio.timeout(self._timeout):
                if self._streams is None:
                    self._streams = await asyncio.open_connection(self._host, self._port, ssl=self._ssl,
                                                                  limit=READ_CHUNK)
                reader, writer = self._streams
                writer.write(encode_request("POST", self._target, host=self._host_header, body=body,
                                            headers=self._headers + headers))
                await writer.drain()
                conn = HttpConnection(Role.CLIENT, max_body=self._max_body)
                while True:
                    try:
                        event = conn.next_event()
                    except HttpProtocolError:
                        await self.close()
                        raise
                    if isinstance(event, HttpResponse):
                        if not event.keep_alive:
                            await self.close()
                        return event
                    data = await reader.read(READ_CHUNK)
                    if not data:
                        await self.close()
                        raise CimTransportError(f"POST {self.url}: connection closed before a complete response")
                    conn.receive_data(data)
