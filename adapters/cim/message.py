"""The IEC 61968-100 message envelope: Header (verb, noun...), Request, Reply,
Payload; encoding for the plain-XML and SOAP bindings, header decoding.

Two element styles exist on the wire and both are read and written:
- generic: ``msg:EventMessage`` / ``msg:RequestMessage`` / ``msg:ResponseMessage``,
  everything in the message namespace (plain XML POSTs, JMS, files);
- typed: the 61968-9 WSDL's ``mrm:CreatedMeterReadings`` etc., whose Header,
  Request, Reply and Payload are in the MeterReadingsMessage namespace while
  their children stay in the message namespace (the SOAP binding).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.errors import EnvelopeError

MSG = "http://iec.ch/TC57/2011/schema/message"
MSG_DRAFT = "http://www.iec.ch/TC57/2011/schema/message"  # pre-2011-05 drafts; read, never written
MRM = "http://www.iec.ch/TC57/2011/MeterReadingsMessage"
MR = "http://iec.ch/TC57/2011/MeterReadings#"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
MESSAGE_NAMESPACES = (MSG, MSG_DRAFT, MRM)
SOAP_NAMESPACES = (SOAP11, SOAP12)
NOUN = "MeterReadings"
SOAP_ACTION_BASE = "http://iec.ch/TC57/2011/MeterReadings/"
MAX_HEADER_TEXT = 1024


class MessageKind(enum.Enum):
    EVENT = "EventMessage"
    REQUEST = "RequestMessage"
    RESPONSE = "ResponseMessage"
    FAULT = "FaultMessage"


class Binding(enum.Enum):
    XML = "xml"
    SOAP11 = "soap11"
    SOAP12 = "soap12"

    @property
    def content_type(self) -> str:
        if self is Binding.SOAP12:
            return "application/soap+xml; charset=utf-8"
        return "text/xml; charset=utf-8"


# Typed root names of the 61968-9 MeterReadings WSDLs.
_TYPED_EVENTS = {"created": "CreatedMeterReadings", "changed": "ChangedMeterReadings",
                 "canceled": "CanceledMeterReadings", "closed": "ClosedMeterReadings",
                 "deleted": "DeletedMeterReadings"}
_TYPED_REQUESTS = {"create": "CreateMeterReadings", "change": "ChangeMeterReadings",
                   "cancel": "CancelMeterReadings", "close": "CloseMeterReadings",
                   "delete": "DeleteMeterReadings", "get": "MeterReadingsRequestMessage"}
TYPED_ROOTS: dict[str, MessageKind] = (
    {name: MessageKind.EVENT for name in _TYPED_EVENTS.values()}
    | {name: MessageKind.REQUEST for name in _TYPED_REQUESTS.values()}
    | {"MeterReadingsResponseMessage": MessageKind.RESPONSE, "MeterReadingsFaultMessage": MessageKind.FAULT}
)
GENERIC_ROOTS = {k.value: k for k in MessageKind} | {"Message": MessageKind.EVENT}


@dataclass(frozen=True, slots=True)
class Header:
    verb: str
    noun: str = NOUN
    revision: str = ""
    timestamp: datetime | None = None
    source: str = ""
    async_reply_flag: bool | None = None
    reply_address: str = ""
    message_id: str = ""
    correlation_id: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True)
class RequestParams:
    start_time: datetime | None = None
    end_time: datetime | None = None
    ids: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ReplyError:
    code: str
    level: str = ""
    reason: str = ""
    details: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    result: str  # OK, PARTIAL or FAILED
    errors: tuple[ReplyError, ...] = ()
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Envelope:
    """What precedes the payload: enough to decide how to treat the message."""

    kind: MessageKind
    root_name: str
    binding: Binding
    typed: bool
    header: Header
    request: RequestParams | None = None
    reply: Reply | None = None
    payload_formats: tuple[str, ...] = field(default=())


def format_time(value: datetime) -> str:
    """xs:dateTime in UTC with an explicit ``Z``."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None, where: str) -> datetime:
    """An xs:dateTime that must carry a UTC offset."""
    if text is None:
        raise EnvelopeError(f"{where} is empty")
    text = text.strip()
    if len(text) > 64:
        raise EnvelopeError(f"{where} is too long")
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EnvelopeError(f"{where} {text!r} is not an xs:dateTime") from exc
    if value.tzinfo is None:
        raise EnvelopeError(f"{where} {text!r} has no UTC offset")
    return value.astimezone(UTC)


def _text(element: etree._Element) -> str:
    text = (element.text or "").strip()
    if len(text) > MAX_HEADER_TEXT:
        raise EnvelopeError(f"<{etree.QName(element).localname}> is longer than {MAX_HEADER_TEXT} characters")
    return text


def _children(element: etree._Element) -> list[tuple[str, etree._Element]]:
    return [(etree.QName(child).localname, child) for child in element if isinstance(child.tag, str)]


def _bool(text: str, where: str) -> bool:
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise EnvelopeError(f"{where} {text!r} is not an xs:boolean")


def decode_header(element: etree._Element) -> Header:
    values: dict[str, str] = {}
    for name, child in _children(element):
        if name in ("Verb", "Noun", "Revision", "Timestamp", "Source", "AsyncReplyFlag", "ReplyAddress",
                    "MessageID", "CorrelationID", "Comment"):
            values[name] = _text(child)
    if not values.get("Verb"):
        raise EnvelopeError("Header has no Verb")
    if not values.get("Noun"):
        raise EnvelopeError("Header has no Noun")
    flag = values.get("AsyncReplyFlag")
    stamp = values.get("Timestamp")
    return Header(
        verb=values["Verb"], noun=values["Noun"], revision=values.get("Revision", ""),
        timestamp=parse_time(stamp, "Header/Timestamp") if stamp else None,
        source=values.get("Source", ""),
        async_reply_flag=_bool(flag, "Header/AsyncReplyFlag") if flag else None,
        reply_address=values.get("ReplyAddress", ""), message_id=values.get("MessageID", ""),
        correlation_id=values.get("CorrelationID", ""), comment=values.get("Comment", ""),
    )


def decode_request(element: etree._Element) -> RequestParams:
    start = end = None
    ids: list[str] = []
    options: list[tuple[str, str]] = []
    for name, child in _children(element):
        if name == "StartTime":
            start = parse_time(child.text, "Request/StartTime")
        elif name == "EndTime":
            end = parse_time(child.text, "Request/EndTime")
        elif name == "ID":
            ids.append(_text(child))
        elif name == "Option":
            parts = dict((n, _text(c)) for n, c in _children(child))
            options.append((parts.get("name", ""), parts.get("value", "")))
    return RequestParams(start, end, tuple(ids), tuple(options))


def decode_reply(element: etree._Element) -> Reply:
    result = ""
    errors: list[ReplyError] = []
    ids: list[str] = []
    for name, child in _children(element):
        if name == "Result":
            result = _text(child)
        elif name == "Error":
            parts = dict((n, _text(c)) for n, c in _children(child))
            errors.append(ReplyError(parts.get("code", ""), parts.get("level", ""), parts.get("reason", ""),
                                     parts.get("details", "")))
        elif name == "ID":
            ids.append(_text(child))
    if result not in ("OK", "PARTIAL", "FAILED"):
        raise EnvelopeError(f"Reply/Result {result!r} is not OK, PARTIAL or FAILED")
    return Reply(result, tuple(errors), tuple(ids))


# --- encoding ---------------------------------------------------------------------------------

def _sub(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        element.text = text
    return element


def _encode_header(parent: etree._Element, ns: str, header: Header) -> None:
    element = _sub(parent, ns, "Header")
    _sub(element, MSG, "Verb", header.verb)
    _sub(element, MSG, "Noun", header.noun)
    if header.revision:
        _sub(element, MSG, "Revision", header.revision)
    if header.timestamp is not None:
        _sub(element, MSG, "Timestamp", format_time(header.timestamp))
    if header.source:
        _sub(element, MSG, "Source", header.source)
    if header.async_reply_flag is not None:
        _sub(element, MSG, "AsyncReplyFlag", "true" if header.async_reply_flag else "false")
    if header.reply_address:
        _sub(element, MSG, "ReplyAddress", header.reply_address)
    if header.message_id:
        _sub(element, MSG, "MessageID", header.message_id)
    if header.correlation_id:
        _sub(element, MSG, "CorrelationID", header.correlation_id)
    if header.comment:
        _sub(element, MSG, "Comment", header.comment)


def _encode_request(parent: etree._Element, ns: str, request: RequestParams) -> None:
    element = _sub(parent, ns, "Request")
    if request.start_time is not None:
        _sub(element, MSG, "StartTime", format_time(request.start_time))
    if request.end_time is not None:
        _sub(element, MSG, "EndTime", format_time(request.end_time))
    for name, value in request.options:
        option = _sub(element, MSG, "Option")
        _sub(option, MSG, "name", name)
        _sub(option, MSG, "value", value)
    for ident in request.ids:
        _sub(element, MSG, "ID", ident)


def _encode_reply(parent: etree._Element, ns: str, reply: Reply) -> None:
    element = _sub(parent, ns, "Reply")
    _sub(element, MSG, "Result", reply.result)
    for error in reply.errors:
        err = _sub(element, MSG, "Error")
        _sub(err, MSG, "code", error.code)
        if error.level:
            _sub(err, MSG, "level", error.level)
        if error.reason:
            _sub(err, MSG, "reason", error.reason)
        if error.details:
            _sub(err, MSG, "details", error.details)
    for ident in reply.ids:
        _sub(element, MSG, "ID", ident)


def typed_root_name(kind: MessageKind, verb: str) -> str:
    if kind is MessageKind.EVENT and verb in _TYPED_EVENTS:
        return _TYPED_EVENTS[verb]
    if kind is MessageKind.REQUEST and verb in _TYPED_REQUESTS:
        return _TYPED_REQUESTS[verb]
    if kind is MessageKind.RESPONSE:
        return "MeterReadingsResponseMessage"
    if kind is MessageKind.FAULT:
        return "MeterReadingsFaultMessage"
    raise EnvelopeError(f"no typed MeterReadings message for {kind.value} with verb {verb!r}", remote=False)


def soap_action(kind: MessageKind, verb: str) -> str:
    if kind is MessageKind.REQUEST and verb == "get":
        return "http://iec.ch/TC57/2011/GetMeterReadings/GetMeterReadings"
    return SOAP_ACTION_BASE + typed_root_name(kind, verb)


def build_message(kind: MessageKind, header: Header, *, request: RequestParams | None = None,
                  reply: Reply | None = None, payload: Sequence[etree._Element] = (),
                  typed: bool = False) -> etree._Element:
    """The message element (not yet wrapped for SOAP)."""
    if typed:
        ns = MRM
        root = etree.Element(f"{{{MRM}}}{typed_root_name(kind, header.verb)}",
                             nsmap={None: MRM, "msg": MSG, "m": MR})
    else:
        ns = MSG
        root = etree.Element(f"{{{MSG}}}{kind.value}", nsmap={None: MSG, "m": MR})
    if kind is MessageKind.FAULT:
        _encode_reply(root, ns, reply or Reply("FAILED"))
        return root
    _encode_header(root, ns, header)
    if request is not None:
        _encode_request(root, ns, request)
    if reply is not None:
        _encode_reply(root, ns, reply)
    elif kind is MessageKind.RESPONSE:
        raise EnvelopeError("a ResponseMessage needs a Reply", remote=False)
    if payload:
        holder = _sub(root, ns, "Payload")
        holder.extend(payload)
    return root


def wrap(message: etree._Element, binding: Binding) -> bytes:
    """Serialise for a binding: bare document, or inside a SOAP Envelope/Body."""
    if binding is Binding.XML:
        return bytes(etree.tostring(message, xml_declaration=True, encoding="UTF-8"))
    ns = SOAP11 if binding is Binding.SOAP11 else SOAP12
    envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns})
    _sub(envelope, ns, "Header")
    body = _sub(envelope, ns, "Body")
    body.append(message)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def soap_fault(binding: Binding, *, client_error: bool, text: str, detail: etree._Element | None) -> bytes:
    """A SOAP Fault carrying a MeterReadingsFaultMessage as detail."""
    ns = SOAP11 if binding is Binding.SOAP11 else SOAP12
    envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap": ns})
    body = _sub(envelope, ns, "Body")
    fault = _sub(body, ns, "Fault")
    if ns == SOAP11:
        code = etree.SubElement(fault, "faultcode")
        code.text = "soap:Client" if client_error else "soap:Server"
        etree.SubElement(fault, "faultstring").text = text
        if detail is not None:
            etree.SubElement(fault, "detail").append(detail)
    else:
        code = _sub(_sub(fault, ns, "Code"), ns, "Value", "soap:Sender" if client_error else "soap:Receiver")
        reason = _sub(fault, ns, "Reason")
        _sub(reason, ns, "Text", text).set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        if detail is not None:
            _sub(fault, ns, "Detail").append(detail)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))
