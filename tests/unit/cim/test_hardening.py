"""Hostile XML and HTTP framing: refused with our errors, never anything else."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.cim.errors import CimError, DocumentTooLarge, ForbiddenXml, HttpProtocolError, MalformedXml
from adapters.cim.http11 import NEED_DATA, HeadTooLarge, HttpConnection, HttpRequest, HttpResponse, Role
from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.reader import read_message
from adapters.cim.xmlsafe import iterparse, parse_document

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE EventMessage [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<EventMessage xmlns="http://iec.ch/TC57/2011/schema/message"><Header><Verb>created</Verb>
<Noun>&secret;</Noun></Header></EventMessage>"""
REMOTE_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE EventMessage SYSTEM "http://127.0.0.1:9/evil.dtd">
<EventMessage xmlns="http://iec.ch/TC57/2011/schema/message"/>"""
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'.encode()
                     for i in range(1, 10))
          + b']><lolz>&lol9;</lolz>')


def stream(data: bytes) -> list[object]:
    return list(read_message(io.BytesIO(data), MeterReadingMapper(MappingOptions())))


@pytest.mark.parametrize("payload", [XXE, REMOTE_DTD, LAUGHS], ids=["xxe", "remote-dtd", "billion-laughs"])
def test_doctype_payloads_are_refused_in_memory_and_streaming(payload: bytes) -> None:
    with pytest.raises(ForbiddenXml, match="DOCTYPE") as info:
        parse_document(payload, max_bytes=1 << 20)
    assert info.value.reason == "XML_FORBIDDEN"
    with pytest.raises(ForbiddenXml, match="DTDs and entity declarations are not accepted"):
        stream(payload)


def test_xxe_never_reads_the_file() -> None:
    with pytest.raises(ForbiddenXml) as info:
        stream(XXE)
    assert "root:" not in str(info.value)


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(DocumentTooLarge, match="exceeds the limit of 10 bytes"):
        parse_document(b"<a>" + b"x" * 100 + b"</a>", max_bytes=10)


def test_undeclared_entity_and_truncation_are_malformed() -> None:
    with pytest.raises(MalformedXml, match="Entity 'x' not defined"):
        stream(b'<EventMessage xmlns="http://iec.ch/TC57/2011/schema/message">&x;</EventMessage>')
    with pytest.raises(MalformedXml):
        stream(b'<EventMessage xmlns="http://iec.ch/TC57/2011/schema/message"><Header><Verb>crea')


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_bytes_end_in_cim_error(data: bytes) -> None:
    with contextlib.suppress(CimError):
        stream(data)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="<>/=\"' abcHeaderVerbNounPayloadEventMessage&;!-?xml", max_size=300))
def test_garbage_markup_ends_in_cim_error(text: str) -> None:
    prefix = '<EventMessage xmlns="http://iec.ch/TC57/2011/schema/message">'
    with contextlib.suppress(CimError):
        stream((prefix + text).encode())


# --- HTTP/1.1 -------------------------------------------------------------------------------

def test_pipelined_requests_and_keep_alive() -> None:
    conn = HttpConnection(Role.SERVER, max_body=100)
    conn.receive_data(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\n"
                      b"Content-Length: 2\r\nConnection: close\r\n\r\nde")
    first, second = conn.next_event(), conn.next_event()
    assert isinstance(first, HttpRequest) and isinstance(second, HttpRequest)
    assert (first.target, first.body, first.keep_alive) == ("/a", b"abc", True)
    assert (second.target, second.body, second.keep_alive) == ("/b", b"de", False)
    assert conn.next_event() is NEED_DATA


def test_oversized_body_is_refused_before_it_is_read() -> None:
    conn = HttpConnection(Role.SERVER, max_body=1000)
    conn.receive_data(b"POST /a HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
    event = conn.next_event()
    assert isinstance(event, HeadTooLarge)
    assert event.content_length == 999999999


@pytest.mark.parametrize(("data", "status"), [
    (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
    (b"POST /a HTTP/1.1\r\nHost: x\r\n\r\n", 411),
    (b"POST /a HTTP/2.0\r\nContent-Length: 0\r\n\r\n", 505),
    (b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"hello\r\n\r\n", 400),
    (b"POST /a HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
])
def test_bad_requests(data: bytes, status: int) -> None:
    conn = HttpConnection(Role.SERVER, max_body=1000)

    def feed() -> None:
        conn.receive_data(data)
        conn.next_event()
    with pytest.raises(HttpProtocolError) as info:
        feed()
    assert info.value.http_status == status


def test_client_parses_response_split_across_reads() -> None:
    conn = HttpConnection(Role.CLIENT, max_body=100)
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    for byte in wire[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(wire[-1:])
    response = conn.next_event()
    assert isinstance(response, HttpResponse)
    assert (response.status, response.body) == (200, b"hello")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=5), st.sampled_from([Role.SERVER, Role.CLIENT]))
def test_http_garbage_ends_in_protocol_error(chunks: list[bytes], role: Role) -> None:
    conn = HttpConnection(role, max_body=1000)
    try:
        for chunk in [*chunks, b""]:
            conn.receive_data(chunk)
            for _ in range(10):
                if conn.next_event() is NEED_DATA:
                    break
    except HttpProtocolError:
        pass


def test_doctype_is_refused_even_when_no_element_matches_the_tags() -> None:
    # The check used to run only at the first yielded event, which a tag filter can suppress.
    bare = b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY s SYSTEM "file:///etc/passwd">]><m>&s;</m>'
    with pytest.raises(ForbiddenXml, match="DTDs and entity declarations are not accepted"):
        list(iterparse(io.BytesIO(bare), tags=("EventMessage",)))
