"""SOAP codec for MultiSpeak v4.1: zeep (from our WSDL subset) serialises and decodes, a
hardened lxml parser reads every byte that comes from the network. No I/O here.

Documents are parsed once with entities, DTDs and network access off and a size cap; zeep
then decodes element by element, so one undecodable element costs that element, not the
exchange.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from importlib import resources
from typing import Any

import zeep
from lxml import etree  # type: ignore[import-untyped]
from zeep.exceptions import Error as ZeepError

from adapters.multispeak.errors import (
    ForbiddenXml,
    MalformedXml,
    SoapFault,
    UnexpectedContent,
    XmlTooLarge,
    fault_class,
)

MSP_NS = "http://www.multispeak.org/Version_4.1_Release"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
MR_SERVER = "MR_Server"
CB_SERVER = "CB_Server"
HEADER_TAG = f"{{{MSP_NS}}}MultiSpeakMsgHeader"
_BODY = f"{{{SOAP_ENV_NS}}}Body"
_HEADER = f"{{{SOAP_ENV_NS}}}Header"
_FAULT = f"{{{SOAP_ENV_NS}}}Fault"
_ENVELOPE = f"{{{SOAP_ENV_NS}}}Envelope"
# Header attributes we send on every message; BuildString is required by v4.1.
VERSION_ATTRS = {"MajorVersion": "4", "MinorVersion": "1", "Build": "6", "Branch": "0", "BuildString": "Release"}


def wsdl_path(service: str) -> str:
    return str(resources.files("adapters.multispeak") / "wsdl" / f"{service}.wsdl")


def zeep_settings() -> zeep.Settings:
    return zeep.Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True,
                         forbid_external=True)


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The MultiSpeakMsgHeader fields we read and write."""

    user: str = ""
    password: str = field(default="", repr=False)
    app_name: str = "meterhub"
    app_version: str = ""
    company: str = ""
    objects_remaining: int | None = None
    last_sent: str | None = None
    message_id: str = ""
    build_string: str = "Release"

    def attributes(self) -> dict[str, str]:
        attrs = dict(VERSION_ATTRS)
        attrs["BuildString"] = self.build_string
        optional = (("UserID", self.user), ("Pwd", self.password), ("AppName", self.app_name),
                    ("AppVersion", self.app_version), ("Company", self.company), ("MessageID", self.message_id))
        attrs.update({name: value for name, value in optional if value})
        if self.objects_remaining is not None:
            attrs["ObjectsRemaining"] = str(self.objects_remaining)
        if self.last_sent is not None:
            attrs["LastSent"] = self.last_sent
        return attrs

    @classmethod
    def from_element(cls, element: etree._Element | None) -> MessageHeader:
        if element is None:
            return cls(build_string="")
        get = element.get
        remaining = get("ObjectsRemaining")
        try:
            objects_remaining = int(remaining) if remaining not in (None, "") else None
        except ValueError as exc:
            raise UnexpectedContent(f"MultiSpeakMsgHeader ObjectsRemaining={remaining!r} is not an integer") from exc
        return cls(user=get("UserID") or "", password=get("Pwd") or "", app_name=get("AppName") or "",
                   app_version=get("AppVersion") or "", company=get("Company") or "",
                   objects_remaining=objects_remaining, last_sent=get("LastSent"),
                   message_id=get("MessageID") or "", build_string=get("BuildString") or "")


@dataclass(frozen=True, slots=True)
class SoapMessage:
    """A parsed SOAP 1.1 message: the operation element of the body and the MultiSpeak header."""

    operation: str
    header: MessageHeader
    body: etree._Element


class SafeXmlParser:
    """lxml with entities, DTDs and network off, a size cap and the usual depth limits."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                       dtd_validation=False, huge_tree=False, remove_comments=True,
                                       remove_pis=True, collect_ids=False)

    def parse(self, data: bytes) -> etree._Element:
        if len(data) > self.max_bytes:
            raise XmlTooLarge(f"XML document of {len(data)} bytes is above the {self.max_bytes}-byte cap")
        if not data.strip():
            raise MalformedXml("empty XML document")
        try:
            root = etree.fromstring(data, parser=self._parser)
        except etree.XMLSyntaxError as exc:
            if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data[:4096]:
                raise ForbiddenXml(f"XML with a DTD or entity declarations is refused ({exc})") from exc
            raise MalformedXml(f"not well-formed XML: {exc}") from exc
        except (ValueError, etree.LxmlError) as exc:
            raise MalformedXml(f"not well-formed XML: {exc}") from exc
        docinfo = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
            raise ForbiddenXml("XML with a DTD (<!DOCTYPE>) is refused: entities and external references "
                               "are never resolved (XXE)")
        return root


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


class MultiSpeakCodec:
    """Builds and reads the SOAP messages of one MultiSpeak service (MR_Server or CB_Server)."""

    def __init__(self, service: str, *, max_bytes: int) -> None:
        self.service = service
        self.client: Any = zeep.Client(wsdl_path(service), settings=zeep_settings())  # type: ignore[no-untyped-call]
        self.parser = SafeXmlParser(max_bytes)
        self._binding = self.client.service._binding
        self.operations = frozenset(self._binding._operations)

    @cached_property
    def schema(self) -> Any:
        return self.client.wsdl.types

    def soap_action(self, operation: str) -> str:
        return f"{MSP_NS}/{operation}"

    def _header_element(self, header: MessageHeader) -> etree._Element:
        element = etree.Element(HEADER_TAG, nsmap={None: MSP_NS})
        for name, value in header.attributes().items():
            element.set(name, value)
        return element

    # -- client side: requests out, responses in -------------------------------------------------

    def build_request(self, operation: str, header: MessageHeader, **params: Any) -> bytes:
        if operation not in self.operations:
            raise UnexpectedContent(f"{self.service} has no operation {operation!r}", remote=False)
        try:
            envelope = self.client.create_message(self.client.service, operation,
                                                  _soapheaders=[self._header_element(header)], **params)
        except (ZeepError, TypeError, ValueError) as exc:
            raise UnexpectedContent(f"cannot serialise {operation}: {exc}", remote=False) from exc
        return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))

    def parse_response(self, operation: str, data: bytes) -> SoapMessage:
        """The <operation>Response element; raises the SoapFault subclass for a fault."""
        message = self.parse_message(data)
        expected = f"{operation}Response"
        if message.operation != expected:
            raise UnexpectedContent(f"expected {expected} in the SOAP body, got {message.operation}")
        return message

    # -- both sides --------------------------------------------------------------------------------

    def parse_message(self, data: bytes) -> SoapMessage:
        root = self.parser.parse(data)
        if root.tag != _ENVELOPE:
            raise MalformedXml(f"not a SOAP 1.1 envelope: root element is {root.tag!r}")
        body = root.find(_BODY)
        if body is None:
            raise MalformedXml("SOAP envelope without a Body")
        children = [c for c in body if isinstance(c.tag, str)]
        if len(children) != 1:
            raise UnexpectedContent(f"SOAP Body must hold one element, found {len(children)}")
        payload = children[0]
        if payload.tag == _FAULT:
            raise self.fault_error(payload)
        if etree.QName(payload).namespace != MSP_NS:
            raise UnexpectedContent(f"SOAP Body element {payload.tag!r} is not in the MultiSpeak v4.1 namespace")
        header_parent = root.find(_HEADER)
        header_el = header_parent.find(HEADER_TAG) if header_parent is not None else None
        return SoapMessage(_local(payload.tag), MessageHeader.from_element(header_el), payload)

    @staticmethod
    def fault_error(fault: etree._Element) -> SoapFault:
        code = (fault.findtext("faultcode") or "").strip()
        text = (fault.findtext("faultstring") or "").strip()
        cls = fault_class(code)
        return cls(f"head-end SOAP fault {code}: {text}", faultcode=code.rpartition(":")[2], faultstring=text)

    def decode(self, type_name: str, element: etree._Element) -> Any:
        """One element decoded by zeep as the named v4.1 type (e.g. "intervalBlock")."""
        try:
            xsd_type = self.client.get_type(f"{{{MSP_NS}}}{type_name}")
            return xsd_type.parse_xmlelement(element, self.schema)
        except (ZeepError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                OverflowError, ArithmeticError) as exc:
            raise UnexpectedContent(f"<{_local(element.tag)}> is not a valid {type_name}: {exc}") from exc

    def decode_element(self, element: etree._Element) -> Any:
        """A global element (an operation's request or response) decoded by zeep."""
        try:
            xsd_element = self.client.get_element(element.tag)
            return xsd_element.parse(element, self.schema)
        except (ZeepError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                OverflowError, ArithmeticError) as exc:
            raise UnexpectedContent(f"<{_local(element.tag)}> is not valid: {exc}") from exc

    # -- server side: requests in, responses out ---------------------------------------------------

    def build_response(self, operation: str, header: MessageHeader, **result: Any) -> bytes:
        try:
            op = self._binding.get(operation)
            serialized = op.output.serialize(_soapheaders=[self._header_element(header)], **result)
        except (ZeepError, TypeError, ValueError) as exc:
            raise UnexpectedContent(f"cannot serialise {operation}Response: {exc}", remote=False) from exc
        return bytes(etree.tostring(serialized.content, xml_declaration=True, encoding="utf-8"))

    def build_body(self, element_name: str, header: MessageHeader, body: etree._Element) -> bytes:
        """An envelope around a body element built by hand (fast paths, fault injection)."""
        del element_name
        envelope = etree.Element(_ENVELOPE, nsmap={"soap": SOAP_ENV_NS})
        etree.SubElement(envelope, _HEADER).append(self._header_element(header))
        etree.SubElement(envelope, _BODY).append(body)
        return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))

    @staticmethod
    def build_fault(faultcode: str, faultstring: str) -> bytes:
        envelope = etree.Element(_ENVELOPE, nsmap={"soap": SOAP_ENV_NS})
        fault = etree.SubElement(etree.SubElement(envelope, _BODY), _FAULT)
        etree.SubElement(fault, "faultcode").text = f"soap:{faultcode}"
        etree.SubElement(fault, "faultstring").text = faultstring
        return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def error_objects(errors: list[tuple[str, str]], now: datetime) -> dict[str, Any]:
    """An ArrayOfErrorObject value for zeep: (objectID, errorString) pairs."""
    return {"errorObject": [{"_value_1": text, "objectID": oid, "errorString": text, "nounType": "meterReading",
                             "eventTime": now} for oid, text in errors]}
