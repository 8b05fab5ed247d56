"""Streaming reader of 61968-100 messages carrying 61968-9 MeterReadings.

Works on any binary file-like object (an HTTP body in a BytesIO, a dropped
file of many megabytes) with lxml iterparse and the hardened options: each
``MeterReading`` is mapped as soon as it ends, then cleared and unlinked, so
memory stays bounded by one MeterReading whatever the size of the document.

Yields the Envelope first (when the Payload starts, or at the end of a
message without one), then one MappedReading or FailedReading per
MeterReading. Envelope-level problems raise; a MeterReading that cannot be
mapped becomes a FailedReading carrying its own bytes and the precise reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.errors import CimError, ContentError, EnvelopeError, UnsupportedMessage
from adapters.cim.message import (
    GENERIC_ROOTS,
    MESSAGE_NAMESPACES,
    MR,
    MRM,
    MSG,
    MSG_DRAFT,
    SOAP11,
    SOAP12,
    TYPED_ROOTS,
    Binding,
    Envelope,
    Header,
    MessageKind,
    Reply,
    RequestParams,
    decode_header,
    decode_reply,
    decode_request,
)
from adapters.cim.normalize import T_METER_READING, CanonicalReadings, MeterReadingMapper, safe_meter_id
from adapters.cim.xmlsafe import iterparse

T_METER_READINGS = f"{{{MR}}}MeterReadings"
_TAGS = (f"{{{SOAP11}}}*", f"{{{SOAP12}}}*", f"{{{MSG}}}*", f"{{{MSG_DRAFT}}}*", f"{{{MRM}}}*",
         T_METER_READING, T_METER_READINGS)
MAX_FAILED_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class MappedReading:
    index: int
    readings: CanonicalReadings


@dataclass(frozen=True, slots=True)
class FailedReading:
    index: int
    meter_id: str
    error: ContentError
    raw: bytes


ReaderItem = Envelope | MappedReading | FailedReading


def _localname(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _namespace(element: etree._Element) -> str:
    return etree.QName(element).namespace or ""


def read_message(source: IO[bytes], mapper: MeterReadingMapper) -> Iterator[ReaderItem]:
    binding = Binding.XML
    root: etree._Element | None = None
    message: etree._Element | None = None
    header: Header | None = None
    request: RequestParams | None = None
    reply: Reply | None = None
    envelope: Envelope | None = None
    index = 0

    def make_envelope() -> Envelope:
        if header is None:
            if kind is MessageKind.FAULT:
                return Envelope(kind, name, binding, typed, Header(verb="reply"), reply=reply)
            raise EnvelopeError(f"<{name}> has no Header before its Payload")
        return Envelope(kind, name, binding, typed, header, request, reply)

    kind = MessageKind.EVENT
    name = ""
    typed = False
    for event, element in iterparse(source, tags=_TAGS):
        if root is None:
            root = element
            ns = _namespace(element)
            if element.tag == T_METER_READINGS:
                # A bare payload (batch files): no envelope, taken as a created event.
                message = element
                name = "MeterReadings"
                envelope = Envelope(MessageKind.EVENT, name, binding, False, Header(verb="created"))
                yield envelope
                continue
            if ns in (SOAP11, SOAP12):
                if _localname(element) != "Envelope":
                    raise EnvelopeError(f"SOAP root element is <{_localname(element)}>, not Envelope")
                binding = Binding.SOAP11 if ns == SOAP11 else Binding.SOAP12
                continue
        if message is None:
            if event != "start":
                continue
            ns = _namespace(element)
            if binding is not Binding.XML:
                if ns in (SOAP11, SOAP12):
                    if _localname(element) == "Fault":
                        raise EnvelopeError("peer answered with a SOAP Fault")
                    continue
                parent = element.getparent()
                if parent is None or _localname(parent) != "Body":
                    raise EnvelopeError(f"<{_localname(element)}> is not inside the SOAP Body")
            if ns not in MESSAGE_NAMESPACES:
                raise EnvelopeError(f"root element {element.tag!r} is not a 61968-100 message")
            name = _localname(element)
            typed = ns == MRM
            found = (TYPED_ROOTS if typed else GENERIC_ROOTS).get(name)
            if found is None:
                raise UnsupportedMessage(f"<{name}> is not a MeterReadings message we handle")
            kind = found
            message = element
            continue
        if element.tag == T_METER_READINGS:
            continue
        if element.tag == T_METER_READING:
            if event != "end":
                continue
            if envelope is None:
                raise EnvelopeError("MeterReading outside a Payload")
            try:
                yield MappedReading(index, mapper.map(element))
            except ContentError as exc:
                raw = etree.tostring(element, with_tail=False)[:MAX_FAILED_BYTES]
                yield FailedReading(index, safe_meter_id(element), exc, raw)
            index += 1
            element.clear(keep_tail=False)
            parent = element.getparent()
            if parent is not None:
                # Drop what was already handled, so the tree does not grow.
                while element.getprevious() is not None:
                    del parent[0]
            continue
        parent = element.getparent()
        if parent is not message:
            if element is message and event == "end" and envelope is None:
                envelope = make_envelope()
                yield envelope
            continue
        local = _localname(element)
        if event == "start":
            if local == "Payload":
                envelope = make_envelope()
                yield envelope
            continue
        if local == "Header":
            header = decode_header(element)
        elif local == "Request":
            request = decode_request(element)
        elif local == "Reply":
            reply = decode_reply(element)
        elif local == "Payload":
            for child in element:
                if isinstance(child.tag, str) and _localname(child) == "Compressed":
                    raise UnsupportedMessage("compressed payloads are not supported")
                if isinstance(child.tag, str) and _namespace(child) not in (MR, *MESSAGE_NAMESPACES):
                    raise UnsupportedMessage(f"payload element {child.tag!r} is not MeterReadings")
    if message is None:
        raise EnvelopeError("document has no 61968-100 message")


@dataclass(slots=True)
class Chunk:
    """Up to ``max_reads`` interval reads' worth of MeterReadings from a reader."""

    envelope: Envelope | None
    mapped: list[MappedReading]
    failed: list[FailedReading]
    done: bool
    # A document-level error that ended the stream; what came before it is kept.
    error: CimError | None = None


def next_chunk(items: Iterator[ReaderItem], max_reads: int) -> Chunk:
    chunk = Chunk(None, [], [], False)
    try:
        return _fill(chunk, items, max_reads)
    except CimError as exc:
        chunk.error = exc
        chunk.done = True
        return chunk


def _fill(chunk: Chunk, items: Iterator[ReaderItem], max_reads: int) -> Chunk:
    reads = 0
    for item in items:
        if isinstance(item, Envelope):
            chunk.envelope = item
            return chunk
        if isinstance(item, MappedReading):
            chunk.mapped.append(item)
            reads += item.readings.interval_count + len(item.readings.register_reads)
        else:
            chunk.failed.append(item)
        if reads >= max_reads or len(chunk.failed) >= 1000:
            return chunk
    chunk.done = True
    return chunk
