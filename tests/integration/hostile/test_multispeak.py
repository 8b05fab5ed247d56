"""Hostile requests at the MultiSpeak callback endpoint (CB_Server) the hub hosts.

The adapter runs on the real hub's port; the head-end simulator plays the
honest head-end. Each hostile body gets a SOAP Fault naming the reason and a
dead letter in the store; undecodable items of a notification get an errorObject
and a dead letter while the rest of it is stored; a failure on the hub's side is
a soap:Server fault, never a dropped connection; oversized bodies get 413 before
they are buffered (and are dead-lettered with their request head); an idle or
trickling connection is dropped at the read timeout; connections above the limit
get 503; and an InitiateMeterReadings round trip right after still lands its
readings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]

from adapters.multispeak import MultiSpeakAdapter, parse_config
from adapters.multispeak.soap import MSP_NS, SOAP_ENV_NS, MessageHeader
from adapters.port import IngestPort, SubmitOutcome
from gateway.errors import StoreUnavailable
from gateway.hub import Hub
from meterhub.v1 import model_pb2 as pb
from simulators.multispeak.fleet import FleetData, meter_ids
from simulators.multispeak.server import HeadEndSimulator
from tests.integration.hostile.conftest import (
    BILLION_LAUGHS,
    FLOOD_BYTES,
    TEST_TIMEOUT_SECONDS,
    XXE,
    RawResponse,
    dead_letters,
    http_post,
    parse_response,
    post,
    read_to_eof,
    register_meters,
    running_hub,
    send_and_read,
    stored_intervals,
    stream_until_closed,
    traced_peak,
    wait_until,
)

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)

NOW = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
METERS = meter_ids(2)
MAX_CALLBACK = 64 * 1024
READ_TIMEOUT = 1.0
PATH = "/CB_Server.asmx"


@dataclass(frozen=True, slots=True)
class Callback:
    hub: Hub
    sim: HeadEndSimulator
    adapter: MultiSpeakAdapter
    port: int


MAX_CONNECTIONS = 8


@pytest.fixture(autouse=True)
def no_unhandled_exceptions(caplog: pytest.LogCaptureFixture) -> object:
    """A connection handler that dies with an exception is logged by asyncio at ERROR: a crash."""
    caplog.set_level(logging.WARNING)
    yield
    crashes = [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert crashes == []


@pytest.fixture
async def callback(tmp_path: Path) -> AsyncIterator[Callback]:
    async with HeadEndSimulator(METERS, user="hub", password="secret", clock=lambda: NOW, callback_user="headend",
                                callback_password="cb-secret") as sim, running_hub(tmp_path) as hub:
        await register_meters(hub, METERS)
        config = parse_config({"type": "multispeak", "url": sim.url, "meters": list(METERS), "user": "hub",
                               "password": "secret", "callback_listen": "127.0.0.1:0", "callback_user": "headend",
                               "callback_password": "cb-secret", "max_callback_bytes": MAX_CALLBACK,
                               "timeout_seconds": READ_TIMEOUT, "max_retries": 0,
                               "callback_max_connections": MAX_CONNECTIONS})
        adapter = MultiSpeakAdapter("ms-north", config, hub.port_for("ms-north", "multispeak"), clock=lambda: NOW)
        async with adapter.session():
            assert adapter.callback_server is not None
            yield Callback(hub, sim, adapter, adapter.callback_server.port)


def fault_of(response: RawResponse) -> tuple[str, str]:
    assert response.status == 500, response.body[:300]
    fault = etree.fromstring(response.body).find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    assert fault is not None
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or ""


async def assert_callbacks_still_land(callback: Callback) -> None:
    """A real InitiateMeterReadingsByMeterID round trip after the abuse: its callbacks are stored."""
    opened = await callback.adapter.initiate_reads(METERS)
    assert len(opened) == 1
    await asyncio.wait_for(callback.sim.wait_callbacks(), 10)
    assert callback.sim.stats.callback_errors == []
    data = FleetData(900)
    day = NOW.replace(hour=0)
    for meter in METERS:
        want = {e: data.interval_wh(meter, e) for e in data.ends(day - timedelta(days=1), day)}
        assert await stored_intervals(callback.hub, meter) == want


def truncated_notification() -> bytes:
    sim = HeadEndSimulator(METERS, callback_user="headend", callback_password="cb-secret", clock=lambda: NOW)
    body = sim.notifications("t-1", list(METERS), NOW)[1][1]
    return body[: len(body) // 2]


TWO_BODIES = (f'<soap:Envelope xmlns:soap="{SOAP_ENV_NS}"><soap:Body>'
              '<a xmlns="http://www.multispeak.org/Version_4.1_Release"/>'
              '<b xmlns="http://www.multispeak.org/Version_4.1_Release"/></soap:Body></soap:Envelope>').encode()


HOSTILE_BODIES: list[tuple[str, bytes, str, str]] = [
    ("xxe", XXE, "text/xml", "XML_FORBIDDEN"),
    ("billion-laughs", BILLION_LAUGHS, "text/xml", "XML_FORBIDDEN"),
    ("truncated", truncated_notification(), "text/xml", "MALFORMED_XML"),
    ("binary-garbage", b"\x00\x01\xfe binary", "text/xml", "MALFORMED_XML"),
    ("blank-body", b"   ", "text/xml", "MALFORMED_XML"),
    # The body decides, not the label: JSON is refused as the XML it is not.
    ("json-body", b'{"transactionID": "x"}', "application/json", "MALFORMED_XML"),
    ("not-soap", b"<html><body>hi</body></html>", "text/html", "MALFORMED_XML"),
    ("two-body-elements", TWO_BODIES, "text/xml", "UNEXPECTED_CONTENT"),
]


async def test_hostile_callbacks_get_soap_faults_and_dead_letters(callback: Callback) -> None:
    for name, body, content_type, reason in HOSTILE_BODIES:
        started = time.monotonic()
        response = await post(callback.port, PATH, body, content_type=content_type)
        assert time.monotonic() - started < 2.0, name
        code, text = fault_of(response)
        assert code == "soap:Client" and text.startswith(f"{reason}: "), (name, code, text)
        assert "root:" not in text, name  # nothing of /etc/passwd in the answer
    dead = dead_letters(callback.hub)
    assert [(d.reason_code, d.payload) for d in dead] == [(reason, body) for _, body, _, reason in HOSTILE_BODIES]
    assert {(d.head_end, d.adapter_type) for d in dead} == {("ms-north", "multispeak")}
    await assert_callbacks_still_land(callback)


async def test_oversized_callback_is_refused_before_it_is_buffered(callback: Callback) -> None:
    declared = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                f"Content-Length: {1 << 30}\r\n\r\n").encode()
    chunked = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    chunk = b"10000\r\n" + b"<" * 0x10000 + b"\r\n"
    with traced_peak() as peak:
        # A declared length above the cap is answered from the head alone.
        head_only = await send_and_read(callback.port, declared)
        # A chunked body has no declared length: it is counted as it streams and cut at the cap.
        sent, answer = await stream_until_closed(callback.port, chunked, filler=chunk)
    assert head_only.startswith(b"HTTP/1.1 413")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413")
    assert sent < FLOOD_BYTES, "the endpoint kept reading a body past its cap"
    assert peak() < 4 << 20, f"{peak()} bytes allocated while refusing oversized callbacks"
    # Both refusals are dead letters holding the request head, and for the streamed body its first 4 KiB.
    by_length, by_stream = dead_letters(callback.hub)
    assert {(d.reason_code, d.content_type, d.head_end) for d in (by_length, by_stream)} == {
        ("XML_TOO_LARGE", "message/http", "ms-north")}
    assert by_length.reason == (f"callback: POST {PATH} declared a body of {1 << 30} bytes, above the "
                                f"{MAX_CALLBACK}-byte cap; body not read")
    assert by_length.payload == (f"POST {PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\n"
                                 f"content-length: {1 << 30}\r\n\r\n").encode()
    assert by_stream.reason.startswith(f"callback: POST {PATH}: body passed the {MAX_CALLBACK}-byte cap after ")
    assert by_stream.payload == (f"POST {PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\n"
                                 "transfer-encoding: chunked\r\n\r\n").encode() + b"<" * 4096
    await assert_callbacks_still_land(callback)


BROKEN_HTTP: list[tuple[str, bytes, int]] = [
    ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n", 400),
    ("conflicting-lengths",
     f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n<a/>\n".encode(), 400),
    ("bad-chunk-size", f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".encode(), 400),
    ("wrong-method", f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 405),
]


async def test_broken_http_is_answered_and_closed(callback: Callback) -> None:
    for name, request_bytes, status in BROKEN_HTTP:
        raw = await send_and_read(callback.port, request_bytes, half_close=True)
        assert raw.startswith(f"HTTP/1.1 {status} ".encode()), (name, raw[:80])
    sent, answer = await stream_until_closed(callback.port, f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode(),
                                             filler=b"X-Flood: " + b"a" * 1000 + b"\r\n")
    assert sent < FLOOD_BYTES, "an endless header block was read far past the header cap"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")
    # Framing errors never became a message: nothing for the dead-letter table.
    assert dead_letters(callback.hub) == []
    await assert_callbacks_still_land(callback)


async def test_idle_half_request_is_dropped_at_the_read_timeout(callback: Callback) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", callback.port)
    try:
        writer.write(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<soap:Env".encode())
        await writer.drain()
        started = time.monotonic()
        await read_to_eof(reader, seconds=READ_TIMEOUT + 3)
        assert time.monotonic() - started < READ_TIMEOUT + 2
    finally:
        writer.close()
    assert dead_letters(callback.hub) == []
    await assert_callbacks_still_land(callback)


async def test_a_request_head_trickled_byte_by_byte_is_cut_at_the_read_timeout(callback: Callback) -> None:
    """Each byte comes well within the read timeout, but the whole head must: a slow client cannot
    hold a connection slot forever."""
    reader, writer = await asyncio.open_connection("127.0.0.1", callback.port)
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\n" + "X-Slow: " + "a" * 200
    started = time.monotonic()
    try:
        for byte in head.encode():
            if reader.at_eof() or time.monotonic() - started > READ_TIMEOUT + 3:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(READ_TIMEOUT / 5)
        await read_to_eof(reader, seconds=READ_TIMEOUT + 3)
    except ConnectionError:
        pass
    finally:
        writer.close()
    assert time.monotonic() - started < READ_TIMEOUT + 2.5
    assert dead_letters(callback.hub) == []
    await assert_callbacks_still_land(callback)


async def test_hostile_body_does_not_consume_an_open_transaction(callback: Callback) -> None:
    """Garbage posted under a transaction the hub opened: refused, and the transaction's real
    notifications, arriving next, are still taken."""
    callback.adapter.transactions.open("t-open", frozenset(METERS), NOW, timedelta(minutes=5))
    notifications = callback.sim.notifications("t-open", list(METERS), NOW)
    for _, body in notifications:
        response = await post(callback.port, PATH, body[: len(body) - 40])
        assert fault_of(response)[1].startswith("MALFORMED_XML: ")
    for _, body in notifications:
        response = await post(callback.port, PATH, body)
        assert response.status == 200 and b"errorObject" not in response.body
    data = FleetData(900)
    day = NOW.replace(hour=0)
    for meter in METERS:
        want = {e: data.interval_wh(meter, e) for e in data.ends(day - timedelta(days=1), day)}
        assert await stored_intervals(callback.hub, meter) == want
    assert [d.reason_code for d in dead_letters(callback.hub)] == ["MALFORMED_XML"] * 2



def interval_notification(callback: Callback) -> bytes:
    callback.adapter.transactions.open("t-open", frozenset(METERS), NOW, timedelta(minutes=5))
    return callback.sim.notifications("t-open", list(METERS), NOW)[1][1]


def replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(body: bytes) -> bytes:
        assert old in body
        return body.replace(old, new, 1)
    return edit


def second_profile(length: str) -> Callable[[bytes], bytes]:
    """A second profile whose intervalLength is ``length``; the first meter's block refers to it."""
    def edit(body: bytes) -> bytes:
        root = etree.fromstring(body)
        q = f"{{{MSP_NS}}}"
        (profile,) = root.iter(f"{q}profile")
        bad = etree.fromstring(etree.tostring(profile))
        bad.set("profileID", "LP-BAD")
        bad.find(f"{q}intervalLength").text = length
        profile.addnext(bad)
        first_block = next(root.iter(f"{q}block"))
        first_block.find(f"{q}profileID").text = "LP-BAD"
        return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))
    return edit


def error_strings(response: RawResponse) -> list[str]:
    assert response.status == 200, response.body[:300]
    return [e.get("errorString") or "" for e in etree.fromstring(response.body).iter(f"{{{MSP_NS}}}errorObject")]


async def assert_stored_day(callback: Callback, meter: str, stored: bool) -> None:
    data = FleetData(900)
    day = NOW.replace(hour=0)
    want = {e: data.interval_wh(meter, e) for e in data.ends(day - timedelta(days=1), day)} if stored else {}
    assert await stored_intervals(callback.hub, meter) == want


@pytest.mark.parametrize(("edit", "reason", "lands"), [
    # zeep reads an empty xsd:int as None: int(None) was a TypeError that dropped the connection.
    pytest.param(replace(b"<ns0:idx>1</ns0:idx>", b"<ns0:idx></ns0:idx>"),
                 "intervalData block: meter MSP-000001: a channel's idx is missing or empty",
                 (False, True), id="empty-channel-index"),
    # float("INF") x 60 was an OverflowError. Only the blocks of that profile are lost.
    pytest.param(second_profile("INF"),
                 "intervalData: profile 'LP-BAD' intervalLength inf Minutes is not a finite interval length "
                 "(1 block(s) refer to it)", (False, True), id="infinite-interval-length"),
    pytest.param(second_profile("NaN"),
                 "intervalData: profile 'LP-BAD' intervalLength nan Minutes is not a finite interval length "
                 "(1 block(s) refer to it)", (False, True), id="nan-interval-length"),
    pytest.param(replace(b'<ns0:intervalLength units="Minutes">15<', b'<ns0:intervalLength units="Minutes">INF<'),
                 "intervalData: profile 'LP15' intervalLength inf Minutes is not a finite interval length "
                 "(2 block(s) refer to it)", (False, False), id="infinite-length-of-the-only-profile"),
    pytest.param(replace(b"<ns0:index>1</ns0:index>", b"<ns0:index></ns0:index>"),
                 "intervalData: profile 'LP15': a channel's index is missing or empty (2 block(s) refer to it)",
                 (False, False), id="empty-profile-channel-index"),
    pytest.param(replace(b"<ns0:d>", b"<ns0:d>" + b"9" * 5000), "has 50", (False, True), id="5000-digit-value"),
])
async def test_undecodable_interval_data_gets_an_answer_and_a_dead_letter(
        callback: Callback, edit: Callable[[bytes], bytes], reason: str, lands: tuple[bool, bool]) -> None:
    """One bad block or profile costs only the blocks it spoils: they are dead-lettered with the profiles
    they need, named in an errorObject of a 200 answer, and the rest of the notification is stored."""
    hostile = edit(interval_notification(callback))
    raw = await send_and_read(callback.port, http_post(PATH, hostile))
    assert raw, "the callback endpoint dropped the connection without an HTTP answer"
    (error,) = error_strings(parse_response(raw))
    assert error.startswith("UNDECODABLE_READING: ")
    (dead,) = dead_letters(callback.hub)
    assert (dead.reason_code, dead.content_type) == ("UNDECODABLE_READING", "text/xml")
    assert reason in dead.reason and dead.reason.startswith("IntervalDataNotification t-open: ")
    # The dead letter is the rejected XML as received: its profiles and the blocks that could not be read.
    kept = etree.fromstring(dead.payload)
    q = f"{{{MSP_NS}}}"
    kept_meters = {b.findtext(f"{q}meterID") for b in kept.iter(f"{q}block")}
    assert kept_meters == {m for m, ok in zip(METERS, lands, strict=True) if not ok}
    assert kept.find(f"{q}profiles") is not None
    for meter, ok in zip(METERS, lands, strict=True):
        await assert_stored_day(callback, meter, ok)


class _BlockingPort:
    """The hub's port, except that submit waits for ``release`` (a store that hangs)."""

    def __init__(self, inner: IngestPort, release: asyncio.Event) -> None:
        self.inner = inner
        self.release = release
        self.waiting = 0

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        self.waiting += 1
        await self.release.wait()
        return await self.inner.submit(batch)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class _FailingPort:
    """The hub's port, except that submit fails as given."""

    def __init__(self, inner: IngestPort, error: Exception) -> None:
        self.inner = inner
        self.error = error

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        raise self.error

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.parametrize(("error", "faultstring"), [
    (StoreUnavailable("database is locked"),
     "STORE_UNAVAILABLE: the hub cannot take readings now; send them again later"),
    (RuntimeError("a defect"), "INTERNAL: the hub failed to process the request"),
])
async def test_a_failure_inside_the_handler_is_a_soap_server_fault(callback: Callback, caplog: pytest.LogCaptureFixture,
                                                                   error: Exception, faultstring: str) -> None:
    endpoint = callback.adapter.callback
    assert endpoint is not None
    real = endpoint.port
    endpoint.port = _FailingPort(real, error)  # type: ignore[assignment]
    body = interval_notification(callback)
    started = time.monotonic()
    response = await post(callback.port, PATH, body)
    assert time.monotonic() - started < 2.0
    assert fault_of(response) == ("soap:Server", faultstring)
    assert "a defect" not in response.body.decode()  # nothing of our internals in the answer
    logged = [r for r in caplog.records if r.name == "adapters.multispeak.http_server" and r.levelno == logging.ERROR]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[1] is error
    # The head-end sends again once the hub is back: it is taken, once.
    endpoint.port = real
    response = await post(callback.port, PATH, body)
    assert error_strings(response) == []
    for meter in METERS:
        await assert_stored_day(callback, meter, True)


async def test_a_connection_flood_is_refused_at_the_limit_and_callbacks_still_land(callback: Callback) -> None:
    endpoint = callback.adapter.callback
    assert endpoint is not None
    real = endpoint.port
    release = asyncio.Event()
    endpoint.port = blocking = _BlockingPort(real, release)  # type: ignore[assignment]
    body = interval_notification(callback)
    # MAX_CONNECTIONS notifications stuck in a hanging store hold every connection slot ...
    held = [asyncio.ensure_future(post(callback.port, PATH, body)) for _ in range(MAX_CONNECTIONS)]
    await wait_until(lambda: blocking.waiting == MAX_CONNECTIONS, what="every slot held")
    # ... so a flood of further connections is answered 503 at once, without being read.
    ping = callback.sim.cb.build_request("PingURL", MessageHeader(user="headend", password="cb-secret"))
    started = time.monotonic()
    with traced_peak() as peak:
        answers = await asyncio.gather(*(send_and_read(callback.port, http_post(PATH, ping)) for _ in range(200)))
    assert time.monotonic() - started < 8.0
    assert peak() < 8 << 20, f"{peak()} bytes allocated while refusing a connection flood"
    refused = [a for a in answers if a]
    assert len(refused) >= 150  # an answer written before the request was read may be lost to a reset
    assert all(a.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1\r\n" in a for a in refused)
    # The held notifications complete once the store answers; then the endpoint serves as before.
    release.set()
    for response in await asyncio.gather(*held):
        assert error_strings(response) == []
    endpoint.port = real
    assert dead_letters(callback.hub) == []
    assert (await post(callback.port, PATH, ping)).status == 200
    await assert_callbacks_still_land(callback)
