"""Outbound: stored canonical data as 61968-100 ``created`` MeterReadings
EventMessages, POSTed to an integrator's endpoint.

``build_created_event`` is pure; ``EventSender`` is the thin async layer the
hub hooks to its Subscribe stream (one call per batch of blocks).
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from adapters.cim.config import OutboundConfig
from adapters.cim.errors import CimError, CimTransportError, HttpStatusError, ReplyFailed, UnsupportedMessage
from adapters.cim.message import NOUN, Binding, Envelope, Header, MessageKind, Reply, build_message, soap_action, wrap
from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.payload import meter_readings
from adapters.cim.reader import read_message
from adapters.cim.transport import HttpClient
from meterhub.v1 import model_pb2 as pb

logger = logging.getLogger(__name__)
RETRY_STATUSES = (502, 503, 504)


def build_created_event(blocks: Sequence[pb.IntervalBlock], register_reads: Sequence[pb.RegisterRead] = (), *,
                        source: str, binding: Binding = Binding.XML, verb: str = "created",
                        message_id: str | None = None, now: datetime | None = None) -> bytes:
    """A ``created`` (or ``changed``) MeterReadings EventMessage for the binding."""
    header = Header(verb=verb, noun=NOUN, revision="2.0", timestamp=now or datetime.now(UTC), source=source,
                    message_id=message_id or str(uuid.uuid4()))
    payload = meter_readings(blocks, register_reads)
    return wrap(build_message(MessageKind.EVENT, header, payload=[payload], typed=binding is not Binding.XML),
                binding)


def parse_reply(body: bytes, *, max_bytes: int) -> Envelope:
    """The Envelope of a ResponseMessage answering something we sent."""
    if len(body) > max_bytes:
        raise CimError(f"reply of {len(body)} bytes exceeds {max_bytes} bytes")
    envelope = next(iter(read_message(io.BytesIO(body), MeterReadingMapper(MappingOptions()))))
    if not isinstance(envelope, Envelope) or envelope.kind is not MessageKind.RESPONSE or envelope.reply is None:
        raise UnsupportedMessage("the peer did not answer with a ResponseMessage")
    return envelope


class EventSender:
    """POSTs EventMessages to one endpoint, retrying transport failures with backoff."""

    def __init__(self, config: OutboundConfig, *, sleep: Callable[[float], object] = asyncio.sleep) -> None:
        self.config = config
        headers: tuple[tuple[str, str], ...] = (("Content-Type", config.binding.content_type),)
        if config.auth_token:
            headers += (("Authorization", f"Bearer {config.auth_token}"),)
        self._client = HttpClient(config.url, timeout=config.timeout_seconds, max_body=config.max_reply_bytes,
                                  ca_file=config.ca_file, headers=headers)
        self.sent = 0

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> EventSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, blocks: Sequence[pb.IntervalBlock], register_reads: Sequence[pb.RegisterRead] = (), *,
                   verb: str = "created") -> Reply:
        """Send one event; returns the peer's Reply (OK or PARTIAL), raises
        ReplyFailed on FAILED and CimTransportError when retries are exhausted."""
        body = build_created_event(blocks, register_reads, source=self.config.source_name,
                                   binding=self.config.binding, verb=verb)
        return await self.send_raw(body, verb=verb)

    async def send_raw(self, body: bytes, *, verb: str = "created") -> Reply:
        headers: tuple[tuple[str, str], ...] = ()
        if self.config.binding is not Binding.XML:
            headers = (("SOAPAction", f'"{soap_action(MessageKind.EVENT, verb)}"'),)
        delay = 0.5
        for attempt in range(self.config.retries + 1):
            try:
                response = await self._client.post(body, headers=headers)
                if response.status in RETRY_STATUSES:
                    raise HttpStatusError(f"{self.config.url} answered HTTP {response.status}",
                                          http_status=response.status)
            except CimTransportError as exc:
                if attempt == self.config.retries:
                    raise
                logger.warning("CIM event to %s failed (%s); retry %d in %.1f s", self.config.url, exc.message,
                               attempt + 1, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            try:
                envelope = parse_reply(response.body, max_bytes=self.config.max_reply_bytes)
            except CimError as exc:
                raise HttpStatusError(f"{self.config.url} answered HTTP {response.status} without a "
                                      f"ResponseMessage: {exc.message}", http_status=response.status) from exc
            reply = envelope.reply
            assert reply is not None
            if reply.result == "FAILED":
                details = "; ".join(f"{e.code} {e.reason} {e.details}".strip() for e in reply.errors)
                raise ReplyFailed(f"{self.config.url} replied FAILED: {details}",
                                  codes=tuple(e.code for e in reply.errors))
            self.sent += 1
            return reply
        raise AssertionError("unreachable")  # pragma: no cover
