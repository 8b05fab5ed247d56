"""The CIM source: push endpoint (61968-100 SOAP binding and plain XML POST),
get polling of a head-end, and a watched drop directory for batch files."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.config import CimConfig, parse_config
from adapters.cim.errors import (
    CimError,
    CimTransportError,
    DocumentTooLarge,
    EnvelopeError,
    HttpStatusError,
    ReplyFailed,
    UnsupportedMessage,
)
from adapters.cim.http11 import HeadTooLarge, HttpRequest
from adapters.cim.message import (
    MESSAGE_NAMESPACES,
    NOUN,
    SOAP11,
    SOAP12,
    Binding,
    Envelope,
    Header,
    MessageKind,
    Reply,
    ReplyError,
    RequestParams,
    build_message,
    soap_action,
    soap_fault,
    wrap,
)
from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.reader import Chunk, FailedReading, MappedReading, ReaderItem, next_chunk, read_message
from adapters.cim.readingtype import parse_code, to_reading_type
from adapters.cim.sink import MAX_REPLY_ERRORS, ReadingSink
from adapters.cim.transport import HttpClient, HttpServer, server_ssl_context
from adapters.cim.transport import Reply as HttpReply
from adapters.cim.validation import SchemaValidator
from adapters.cim.xmlsafe import parse_document
from adapters.port import IngestPort
from gateway.errors import MeterhubError, Overloaded, StoreUnavailable

logger = logging.getLogger(__name__)
INLINE_PARSE_BYTES = 256 * 1024
EVENT_VERBS = ("created", "changed")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    envelope: Envelope
    errors: tuple[ReplyError, ...]
    mapped: int
    failed: int

    @property
    def result(self) -> str:
        if not self.errors:
            return "OK"
        return "PARTIAL" if self.mapped else "FAILED"


def sniff_binding(body: bytes) -> Binding:
    """The binding of a body we could not parse, for answering in kind."""
    head = body[:2048]
    if SOAP12.encode() in head:
        return Binding.SOAP12
    if SOAP11.encode() in head:
        return Binding.SOAP11
    return Binding.XML


def response_body(binding: Binding, *, typed: bool, result: str, errors: Sequence[ReplyError],
                  correlation_id: str, source: str) -> bytes:
    header = Header(verb="reply", noun=NOUN, timestamp=utc_now(), source=source, correlation_id=correlation_id,
                    message_id=str(uuid.uuid4()))
    message = build_message(MessageKind.RESPONSE, header, reply=Reply(result, tuple(errors[:MAX_REPLY_ERRORS])),
                            typed=typed and binding is not Binding.XML)
    return wrap(message, binding)


def failure_body(binding: Binding, error: CimError | MeterhubError, *, source: str) -> bytes:
    code = getattr(error, "cim_code", "5.1")
    reply = Reply("FAILED", (ReplyError(code, "FATAL", error.reason, error.message),))
    if binding is Binding.XML:
        message = build_message(MessageKind.RESPONSE, Header(verb="reply", timestamp=utc_now(), source=source),
                                reply=reply)
        return wrap(message, binding)
    detail = build_message(MessageKind.FAULT, Header(verb="reply"), reply=reply, typed=True)
    return soap_fault(binding, client_error=isinstance(error, CimError), text=error.message, detail=detail)


def message_element(root: etree._Element) -> etree._Element:
    """The 61968-100 message of a parsed document (the SOAP Body's child for SOAP)."""
    ns = etree.QName(root).namespace
    if ns in (SOAP11, SOAP12):
        body = root.find(f"{{{ns}}}Body")
        if body is None:
            raise EnvelopeError("SOAP Envelope has no Body")
        for child in body:
            if isinstance(child.tag, str) and etree.QName(child).namespace in MESSAGE_NAMESPACES:
                return child
        raise EnvelopeError("SOAP Body holds no 61968-100 message")
    return root


class MessageProcessor:
    """Parses, validates, maps and delivers one in-memory message (a pushed
    body or a get reply). Parsing runs on the adapter's parser thread."""

    def __init__(self, config: CimConfig, sink: ReadingSink, executor: ThreadPoolExecutor,
                 validator: SchemaValidator | None) -> None:
        self._config = config
        self._sink = sink
        self._executor = executor
        self._validator = validator
        self._options = MappingOptions(config.decimals, config.meter_multiplier_applied, config.meter_id_source)

    def _parse(self, body: bytes) -> list[ReaderItem]:
        if len(body) > self._config.max_message_bytes:
            raise DocumentTooLarge(f"message of {len(body)} bytes exceeds the limit of "
                                   f"{self._config.max_message_bytes} bytes")
        if self._validator is not None:
            self._validator.validate(message_element(parse_document(body, max_bytes=self._config.max_message_bytes)))
        return list(read_message(io.BytesIO(body), MeterReadingMapper(self._options)))

    async def parse(self, body: bytes) -> tuple[Envelope, list[MappedReading], list[FailedReading]]:
        if len(body) <= INLINE_PARSE_BYTES:
            items = self._parse(body)
        else:
            items = await asyncio.get_running_loop().run_in_executor(self._executor, self._parse, body)
        envelope = next((i for i in items if isinstance(i, Envelope)), None)
        if envelope is None:  # pragma: no cover - read_message always yields one or raises
            raise EnvelopeError("message has no envelope")
        mapped = [i for i in items if isinstance(i, MappedReading)]
        failed = [i for i in items if isinstance(i, FailedReading)]
        return envelope, mapped, failed

    async def deliver(self, envelope: Envelope, mapped: list[MappedReading], failed: list[FailedReading], *,
                      origin: str) -> MessageOutcome:
        key = f"cim:{envelope.header.source}:{envelope.header.message_id}" if envelope.header.message_id else ""
        rejected = await self._sink.reject(failed, origin=origin)
        refused = await self._sink.deliver(mapped, key=key, origin=origin)
        return MessageOutcome(envelope, tuple(rejected + refused), len(mapped) - len(refused),
                              len(failed) + len(refused))


def check_event(envelope: Envelope) -> None:
    """What the push endpoint and drop directory accept."""
    header = envelope.header
    if header.noun != NOUN:
        raise UnsupportedMessage(f"noun {header.noun!r} is not {NOUN}")
    if envelope.kind is MessageKind.EVENT and header.verb in EVENT_VERBS:
        return
    if envelope.kind is MessageKind.RESPONSE and header.verb == "reply":
        if envelope.reply is not None and envelope.reply.result == "FAILED":
            raise UnsupportedMessage("a FAILED reply carries no readings to take")
        return
    raise UnsupportedMessage(f"{envelope.root_name} with verb {header.verb!r} is not accepted here; "
                             f"send an EventMessage with verb created or changed")


class PushEndpoint:
    """Receives created / changed MeterReadings events over HTTP(S)."""

    def __init__(self, name: str, config: CimConfig, port: IngestPort, processor: MessageProcessor) -> None:
        assert config.listen is not None
        self._name = name
        self._config = config
        self._port = port
        self._processor = processor
        host, _, port_text = config.listen.rpartition(":")
        tls = None
        if config.tls_cert_file and config.tls_key_file:
            tls = server_ssl_context(config.tls_cert_file, config.tls_key_file)
        self.server = HttpServer(self.handle, host=host.strip("[]"), port=int(port_text),
                                 max_body=config.max_message_bytes, ssl_context=tls, on_too_large=self._too_large)
        self.messages_ok = 0

    def _authorised(self, request: HttpRequest) -> bool:
        if self._config.auth_token is None:
            return True
        given = request.header("authorization")
        expected = f"Bearer {self._config.auth_token}"
        return hmac.compare_digest(given.encode(), expected.encode())

    async def _too_large(self, head: HeadTooLarge) -> None:
        reason = (f"push endpoint {self._name}: {head.method} {head.target} declared a body of "
                  f"{head.content_length} bytes, above max_message_bytes {self._config.max_message_bytes}; "
                  "body not read")
        logger.warning("%s", reason)
        summary = "\n".join(f"{k}: {v}" for k, v in head.headers if k != "authorization").encode()
        await self._port.dead_letter(summary, reason_code=DocumentTooLarge.reason, reason=reason,
                                     content_type="text/plain")

    async def handle(self, request: HttpRequest) -> HttpReply:
        if request.target.partition("?")[0] != self._config.path:
            return HttpReply(404, b"not found", "text/plain")
        if request.method != "POST":
            return HttpReply(405, b"POST a 61968-100 message", "text/plain")
        if not self._authorised(request):
            return HttpReply(401, b"missing or wrong bearer token", "text/plain", close=True)
        body = request.body
        origin = f"push endpoint {self._name}"
        binding = sniff_binding(body)
        try:
            envelope, mapped, failed = await self._processor.parse(body)
            binding = envelope.binding
            check_event(envelope)
        except CimError as exc:
            logger.warning("%s: refused a message: %s", origin, exc.message)
            await self._port.dead_letter(body, reason_code=exc.reason, reason=f"{origin}: {exc.message}",
                                         content_type="application/xml")
            status = 500 if binding is not Binding.XML else exc.http_status
            return HttpReply(status, failure_body(binding, exc, source=self._config.source_name),
                             binding.content_type)
        try:
            outcome = await self._processor.deliver(envelope, mapped, failed, origin=origin)
        except (StoreUnavailable, Overloaded) as exc:
            logger.warning("%s: hub cannot take readings now: %s", origin, exc.message)
            return HttpReply(503, failure_body(binding, exc, source=self._config.source_name), binding.content_type)
        if outcome.result != "FAILED":
            self.messages_ok += 1
        body_out = response_body(binding, typed=envelope.typed, result=outcome.result, errors=outcome.errors,
                                 correlation_id=envelope.header.message_id, source=self._config.source_name)
        status = 200 if outcome.result != "FAILED" or binding is not Binding.XML else 400
        return HttpReply(status, body_out, binding.content_type)


class Poller:
    """Pulls readings from a head-end with 61968-100 ``get`` requests."""

    def __init__(self, name: str, config: CimConfig, port: IngestPort, processor: MessageProcessor,
                 clock: Callable[[], datetime] = utc_now) -> None:
        assert config.head_end_url is not None
        self._name = name
        self._config = config
        self._port = port
        self._processor = processor
        self._clock = clock
        headers: tuple[tuple[str, str], ...] = ()
        if config.head_end_token:
            headers = (("Authorization", f"Bearer {config.head_end_token}"),)
        self._client = HttpClient(config.head_end_url, timeout=config.request_timeout_seconds,
                                  max_body=config.max_message_bytes, ca_file=config.ca_file, headers=headers)
        self._last_end: datetime | None = None
        cim = parse_code(config.poll_reading_type)
        self._reading_type = to_reading_type(cim, decimals=config.decimals)
        self._interval = cim.interval_seconds or 900
        self.polls = 0

    async def close(self) -> None:
        await self._client.close()

    async def window_start(self, now: datetime) -> datetime:
        fallback = self._config.poll_from or now - timedelta(hours=self._config.poll_lookback_hours)
        if not self._config.poll_meters:
            return self._last_end or fallback
        marks = [await self._port.watermark(m, self._reading_type, self._interval) for m in self._config.poll_meters]
        if any(m is None for m in marks):
            return fallback
        return min(m for m in marks if m is not None)

    async def poll_once(self) -> list[MessageOutcome]:
        """One catch-up: get requests from the window start to now, at most
        ``poll_window_hours`` each."""
        now = self._clock()
        start = await self.window_start(now)
        step = timedelta(hours=self._config.poll_window_hours)
        outcomes: list[MessageOutcome] = []
        while start < now:
            end = min(start + step, now)
            outcomes.append(await self.get(start, end))
            self._last_end = end
            start = end
        self.polls += 1
        return outcomes

    async def get(self, start: datetime, end: datetime) -> MessageOutcome:
        binding = self._config.head_end_binding
        header = Header(verb="get", noun=NOUN, timestamp=self._clock(), source=self._config.source_name,
                        message_id=str(uuid.uuid4()))
        request = RequestParams(start_time=start, end_time=end, ids=self._config.poll_meters)
        body = wrap(build_message(MessageKind.REQUEST, header, request=request, typed=binding is not Binding.XML),
                    binding)
        headers: tuple[tuple[str, str], ...] = (("Content-Type", binding.content_type),)
        if binding is not Binding.XML:
            headers += (("SOAPAction", f'"{soap_action(MessageKind.REQUEST, "get")}"'),)
        response = await self._client.post(body, headers=headers)
        origin = f"head-end {self._name} get reply"
        try:
            envelope, mapped, failed = await self._processor.parse(response.body)
        except CimError as exc:
            if response.status != 200:
                raise HttpStatusError(f"head-end answered HTTP {response.status}", http_status=response.status) from exc
            await self._port.dead_letter(response.body, reason_code=exc.reason, reason=f"{origin}: {exc.message}",
                                         content_type="application/xml")
            raise
        if envelope.kind is not MessageKind.RESPONSE or envelope.reply is None:
            raise UnsupportedMessage(f"head-end answered a get with {envelope.root_name}, not a ResponseMessage")
        if envelope.reply.result == "FAILED":
            codes = tuple(e.code for e in envelope.reply.errors)
            details = "; ".join(f"{e.code} {e.reason or e.details}".strip() for e in envelope.reply.errors)
            raise ReplyFailed(f"head-end replied FAILED to get: {details or 'no error details'}", codes=codes)
        outcome = await self._processor.deliver(envelope, mapped, failed, origin=origin)
        logger.info("%s: %d MeterReadings taken, %d refused", origin, outcome.mapped, outcome.failed)
        return outcome

    async def run(self) -> None:
        delay = min(5.0, self._config.poll_interval_seconds)
        try:
            while True:
                try:
                    await self.poll_once()
                    delay = min(5.0, self._config.poll_interval_seconds)
                    await asyncio.sleep(self._config.poll_interval_seconds)
                except (CimError, CimTransportError, StoreUnavailable, Overloaded) as exc:
                    logger.warning("head-end %s: poll failed (%s); retrying in %.0f s", self._name, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._config.poll_interval_seconds)
        finally:
            await self.close()


class DropDirectory:
    """Watches a directory for batch files; each file ends in done/ or failed/
    (with ``<name>.reason``). Files are read streaming, in bounded memory."""

    def __init__(self, name: str, config: CimConfig, port: IngestPort, sink: ReadingSink,
                 executor: ThreadPoolExecutor) -> None:
        assert config.drop_dir is not None
        self._name = name
        self._config = config
        self._port = port
        self._sink = sink
        self._executor = executor
        self.directory = Path(config.drop_dir)
        self.done = self.directory / "done"
        self.failed = self.directory / "failed"
        self._seen: dict[str, tuple[int, int]] = {}
        self._options = MappingOptions(config.decimals, config.meter_multiplier_applied, config.meter_id_source)
        self.files_done = 0
        self.files_failed = 0

    def _candidates(self) -> list[Path]:
        ready: list[Path] = []
        current: dict[str, tuple[int, int]] = {}
        for path in sorted(self.directory.iterdir()):
            if not path.is_file() or path.name.startswith(".") or path.suffix.lower() != ".xml":
                continue
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            current[path.name] = signature
            # A file is taken once it looked the same on two scans (writers may still be busy).
            if self._seen.get(path.name) == signature:
                ready.append(path)
        self._seen = current
        return ready

    async def scan_once(self) -> int:
        self.done.mkdir(parents=True, exist_ok=True)
        self.failed.mkdir(parents=True, exist_ok=True)
        handled = 0
        for path in self._candidates():
            await self.process(path)
            self._seen.pop(path.name, None)
            handled += 1
        return handled

    async def run(self) -> None:
        while True:
            try:
                await self.scan_once()
            except (StoreUnavailable, Overloaded) as exc:
                logger.warning("drop directory %s: hub unavailable (%s); files stay for the next scan",
                               self.directory, exc.message)
            except OSError as exc:
                logger.warning("drop directory %s: %s", self.directory, exc)
            await asyncio.sleep(self._config.drop_poll_seconds)

    async def _step(self, items: Iterator[ReaderItem]) -> Chunk:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, next_chunk, items, self._config.batch_max_reads)

    async def process(self, path: Path) -> bool:
        """Ingest one file; True when it went to done/. Store outages propagate
        and leave the file where it is."""
        origin = f"drop file {path.name}"
        stat = await asyncio.to_thread(path.stat)
        problems: list[str] = []
        taken = 0
        if stat.st_size > self._config.max_file_bytes:
            too_large = DocumentTooLarge(f"file of {stat.st_size} bytes exceeds max_file_bytes "
                                         f"{self._config.max_file_bytes}")
            await self._port.dead_letter(b"", reason_code=too_large.reason, reason=f"{origin}: {too_large.message}",
                                         content_type="application/xml")
            return self._finish(path, [f"{too_large.reason}: {too_large.message}"], taken)
        key_base = f"cim-file:{path.name}:{stat.st_size}:{stat.st_mtime_ns}"
        handle: IO[bytes] = await asyncio.to_thread(path.open, "rb")
        try:
            items = read_message(handle, MeterReadingMapper(self._options))
            index = 0
            while True:
                chunk = await self._step(items)
                error: CimError | None = chunk.error
                if error is None and chunk.envelope is not None:
                    try:
                        check_event(chunk.envelope)
                    except CimError as exc:
                        error = exc
                errors = await self._sink.reject(chunk.failed, origin=origin)
                errors += await self._sink.deliver(chunk.mapped, key=f"{key_base}:{index}", origin=origin)
                problems.extend(f"{e.reason}: {e.details}" for e in errors)
                taken += len(chunk.mapped)
                index += 1
                if error is not None:
                    problems.append(f"{error.reason}: {error.message}")
                    await self._port.dead_letter(await self._raw_excerpt(path), reason_code=error.reason,
                                                 reason=f"{origin}: {error.message} ({taken} MeterReadings taken "
                                                        "before it)", content_type="application/xml")
                    break
                if chunk.done:
                    break
        finally:
            await asyncio.to_thread(handle.close)
        return self._finish(path, problems, taken)

    async def _raw_excerpt(self, path: Path) -> bytes:
        limit = min(self._config.max_message_bytes, 1024 * 1024)

        def read() -> bytes:
            with path.open("rb") as handle:
                return handle.read(limit)
        return await asyncio.to_thread(read)

    def _finish(self, path: Path, problems: list[str], taken: int) -> bool:
        if not problems:
            path.replace(self.done / path.name)
            self.files_done += 1
            logger.info("drop file %s: %d MeterReadings taken", path.name, taken)
            return True
        target = self.failed / path.name
        path.replace(target)
        text = [f"{path.name}: {len(problems)} problem(s); {taken} MeterReadings were ingested"]
        text += problems[:1000]
        (self.failed / f"{path.name}.reason").write_text("\n".join(text) + "\n", encoding="utf-8")
        self.files_failed += 1
        logger.warning("drop file %s moved to failed/: %s", path.name, problems[0])
        return False


class CimAdapter:
    """Runs whichever of push endpoint, poller and drop directory the config enables."""

    def __init__(self, name: str, config: CimConfig, port: IngestPort) -> None:
        self.name = name
        self.config = config
        self.port = port
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cim-{name}")
        self.sink = ReadingSink(port, name)
        validator = SchemaValidator() if config.validate_schema else None
        self.processor = MessageProcessor(config, self.sink, self._executor, validator)
        self.endpoint = PushEndpoint(name, config, port, self.processor) if config.listen else None
        self.poller = Poller(name, config, port, self.processor) if config.head_end_url else None
        self.drop = DropDirectory(name, config, port, self.sink, self._executor) if config.drop_dir else None
        self.started = asyncio.Event()

    async def run(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.endpoint is not None:
                    await stack.enter_async_context(self.endpoint.server)
                self.started.set()
                async with asyncio.TaskGroup() as group:
                    if self.poller is not None:
                        group.create_task(self.poller.run(), name=f"{self.name}-poll")
                    if self.drop is not None:
                        group.create_task(self.drop.run(), name=f"{self.name}-drop")
                    group.create_task(asyncio.Event().wait(), name=f"{self.name}-serve")
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)


def create_adapter(name: str, config: Mapping[str, Any], port: IngestPort) -> CimAdapter:
    """Entry point ``adapters.cim:create_adapter`` (group meterhub.adapters)."""
    return CimAdapter(name, parse_config(config), port)
