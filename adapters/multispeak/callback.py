"""The CB_Server endpoint the hub hosts: the head-end calls it back with the readings of
InitiateMeterReadingsByMeterID (ReadingChangedNotification, IntervalDataNotification,
FormattedBlockNotification), correlated by transactionID."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from adapters.multispeak.errors import MultiSpeakProtocolError, UnknownTransaction, XmlTooLarge
from adapters.multispeak.http_server import HttpRequest, HttpResponse, TooLarge
from adapters.multispeak.readings import Decoded, ReadingDecoder
from adapters.multispeak.soap import CB_SERVER, MSP_NS, MessageHeader, MultiSpeakCodec, SoapMessage, error_objects
from adapters.multispeak.transactions import Transactions
from adapters.port import IngestPort
from gateway.errors import IngestRejected, MeterhubError, Overloaded, StoreUnavailable
from meterhub.v1 import model_pb2 as pb

logger = logging.getLogger(__name__)

BATCH_CONTENT_TYPE = "application/x-protobuf; messageType=meterhub.v1.ReadingBatch"
_NOTIFICATIONS = ("ReadingChangedNotification", "IntervalDataNotification", "FormattedBlockNotification")


def _q(name: str) -> str:
    return f"{{{MSP_NS}}}{name}"


class CallbackEndpoint:
    def __init__(self, *, codec: MultiSpeakCodec, decoder: ReadingDecoder, transactions: Transactions,
                 port: IngestPort, header: MessageHeader, user: str, password: str,
                 clock: Callable[[], datetime]) -> None:
        if codec.service != CB_SERVER:
            raise ValueError("the callback endpoint serves CB_Server")
        self.codec = codec
        self.decoder = decoder
        self.transactions = transactions
        self.port = port
        self.header = header
        self._user = user
        self._password = password
        self._clock = clock
        self.notifications = 0

    async def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(405, b"SOAP endpoint: POST only", "text/plain")
        try:
            message = self.codec.parse_message(request.body)
        except MultiSpeakProtocolError as exc:
            logger.warning("callback refused: %s", exc.message)
            await self.port.dead_letter(request.body, reason_code=exc.reason, reason=f"callback: {exc.message}",
                                        content_type="text/xml")
            return self._fault("Client", f"{exc.reason}: {exc.message}")
        if message.operation not in self.codec.operations:
            return self._fault("Client", f"CB_Server has no operation {message.operation}")
        if self._user and not (hmac.compare_digest(message.header.user, self._user)
                               and hmac.compare_digest(message.header.password, self._password)):
            logger.warning("callback %s refused: wrong UserID / Pwd", message.operation)
            return self._fault("Client.Authentication", "UserID / Pwd not accepted")
        if message.operation == "PingURL":
            return self._reply("PingURL", [])
        errors = await self._notification(message, request.body)
        return self._reply(message.operation, errors)

    async def _notification(self, message: SoapMessage, raw: bytes) -> list[tuple[str, str]]:
        body = message.body
        transaction_id = (body.findtext(_q("transactionID")) or "").strip()
        try:
            pending = self.transactions.match(transaction_id, self._clock())
        except UnknownTransaction as exc:
            logger.warning("%s: %s", message.operation, exc.message)
            await self.port.dead_letter(raw, reason_code=exc.reason, reason=f"{message.operation}: {exc.message}",
                                        content_type="text/xml")
            return [(transaction_id, f"{exc.reason}: {exc.message}")]
        self.notifications += 1
        decoded = self._decode(message.operation, body)
        errors: list[tuple[str, str]] = []
        foreign = {b.meter_id for b in decoded.blocks} | {r.meter_id for r in decoded.register_reads}
        foreign -= pending.meter_ids
        if foreign:
            errors.extend((m, "meter was not part of this transaction") for m in sorted(foreign))
            decoded.blocks = [b for b in decoded.blocks if b.meter_id not in foreign]
            decoded.register_reads = [r for r in decoded.register_reads if r.meter_id not in foreign]
        for rejected in decoded.rejected:
            await self.port.dead_letter(rejected.payload, reason_code=rejected.reason_code,
                                        reason=f"{message.operation} {transaction_id}: {rejected.reason}",
                                        content_type="text/xml")
            errors.append((transaction_id, f"{rejected.reason_code}: {rejected.reason[:200]}"))
        if decoded.blocks or decoded.register_reads:
            batch = pb.ReadingBatch(interval_blocks=decoded.blocks, register_reads=decoded.register_reads)
            try:
                await self.port.submit(batch)
            except IngestRejected as exc:
                logger.warning("%s %s: batch rejected by ingest: %s", message.operation, transaction_id, exc.message)
                await self.port.dead_letter(batch.SerializeToString(), reason_code=exc.reason,
                                            reason=f"{message.operation} {transaction_id}: {exc.message}",
                                            content_type=BATCH_CONTENT_TYPE)
                errors.append((transaction_id, f"{exc.reason}: {exc.message[:200]}"))
        return errors

    def _decode(self, operation: str, body: etree._Element) -> Decoded:
        if operation == "ReadingChangedNotification":
            array = body.find(_q("changedMeterReads"))
            return self.decoder.meter_readings([] if array is None else list(array.iterfind(_q("meterReading"))))
        if operation == "IntervalDataNotification":
            element = body.find(_q("intervalReads"))
            return Decoded() if element is None else self.decoder.interval_data(element)
        element = body.find(_q("changedMeterReads"))
        return Decoded() if element is None else self.decoder.formatted_blocks([element])

    def _reply(self, operation: str, errors: list[tuple[str, str]]) -> HttpResponse:
        result: dict[str, Any] = {f"{operation}Result": error_objects(errors, self._clock()) if errors else None}
        return HttpResponse(200, self.codec.build_response(operation, self.header, **result))

    def _fault(self, code: str, text: str) -> HttpResponse:
        return HttpResponse(500, self.codec.build_fault(code, text))

    def error_response(self, exc: Exception) -> HttpResponse:
        """The answer when handling a request failed on our side: a soap:Server fault (the head-end
        may send again). The HTTP server has logged the exception with its traceback."""
        if isinstance(exc, StoreUnavailable | Overloaded):
            return self._fault("Server", f"{exc.reason}: the hub cannot take readings now; send them again later")
        reason = exc.reason if isinstance(exc, MeterhubError) else "INTERNAL"
        return self._fault("Server", f"{reason}: the hub failed to process the request")

    async def too_large(self, refused: TooLarge) -> None:
        """A body above max_callback_bytes, refused with 413: its request head and first bytes are kept."""
        reason = f"callback: {refused.describe()}"
        logger.warning("%s", reason)
        await self.port.dead_letter(refused.evidence(), reason_code=XmlTooLarge.reason, reason=reason,
                                    content_type="message/http")
