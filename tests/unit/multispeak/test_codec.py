from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.multispeak.errors import (
    AuthenticationFault,
    ExpiredTransaction,
    ForbiddenXml,
    MalformedXml,
    MultiSpeakProtocolError,
    SoapClientFault,
    SoapFault,
    SoapServerFault,
    UnexpectedContent,
    UnknownTransaction,
    XmlTooLarge,
    fault_class,
)
from adapters.multispeak.soap import MR_SERVER, MessageHeader, MultiSpeakCodec
from adapters.multispeak.transactions import Transactions

CODEC = MultiSpeakCodec(MR_SERVER, max_bytes=4096)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_header_round_trip_carries_build_string_and_credentials() -> None:
    body = CODEC.build_request("PingURL", MessageHeader(user="u", password="p", company="c"))
    message = CODEC.parse_message(body)
    assert message.operation == "PingURL"
    assert (message.header.user, message.header.password, message.header.build_string) == ("u", "p", "Release")
    assert b'MajorVersion="4"' in body and b'MinorVersion="1"' in body


@pytest.mark.parametrize(("code", "cls"), [
    ("soap:Client", SoapClientFault), ("soap:Client.Authentication", AuthenticationFault),
    ("soap:Server", SoapServerFault), ("soap:Server.Busy", SoapServerFault), ("x:VersionMismatch", SoapFault),
])
def test_faults_map_to_classes(code: str, cls: type[SoapFault]) -> None:
    assert fault_class(code) is cls
    with pytest.raises(cls) as info:
        CODEC.parse_response("PingURL", CODEC.build_fault(code.partition(":")[2], "nope"))
    assert info.value.faultstring == "nope"


XXE = (b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "http://127.0.0.1:1/steal">]>'
       b'<e xmlns="http://schemas.xmlsoap.org/soap/envelope/">&x;</e>')
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
          b"<l>&b;&b;&b;</l>")


@pytest.mark.parametrize(("data", "cls"), [
    (XXE, ForbiddenXml), (LAUGHS, ForbiddenXml), (b"<a><b></a>", MalformedXml), (b"", MalformedXml),
    (b"<a/>", MalformedXml), (b"x" * 5000, XmlTooLarge),
    (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><x/></s:Body></s:Envelope>',
     UnexpectedContent),
])
def test_hostile_or_broken_documents(data: bytes, cls: type[Exception]) -> None:
    with pytest.raises(cls):
        CODEC.parse_message(data)


@settings(max_examples=300)
@given(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_garbage_raises_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(MultiSpeakProtocolError, SoapFault):
        CODEC.parse_message(data)


@settings(max_examples=150)
@given(st.text(alphabet="<>/=\"' abcdeflmnoprstvyBEHSDI:.0123456789;,", max_size=200))
def test_garbage_inside_an_envelope_raises_only_our_errors(inner: str) -> None:
    envelope = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns="http://www.multispeak.org/Version_4.1_Release"><s:Body>'
                f"<GetLPReadingsByMeterIDIntervalDataResponse>{inner}"
                "</GetLPReadingsByMeterIDIntervalDataResponse></s:Body></s:Envelope>").encode()
    try:
        message = CODEC.parse_message(envelope)
        CODEC.decode_element(message.body)
    except (MultiSpeakProtocolError, SoapFault):
        pass


def test_transactions_match_and_expire() -> None:
    tx = Transactions()
    tx.open("a", frozenset({"M1"}), T0, timedelta(minutes=5))
    assert tx.match("a", T0 + timedelta(minutes=1)).meter_ids == {"M1"}
    with pytest.raises(ExpiredTransaction):
        tx.match("a", T0 + timedelta(minutes=5))
    with pytest.raises(UnknownTransaction) as info:
        tx.match("b", T0)
    assert info.value.reason == "UNKNOWN_TRANSACTION"
    with pytest.raises(UnknownTransaction):
        tx.match("", T0)
    # Expired ids are forgotten after an hour: then they are simply unknown.
    with pytest.raises(UnknownTransaction) as late:
        tx.match("a", T0 + timedelta(hours=2))
    assert type(late.value) is UnknownTransaction
    assert len(tx) == 0
