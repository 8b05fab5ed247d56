"""The MultiSpeak v4.1 adapter: polls a head-end's MR_Server and hosts the CB_Server callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.multispeak.callback import CallbackEndpoint
from adapters.multispeak.config import MultiSpeakConfig
from adapters.multispeak.errors import (
    HttpStatusError,
    MultiSpeakError,
    MultiSpeakProtocolError,
    SoapFault,
    UnexpectedContent,
)
from adapters.multispeak.http_server import HttpServer
from adapters.multispeak.normalize import StatusMapper
from adapters.multispeak.readings import Decoded, ReadingDecoder
from adapters.multispeak.soap import CB_SERVER, MR_SERVER, MSP_NS, MessageHeader, MultiSpeakCodec, SoapMessage
from adapters.multispeak.transactions import Transactions
from adapters.multispeak.transport import (
    SoapHttpClient,
    backoff_delays,
    client_ssl_context,
    retryable,
    server_ssl_context,
    sleep_backoff,
)
from adapters.port import IngestPort
from gateway.errors import IngestRejected
from meterhub.v1 import model_pb2 as pb

logger = logging.getLogger(__name__)

# Asked for a channel's watermark before any block of the meter was seen.
DEFAULT_READING_TYPE = pb.ReadingType(commodity=pb.COMMODITY_ELECTRICITY, kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY,
                                      unit=pb.UNIT_WATT_HOUR, flow_direction=pb.FLOW_DIRECTION_DELIVERED,
                                      accumulation=pb.ACCUMULATION_DELTA)
MAX_PAGES = 10_000


def _q(name: str) -> str:
    return f"{{{MSP_NS}}}{name}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MultiSpeakAdapter:
    def __init__(self, name: str, config: MultiSpeakConfig, port: IngestPort, *,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.name = name
        self.config = config
        self.port = port
        self._clock = clock
        self.mr = MultiSpeakCodec(MR_SERVER, max_bytes=config.max_response_bytes)
        self.statuses = StatusMapper()
        self.decoder = ReadingDecoder(self.mr, self.statuses, value_exponent=config.value_exponent,
                                      interval_seconds=config.interval_seconds)
        self.header = MessageHeader(user=config.user, password=config.password, app_name=config.app_name,
                                    app_version=config.app_version, company=config.company)
        self.transactions = Transactions()
        self.callback_server: HttpServer | None = None
        self.callback: CallbackEndpoint | None = None
        self._http: SoapHttpClient | None = None
        self._progress: dict[str, datetime] = {}
        self._channel_type: dict[str, pb.ReadingType] = {}
        self._callback_ready = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        async with self.session():
            tasks = [self._poll_forever()]
            if self.config.initiate_interval_seconds > 0:
                tasks.append(self._initiate_forever())
            await asyncio.gather(*tasks)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[MultiSpeakAdapter]:
        """The HTTP client and the callback endpoint, without the polling loops (run() adds them)."""
        cfg = self.config
        tls = None
        if cfg.url.startswith("https://"):
            tls = client_ssl_context(verify=cfg.tls_verify, ca_file=cfg.tls_ca_file, cert_file=cfg.tls_cert_file,
                                     key_file=cfg.tls_key_file)
        self._http = SoapHttpClient(timeout=cfg.timeout_seconds, max_bytes=cfg.max_response_bytes, ssl_context=tls,
                                    max_connections=cfg.max_concurrency)
        try:
            if cfg.callback_listen:
                await self._start_callback()
            yield self
        finally:
            if self.callback_server is not None:
                await self.callback_server.stop()
                self.callback_server = None
            await self._http.aclose()
            self._http = None

    async def wait_callback_ready(self) -> str:
        """The callback URL, once the endpoint listens (for tests and the demo)."""
        await self._callback_ready.wait()
        return self.callback_url

    @property
    def callback_url(self) -> str:
        if self.config.callback_url:
            return self.config.callback_url
        if self.callback_server is None:
            raise RuntimeError("callback endpoint is not running")
        host, _ = self.config.callback_host_port
        return f"{self.callback_server.scheme}://{host}:{self.callback_server.port}/CB_Server.asmx"

    async def _start_callback(self) -> None:
        cfg = self.config
        codec = MultiSpeakCodec(CB_SERVER, max_bytes=cfg.max_callback_bytes)
        decoder = ReadingDecoder(codec, self.statuses, value_exponent=cfg.value_exponent,
                                 interval_seconds=cfg.interval_seconds)
        self.callback = CallbackEndpoint(codec=codec, decoder=decoder, transactions=self.transactions, port=self.port,
                                         header=MessageHeader(app_name=cfg.app_name, app_version=cfg.app_version),
                                         user=cfg.callback_user, password=cfg.callback_password, clock=self._clock)
        tls = None
        if cfg.callback_tls_cert_file:
            tls = server_ssl_context(cfg.callback_tls_cert_file, cfg.callback_tls_key_file)
        host, port = cfg.callback_host_port
        self.callback_server = HttpServer(self.callback.handle, host=host, port=port,
                                          max_body_bytes=cfg.max_callback_bytes, ssl_context=tls,
                                          read_timeout=cfg.timeout_seconds,
                                          max_connections=cfg.callback_max_connections,
                                          on_too_large=self.callback.too_large,
                                          error_response=self.callback.error_response)
        await self.callback_server.start()
        self._callback_ready.set()
        logger.info("%s: MultiSpeak callback endpoint at %s", self.name, self.callback_url)

    # -- SOAP calls -------------------------------------------------------------------------------

    async def call(self, operation: str, **params: Any) -> tuple[SoapMessage, bytes]:
        """One MR_Server operation with retries; returns the parsed reply and its bytes.

        A reply that cannot be parsed goes to the dead-letter store before the error is raised.
        """
        assert self._http is not None, "call() runs inside run()"
        body = self.mr.build_request(operation, self.header, **params)
        delays = backoff_delays(self.config.retry_backoff_seconds, self.config.retry_backoff_max_seconds,
                                self.config.max_retries)
        while True:
            try:
                reply = await self._http.post(self.config.url, body, self.mr.soap_action(operation))
                if not reply.body and reply.status != 200:
                    raise HttpStatusError(f"{operation}: HTTP {reply.status} without a body", http_status=reply.status)
                try:
                    message = self.mr.parse_response(operation, reply.body)
                except SoapFault:
                    raise
                except MultiSpeakProtocolError as exc:
                    if reply.status != 200 and not isinstance(exc, UnexpectedContent):
                        raise HttpStatusError(f"{operation}: HTTP {reply.status}: {exc.message}",
                                              http_status=reply.status) from exc
                    await self.port.dead_letter(reply.body, reason_code=exc.reason,
                                                reason=f"{operation} reply: {exc.message}", content_type="text/xml")
                    raise
                if reply.status != 200:
                    raise HttpStatusError(f"{operation}: HTTP {reply.status}", http_status=reply.status)
                return message, reply.body
            except MultiSpeakError as exc:
                delay = next(delays, None) if retryable(exc) else None
                if delay is None:
                    raise
                logger.info("%s: %s failed (%s); retrying in %.1f s", self.name, operation, exc.message, delay)
                await sleep_backoff(delay)

    # -- polling ----------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.config.poll_interval_seconds)

    async def poll_once(self) -> int:
        """Read every meter up to now (or ``end``); returns the reads submitted."""
        limit = asyncio.Semaphore(self.config.max_concurrency)

        async def one(meter_id: str) -> int:
            async with limit:
                try:
                    return await self.poll_meter(meter_id)
                except MultiSpeakError as exc:
                    logger.warning("%s: meter %s: %s", self.name, meter_id, exc.message)
                    return 0

        counts = await asyncio.gather(*(one(m) for m in self.config.meters))
        return sum(counts)

    def _now_aligned(self) -> datetime:
        step = self.config.interval_seconds
        now = self._clock()
        aligned = datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)
        return min(aligned, self.config.end) if self.config.end else aligned

    async def poll_meter(self, meter_id: str) -> int:
        cfg = self.config
        until = self._now_aligned()
        rt = self._channel_type.get(meter_id, DEFAULT_READING_TYPE)
        stored = await self.port.watermark(meter_id, rt, cfg.interval_seconds)
        start = max(filter(None, (stored, self._progress.get(meter_id), cfg.first_read_start(self._clock()))))
        if stored is None and meter_id not in self._progress:
            start = cfg.first_read_start(self._clock())
        reads = 0
        while start < until:
            stop = min(start + timedelta(days=cfg.request_days), until)
            reads += await self._read_profile(meter_id, start, stop)
            self._progress[meter_id] = stop
            start = stop
        if cfg.poll_registers:
            reads += await self._read_registers(meter_id, until)
        return reads

    async def _read_profile(self, meter_id: str, start: datetime, stop: datetime) -> int:
        intervals = self.config.lp_format == "intervalData"
        operation = "GetLPReadingsByMeterIDIntervalData" if intervals else "GetLPReadingsByMeterIDFormattedBlock"
        last_received = ""
        reads = 0
        for _ in range(MAX_PAGES):
            message, raw = await self.call(operation, meterID=self._meter_id(meter_id), profileStartDate=start,
                                           profileEndDate=stop, lastReceived=last_received)
            result = message.body.find(_q(f"{operation}Result"))
            items = [] if result is None else list(result)
            decoded = Decoded()
            if intervals:
                for element in items:
                    decoded.extend(self.decoder.interval_data(element))
            else:
                decoded.extend(self.decoder.formatted_blocks(items))
            reads += await self._deliver(decoded, raw, operation)
            remaining = message.header.objects_remaining
            if remaining is None or remaining <= 0 or not message.header.last_sent:
                return reads
            if message.header.last_sent == last_received:
                raise UnexpectedContent(f"{operation}: LastSent {last_received!r} repeats; paging does not advance")
            last_received = message.header.last_sent
        raise UnexpectedContent(f"{operation}: more than {MAX_PAGES} pages for meter {meter_id}")

    async def _read_registers(self, meter_id: str, until: datetime) -> int:
        start = until - timedelta(seconds=self.config.interval_seconds)
        message, raw = await self.call("GetReadingsByMeterID", meterID=self._meter_id(meter_id), startDate=start,
                                       endDate=until)
        result = message.body.find(_q("GetReadingsByMeterIDResult"))
        elements = [] if result is None else list(result.iterfind(_q("meterReading")))
        return await self._deliver(self.decoder.meter_readings(elements), raw, "GetReadingsByMeterID")

    @staticmethod
    def _meter_id(meter_id: str) -> dict[str, str]:
        return {"_value_1": meter_id, "meterNo": meter_id, "serviceType": "Electric"}

    async def _deliver(self, decoded: Decoded, raw: bytes, operation: str) -> int:
        """Good data is submitted; each undecodable element goes to the dead-letter store."""
        for rejected in decoded.rejected:
            logger.warning("%s: %s: %s", self.name, operation, rejected.reason)
            await self.port.dead_letter(rejected.payload, reason_code=rejected.reason_code,
                                        reason=f"{operation}: {rejected.reason}", content_type="text/xml")
        if not decoded.blocks and not decoded.register_reads:
            return 0
        for block in decoded.blocks:
            self._channel_type.setdefault(block.meter_id, block.reading_type)
        key = f"multispeak:{self.name}:{hashlib.sha256(raw).hexdigest()[:32]}"
        batch = pb.ReadingBatch(idempotency_key=key, interval_blocks=decoded.blocks,
                                register_reads=decoded.register_reads)
        try:
            await self.port.submit(batch)
        except IngestRejected as exc:
            logger.warning("%s: %s batch rejected by ingest: %s", self.name, operation, exc.message)
            await self.port.dead_letter(batch.SerializeToString(), reason_code=exc.reason,
                                        reason=f"{operation}: {exc.message}", content_type="application/x-protobuf")
            return 0
        return decoded.reads

    # -- asynchronous reads -----------------------------------------------------------------------

    async def _initiate_forever(self) -> None:
        while True:
            await self.initiate_reads(self.config.meters)
            await asyncio.sleep(self.config.initiate_interval_seconds)

    async def initiate_reads(self, meter_ids: tuple[str, ...] | list[str]) -> list[str]:
        """InitiateMeterReadingsByMeterID in batches; returns the transaction ids opened."""
        cfg = self.config
        opened: list[str] = []
        ttl = timedelta(seconds=cfg.transaction_expiry_seconds)
        for i in range(0, len(meter_ids), cfg.initiate_batch_size):
            chunk = list(meter_ids[i:i + cfg.initiate_batch_size])
            transaction_id = uuid.uuid4().hex
            self.transactions.open(transaction_id, frozenset(chunk), self._clock(), ttl)
            try:
                message, _ = await self.call(
                    "InitiateMeterReadingsByMeterID", meterIDs={"meterID": [self._meter_id(m) for m in chunk]},
                    responseURL=self.callback_url, transactionID=transaction_id,
                    expTime={"_value_1": cfg.transaction_expiry_seconds / 60, "units": "Minutes"})
            except MultiSpeakError as exc:
                logger.warning("%s: InitiateMeterReadingsByMeterID failed: %s", self.name, exc.message)
                continue
            opened.append(transaction_id)
            result = message.body.find(_q("InitiateMeterReadingsByMeterIDResult"))
            for error in [] if result is None else result.iterfind(_q("errorObject")):
                logger.warning("%s: head-end refused reading %s: %s", self.name, error.get("objectID"),
                               error.get("errorString") or error.text)
        return opened
