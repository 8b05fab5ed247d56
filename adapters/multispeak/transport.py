"""HTTP(S) for SOAP calls to the head-end: httpx, bounded bodies, retries, and the one seam
where library exceptions become ours."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from adapters.multispeak.errors import (
    HttpStatusError,
    MultiSpeakError,
    MultiSpeakTimeout,
    MultiSpeakTransportError,
    SoapFault,
    SoapServerFault,
    XmlTooLarge,
)

logger = logging.getLogger(__name__)


def client_ssl_context(*, verify: bool, ca_file: str = "", cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """TLS for calls to the head-end: system or given CAs, optional client certificate (mTLS)."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextlib.contextmanager
def map_exceptions(url: str) -> Iterator[None]:
    """httpx / OS errors -> MultiSpeakTransportError subclasses (the only translation seam)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise MultiSpeakTimeout(f"{url}: timed out ({type(exc).__name__})") from exc
    except (httpx.TransportError, OSError, ssl.SSLError) as exc:
        raise MultiSpeakTransportError(f"{url}: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise MultiSpeakTransportError(f"{url}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    content_type: str
    body: bytes


class SoapHttpClient:
    """POSTs SOAP envelopes; reads at most ``max_bytes`` of a reply."""

    def __init__(self, *, timeout: float, max_bytes: int, ssl_context: ssl.SSLContext | None = None,
                 max_connections: int = 8) -> None:
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), verify=ssl_context if ssl_context is not None else True,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False, trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, url: str, body: bytes, soap_action: str) -> HttpReply:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{soap_action}"'}
        with map_exceptions(url):
            async with self._client.stream("POST", url, content=body, headers=headers) as response:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isascii() and declared.isdigit() \
                        and (len(declared) > 20 or int(declared) > self.max_bytes):
                    raise XmlTooLarge(f"{url}: reply of {declared} bytes is above the {self.max_bytes}-byte cap")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise XmlTooLarge(f"{url}: reply is above the {self.max_bytes}-byte cap")
                    chunks.append(chunk)
                return HttpReply(response.status_code, response.headers.get("Content-Type", ""), b"".join(chunks))


def retryable(exc: MultiSpeakError) -> bool:
    """Worth another try: the network, a timeout, a 5xx, a server fault. Never a client fault."""
    if isinstance(exc, SoapFault):
        return isinstance(exc, SoapServerFault)
    if isinstance(exc, HttpStatusError):
        return exc.http_status >= 500 or exc.http_status == 429
    return isinstance(exc, MultiSpeakTransportError)


def backoff_delays(base: float, cap: float, retries: int) -> Iterator[float]:
    delay = base
    for _ in range(retries):
        yield min(delay, cap)
        delay *= 2


async def sleep_backoff(delay: float) -> None:
    await asyncio.sleep(delay)
