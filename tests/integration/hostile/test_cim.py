"""Hostile requests at the hub's CIM (IEC 61968-9) push endpoint, plain XML
POST and SOAP binding, over raw loopback sockets.

Each hostile request gets its specific answer (HTTP status, 61968-100 reply
code or SOAP Fault), messages that reached the adapter are dead letters in
the store, oversized bodies are refused from their head before a body byte is
buffered, and a good message right after is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.message import SOAP11, Binding
from adapters.cim.outbound import parse_reply
from gateway.config import SourceConfig
from gateway.hub import Hub
from simulators.cim.fleet import Fleet
from simulators.cim.headend import HeadEnd
from tests.integration.hostile.conftest import (
    BILLION_LAUGHS,
    FLOOD_BYTES,
    TEST_TIMEOUT_SECONDS,
    XXE,
    RawResponse,
    dead_letters,
    post,
    read_to_eof,
    register_meters,
    running_hub,
    send_and_read,
    stored_intervals,
    stream_until_closed,
    traced_peak,
    wait_listening,
)
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)

PATH = "/cim/MeterReadings"
MAX_MESSAGE = 256 * 1024
START = datetime(2026, 11, 1, tzinfo=UTC)
FLEET = Fleet(2, START, 1)


@dataclass(frozen=True, slots=True)
class Endpoint:
    hub: Hub
    port: int


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    port = free_port()
    source = SourceConfig("cim-north", "cim", {"type": "cim", "listen": f"127.0.0.1:{port}",
                                               "max_message_bytes": MAX_MESSAGE})
    async with running_hub(tmp_path, source) as hub:
        await register_meters(hub, FLEET.meter_ids)
        await wait_listening(port)
        yield Endpoint(hub, port)


def soap11(inner: bytes, *, doctype: bytes = b"") -> bytes:
    return (b'<?xml version="1.0"?>\n' + doctype
            + f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>'.encode() + inner + b"</soap:Body></soap:Envelope>")


def reply_errors(response: RawResponse) -> list[tuple[str, str]]:
    """(code, reason) of a plain-XML FAILED ResponseMessage."""
    reply = parse_reply(response.body, max_bytes=1 << 20).reply
    assert reply is not None and reply.result == "FAILED"
    return [(e.code, e.reason) for e in reply.errors]


def soap_fault(response: RawResponse) -> tuple[str, str]:
    """(faultcode, the 61968-100 reason in the fault detail) of a SOAP 1.1 Fault."""
    assert response.status == 500
    root = etree.fromstring(response.body)
    fault = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None, response.body[:300]
    reasons = [e.text for e in fault.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "reason"]
    return fault.findtext("faultcode") or "", reasons[0] if reasons else ""


async def assert_good_push_lands(endpoint: Endpoint, binding: Binding) -> None:
    """The endpoint is alive: a good message right after is answered OK and stored exactly."""
    body = HeadEnd(FLEET, binding=binding).event_message(FLEET.meter_ids, FLEET.start, FLEET.end)
    response = await post(endpoint.port, PATH, body, content_type=binding.content_type)
    assert response.status == 200, response.body[:300]
    for meter in FLEET.meter_ids:
        assert await stored_intervals(endpoint.hub, meter) == FLEET.expected(meter)


TRUNCATED_XML = HeadEnd(FLEET).event_message(FLEET.meter_ids, FLEET.start, FLEET.end)[:-500]
TRUNCATED_SOAP = HeadEnd(FLEET, binding=Binding.SOAP11).event_message(FLEET.meter_ids, FLEET.start, FLEET.end)[:-500]
SOAP_XXE = soap11(b"<x>&secret;</x>", doctype=b'<!DOCTYPE e [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n')


@pytest.mark.parametrize(("body", "content_type", "status", "code", "reason"), [
    pytest.param(XXE, "application/xml", 400, "2.2", "XML_FORBIDDEN", id="xxe"),
    pytest.param(BILLION_LAUGHS, "application/xml", 400, "2.2", "XML_FORBIDDEN", id="billion-laughs"),
    pytest.param(TRUNCATED_XML, "application/xml", 400, "2.1", "XML_MALFORMED", id="truncated"),
    pytest.param(b"\x00\xff\xfe<garbage", "application/xml", 400, "2.1", "XML_MALFORMED", id="binary-garbage"),
    # The body decides, not the label: JSON is refused as what it is not (XML), and said so.
    pytest.param(b'{"MeterReadings": []}', "application/json", 400, "2.1", "XML_MALFORMED", id="json-body"),
    pytest.param(b"", "application/xml", 400, "2.1", "XML_MALFORMED", id="empty-body"),
])
async def test_hostile_plain_xml_gets_a_failed_reply_and_a_dead_letter(
        endpoint: Endpoint, body: bytes, content_type: str, status: int, code: str, reason: str) -> None:
    started = time.monotonic()
    response = await post(endpoint.port, PATH, body, content_type=content_type)
    assert time.monotonic() - started < 2.0, "the refusal took too long (entity expansion?)"
    assert response.status == status
    assert reply_errors(response) == [(code, reason)]
    assert b"root:" not in response.body  # nothing of /etc/passwd leaks into the answer
    (dead,) = dead_letters(endpoint.hub)
    assert (dead.head_end, dead.adapter_type, dead.reason_code, dead.payload) == ("cim-north", "cim", reason, body)
    assert dead.reason.startswith("push endpoint cim-north: ")
    await assert_good_push_lands(endpoint, Binding.XML)


@pytest.mark.parametrize(("body", "reason"), [
    pytest.param(SOAP_XXE, "XML_FORBIDDEN", id="xxe"),
    pytest.param(TRUNCATED_SOAP, "XML_MALFORMED", id="truncated"),
    pytest.param(soap11(b""), "BAD_ENVELOPE", id="empty-body"),
    pytest.param(soap11(b"<x:Foo xmlns:x='urn:other'/>"), "BAD_ENVELOPE", id="foreign-payload"),
])
async def test_hostile_soap_gets_a_soap_fault_and_a_dead_letter(endpoint: Endpoint, body: bytes,
                                                                reason: str) -> None:
    response = await post(endpoint.port, PATH, body, content_type=Binding.SOAP11.content_type)
    assert soap_fault(response) == ("soap:Client", reason)
    assert b"root:" not in response.body
    (dead,) = dead_letters(endpoint.hub)
    assert (dead.reason_code, dead.payload) == (reason, body)
    await assert_good_push_lands(endpoint, Binding.SOAP11)


async def test_oversized_body_is_refused_from_its_head_before_any_body_byte(endpoint: Endpoint) -> None:
    claimed = 1 << 30
    head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {claimed}\r\n\r\n").encode()
    with traced_peak() as peak:
        # The answer comes for the head alone: the endpoint did not wait for (or buffer) the body.
        response = await send_and_read(endpoint.port, head)
        # A client that streams the body anyway is cut off early.
        sent, answer = await stream_until_closed(endpoint.port, head)
    assert parse_response_status(response) == 413
    # The 413 may be lost to the reset our own unread bytes cause; if it arrived, it is a 413.
    assert answer == b"" or parse_response_status(answer) == 413
    assert f"body of {claimed} bytes exceeds the limit of {MAX_MESSAGE} bytes".encode() in response
    assert sent < FLOOD_BYTES, "the endpoint kept reading a body it had refused"
    assert peak() < 4 << 20, f"{peak()} bytes allocated while refusing a 1 GiB body"
    dead = dead_letters(endpoint.hub)
    assert [d.reason_code for d in dead] == ["DOCUMENT_TOO_LARGE"] * 2
    assert f"declared a body of {claimed} bytes, above max_message_bytes {MAX_MESSAGE}; body not read" in dead[0].reason
    assert b"content-length: 1073741824" in dead[0].payload  # the request head is the evidence
    await assert_good_push_lands(endpoint, Binding.XML)


def parse_response_status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


BROKEN_HTTP: list[tuple[str, bytes, int, bytes]] = [
    ("tls-hello-on-plain-port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
     400, b"bad HTTP request line"),
    ("endless-header", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Flood: " + b"a" * 40_000, 431,
     b"header block is too large"),
    ("chunked", f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<a/>\n\r\n0\r\n\r\n"
     .encode(), 411, b"send Content-Length"),
    ("smuggling-lengths", f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n<a/>\n"
     .encode(), 400, b"conflicting Content-Length"),
    ("negative-length", f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".encode(), 400,
     b"bad Content-Length"),
    ("http2-version", f"POST {PATH} HTTP/2.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode(), 505,
     b"unsupported HTTP version"),
    ("wrong-path", b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n<a/>", 404, b"not found"),
    ("wrong-method", f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 405, b"POST a 61968-100 message"),
]


async def test_broken_http_is_answered_with_its_status_and_closed(endpoint: Endpoint) -> None:
    for name, request_bytes, status, fragment in BROKEN_HTTP:
        raw = await send_and_read(endpoint.port, request_bytes, half_close=True)
        assert parse_response_status(raw) == status, (name, raw[:100])
        assert fragment in raw, (name, raw[:300])
    # Framing errors never became a message: nothing for the dead-letter table.
    assert dead_letters(endpoint.hub) == []
    await assert_good_push_lands(endpoint, Binding.XML)


async def test_body_cut_short_by_the_peer_closes_quietly(endpoint: Endpoint) -> None:
    body = HeadEnd(FLEET).event_message(FLEET.meter_ids, FLEET.start, FLEET.end)
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    raw = await send_and_read(endpoint.port, head + body[: len(body) // 2], half_close=True)
    assert raw.startswith(b"HTTP/1.1 400") and b"connection closed inside an HTTP body" in raw
    assert dead_letters(endpoint.hub) == []
    for meter in FLEET.meter_ids:
        assert await stored_intervals(endpoint.hub, meter) == {}
    await assert_good_push_lands(endpoint, Binding.XML)


async def test_pipelined_garbage_after_a_good_message_does_not_undo_it(endpoint: Endpoint) -> None:
    body = HeadEnd(FLEET).event_message(FLEET.meter_ids, FLEET.start, FLEET.end)
    good = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    try:
        writer.write(good + b"\x00\x01garbage that is no request line\r\n\r\n")
        await writer.drain()
        raw = await read_to_eof(reader)
    finally:
        writer.close()
    first, _, rest = raw.partition(b"HTTP/1.1 400")
    assert first.startswith(b"HTTP/1.1 200") and b"bad HTTP request line" in rest
    for meter in FLEET.meter_ids:
        assert await stored_intervals(endpoint.hub, meter) == FLEET.expected(meter)
