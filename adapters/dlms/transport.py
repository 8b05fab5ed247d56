"""The asyncio layer of the DLMS client: one TCP connection, one association.

Timeouts on every wait, and library exceptions mapped to DlmsTransportError at
one seam (:func:`map_exceptions`). A peer that closes mid-transfer ends the
read with an error at once; nothing here loops without reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol

from adapters.dlms.cosem import AccessDescriptor, AttributeRef
from adapters.dlms.errors import DlmsProtocolError, DlmsTransportError
from adapters.dlms.session import (
    Associated,
    Authenticated,
    BlockReceived,
    ClientEvent,
    ClientSession,
    GetResult,
    NeedData,
    Released,
    SecuritySettings,
)

logger = logging.getLogger(__name__)

READ_CHUNK = 65536


class ByteStream(Protocol):
    """What the client needs of a connection (asyncio streams fit; tests may script one)."""

    async def read(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class _AsyncioStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, n: int) -> bytes:
        return await self._reader.read(n)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    async def wait_closed(self) -> None:
        await self._writer.wait_closed()


@contextlib.contextmanager
def map_exceptions(what: str) -> Iterator[None]:
    """The one place where socket and timeout errors become DlmsTransportError."""
    try:
        yield
    except TimeoutError as exc:
        raise DlmsTransportError(f"{what}: timed out", reason="DLMS_TIMEOUT") from exc
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
        raise DlmsTransportError(f"{what}: {exc!r}") from exc


async def open_stream(host: str, port: int, connect_timeout: float) -> ByteStream:
    with map_exceptions(f"connect {host}:{port}"):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout)
    return _AsyncioStream(reader, writer)


class DlmsClient:
    """An association over a stream: associate, get (with block transfer), release."""

    def __init__(self, stream: ByteStream, session: ClientSession, *, timeout: float) -> None:
        self._stream = stream
        self.session = session
        self._timeout = timeout

    async def _exchange(self, request: bytes) -> ClientEvent:
        with map_exceptions("exchange"):
            self._stream.write(request)
            await asyncio.wait_for(self._stream.drain(), self._timeout)
            while True:
                event = self.session.next_event()
                if not isinstance(event, NeedData):
                    return event
                data = await asyncio.wait_for(self._stream.read(READ_CHUNK), self._timeout)
                if not data:
                    raise DlmsTransportError("peer closed the connection mid-transfer", reason="DLMS_PEER_CLOSED")
                self.session.receive_data(data)

    async def associate(self) -> Associated:
        event = await self._exchange(self.session.associate())
        if not isinstance(event, Associated):
            raise DlmsProtocolError(f"expected an AARE, got {type(event).__name__}", reason="DLMS_UNEXPECTED_APDU")
        if event.hls_pending:
            done = await self._exchange(self.session.hls_reply())
            if not isinstance(done, Authenticated):
                raise DlmsProtocolError("HLS did not complete", reason="DLMS_UNEXPECTED_APDU")
        return event

    async def get(self, attribute: AttributeRef, access: AccessDescriptor | None = None) -> bytes:
        event = await self._exchange(self.session.get(attribute, access))
        while isinstance(event, BlockReceived):
            event = await self._exchange(self.session.get_next())
        if not isinstance(event, GetResult):
            raise DlmsProtocolError(f"expected a Get-Response, got {type(event).__name__}",
                                    reason="DLMS_UNEXPECTED_APDU")
        return event.data

    async def release(self) -> None:
        event = await self._exchange(self.session.release())
        if not isinstance(event, Released):
            raise DlmsProtocolError("expected an RLRE", reason="DLMS_UNEXPECTED_APDU")

    async def close(self) -> None:
        self._stream.close()
        with contextlib.suppress(OSError, TimeoutError, ConnectionError):
            await asyncio.wait_for(self._stream.wait_closed(), 1.0)


class Association:
    """``async with Association(...) as client:`` connects, associates, and on exit
    releases (when still associated) and closes."""

    def __init__(self, host: str, port: int, settings: SecuritySettings, *, client_wport: int = 16,
                 server_wport: int = 1, max_pdu_size: int = 1024, connect_timeout: float = 5.0,
                 response_timeout: float = 10.0, max_response_bytes: int = 4 * 1024 * 1024) -> None:
        self._host = host
        self._port = port
        self._settings = settings
        self._session_args = (client_wport, server_wport, max_pdu_size, max_response_bytes)
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._client: DlmsClient | None = None

    async def __aenter__(self) -> DlmsClient:
        client_wport, server_wport, max_pdu, max_response = self._session_args
        session = ClientSession(self._settings, challenge=secrets.token_bytes(16), client_wport=client_wport,
                                server_wport=server_wport, max_pdu_size=max_pdu, max_response_bytes=max_response)
        stream = await open_stream(self._host, self._port, self._connect_timeout)
        self._client = DlmsClient(stream, session, timeout=self._response_timeout)
        try:
            await self._client.associate()
        except BaseException:
            await self._client.close()
            raise
        return self._client

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        client = self._client
        if client is None:
            return
        try:
            if exc is None:
                await client.release()
        finally:
            await client.close()

