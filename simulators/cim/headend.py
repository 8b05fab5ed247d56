"""The simulated head-end: answers 61968-100 get requests, pushes created
events to a hub endpoint and writes batch files. It speaks through the
adapter's own envelope, payload and HTTP code (the server side of them)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from adapters.cim.errors import CimError, CimTransportError
from adapters.cim.http11 import HttpRequest
from adapters.cim.message import (
    NOUN,
    Binding,
    Envelope,
    Header,
    MessageKind,
    Reply,
    ReplyError,
    build_message,
    soap_action,
    soap_fault,
    wrap,
)
from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.outbound import parse_reply
from adapters.cim.payload import meter_readings
from adapters.cim.reader import read_message
from adapters.cim.transport import HttpClient, HttpServer
from adapters.cim.transport import Reply as HttpReply
from simulators.cim.faults import FaultPlan
from simulators.cim.fleet import Fleet

logger = logging.getLogger(__name__)
GET_PATH = "/cim/GetMeterReadings"
MAX_REQUEST_BYTES = 1024 * 1024


@dataclass
class PushReport:
    messages: int = 0
    results: dict[str, int] = field(default_factory=dict)
    http_statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class HeadEnd:
    def __init__(self, fleet: Fleet, *, faults: FaultPlan | None = None, source: str = "CIM-HEADEND-SIM",
                 binding: Binding = Binding.XML) -> None:
        self.fleet = fleet
        self.faults = faults or FaultPlan()
        self.source = source
        self.binding = binding
        self.requests_served = 0

    # --- messages -----------------------------------------------------------------------------

    def event_message(self, meters: Sequence[str], start: datetime, end: datetime, *, verb: str = "created",
                      binding: Binding | None = None) -> bytes:
        binding = binding or self.binding
        payload = meter_readings(self.fleet.blocks(meters, start, end))
        self.faults.damage_payload(payload)
        header = Header(verb=verb, noun=NOUN, revision="2.0", timestamp=datetime.now(UTC), source=self.source,
                        message_id=str(uuid.uuid4()))
        message = build_message(MessageKind.EVENT, header, payload=[payload], typed=binding is not Binding.XML)
        return self.faults.damage_message(wrap(message, binding))

    def get_reply(self, body: bytes) -> tuple[int, bytes, Binding]:
        """Answer one get RequestMessage (plain or SOAP) with a ResponseMessage."""
        try:
            items = iter(read_message(io.BytesIO(body), MeterReadingMapper(MappingOptions())))
            envelope = next(items)
        except CimError as exc:
            return 400, self._failed(Binding.XML, False, "2.1", exc.reason, exc.message, ""), Binding.XML
        if not isinstance(envelope, Envelope):  # pragma: no cover - the reader yields the envelope first
            return 400, b"no envelope", Binding.XML
        binding, typed, header, request = envelope.binding, envelope.typed, envelope.header, envelope.request
        if envelope.kind is not MessageKind.REQUEST or header.verb != "get" or header.noun != NOUN:
            return 400, self._failed(binding, typed, "2.6", "UNSUPPORTED_MESSAGE",
                                     f"expected get MeterReadings, got {header.verb} {header.noun}",
                                     header.message_id), binding
        if request is None or request.start_time is None or request.end_time is None:
            return 400, self._failed(binding, typed, "2.5", "BAD_REQUEST", "get needs Request/StartTime and EndTime",
                                     header.message_id), binding
        try:
            meters = [m for m in request.ids] or list(self.fleet.meter_ids)
            for meter in meters:
                self.fleet.index_of(meter)
        except KeyError as exc:
            return 200, self._failed(binding, typed, "3.9", "UNKNOWN_METER", f"no meter {exc.args[0]!r}",
                                     header.message_id), binding
        payload = meter_readings(self.fleet.blocks(meters, request.start_time, request.end_time))
        self.faults.damage_payload(payload)
        reply_header = Header(verb="reply", noun=NOUN, timestamp=datetime.now(UTC), source=self.source,
                              correlation_id=header.message_id, message_id=str(uuid.uuid4()))
        message = build_message(MessageKind.RESPONSE, reply_header, reply=Reply("OK"), payload=[payload],
                                typed=typed and binding is not Binding.XML)
        self.requests_served += 1
        return 200, self.faults.damage_message(wrap(message, binding)), binding

    def _failed(self, binding: Binding, typed: bool, code: str, reason: str, details: str,
                correlation_id: str) -> bytes:
        reply = Reply("FAILED", (ReplyError(code, "FATAL", reason, details),))
        if binding is not Binding.XML and code.startswith("2."):
            detail = build_message(MessageKind.FAULT, Header(verb="reply"), reply=reply, typed=True)
            return soap_fault(binding, client_error=True, text=details, detail=detail)
        header = Header(verb="reply", noun=NOUN, timestamp=datetime.now(UTC), source=self.source,
                        correlation_id=correlation_id)
        message = build_message(MessageKind.RESPONSE, header, reply=reply, typed=typed and binding is not Binding.XML)
        return wrap(message, binding)

    # --- serving gets -------------------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpReply:
        if request.target.partition("?")[0] != GET_PATH:
            return HttpReply(404, b"not found", "text/plain")
        if request.method != "POST":
            return HttpReply(405, b"POST a get RequestMessage", "text/plain")
        status, body, binding = await asyncio.to_thread(self.get_reply, request.body)
        return HttpReply(status, body, binding.content_type)

    def server(self, host: str = "127.0.0.1", port: int = 0) -> HttpServer:
        return HttpServer(self.handle, host=host, port=port, max_body=MAX_REQUEST_BYTES)

    # --- pushing events -----------------------------------------------------------------------

    async def push(self, url: str, *, meters_per_message: int = 100, token: str | None = None,
                   binding: Binding | None = None, request_timeout: float = 60.0) -> PushReport:
        """POST the whole fleet as created events, one message per meter group and UTC day."""
        binding = binding or self.binding
        headers: tuple[tuple[str, str], ...] = (("Content-Type", binding.content_type),)
        if binding is not Binding.XML:
            headers += (("SOAPAction", f'"{soap_action(MessageKind.EVENT, "created")}"'),)
        if token:
            headers += (("Authorization", f"Bearer {token}"),)
        report = PushReport()
        client = HttpClient(url, timeout=request_timeout, max_body=16 * 1024 * 1024, headers=headers)
        ids = self.fleet.meter_ids
        try:
            for day in range(self.fleet.days):
                start = self.fleet.start + (self.fleet.end - self.fleet.start) * day / self.fleet.days
                end = self.fleet.start + (self.fleet.end - self.fleet.start) * (day + 1) / self.fleet.days
                for lo in range(0, len(ids), meters_per_message):
                    body = await asyncio.to_thread(self.event_message, ids[lo:lo + meters_per_message], start, end,
                                                   binding=binding)
                    try:
                        response = await client.post(body)
                    except CimTransportError as exc:
                        report.errors.append(exc.message)
                        await client.close()
                        continue
                    report.messages += 1
                    report.http_statuses[response.status] = report.http_statuses.get(response.status, 0) + 1
                    try:
                        reply = parse_reply(response.body, max_bytes=16 * 1024 * 1024).reply
                    except CimError as exc:
                        report.errors.append(f"HTTP {response.status}: {exc.message}")
                        continue
                    assert reply is not None
                    report.results[reply.result] = report.results.get(reply.result, 0) + 1
                    report.errors.extend(f"{e.code} {e.reason}: {e.details}" for e in reply.errors)
        finally:
            await client.close()
        return report

    # --- files --------------------------------------------------------------------------------

    def write_files(self, directory: Path, *, meters_per_file: int = 500) -> list[Path]:
        """One created EventMessage per meter group and day; written to a hidden
        temporary name, then renamed, so a watcher never sees half a file."""
        directory.mkdir(parents=True, exist_ok=True)
        ids = self.fleet.meter_ids
        written: list[Path] = []
        for day in range(self.fleet.days):
            start = self.fleet.start + (self.fleet.end - self.fleet.start) * day / self.fleet.days
            end = self.fleet.start + (self.fleet.end - self.fleet.start) * (day + 1) / self.fleet.days
            for lo in range(0, len(ids), meters_per_file):
                name = f"meterreadings-{start:%Y%m%d}-{lo // meters_per_file + 1:04d}.xml"
                data = self.event_message(ids[lo:lo + meters_per_file], start, end, binding=Binding.XML)
                temporary = directory / f".{name}.tmp"
                temporary.write_bytes(data)
                os.replace(temporary, directory / name)
                written.append(directory / name)
        return written
