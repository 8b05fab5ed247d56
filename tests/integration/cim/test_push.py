"""Pushed created / changed events over real loopback HTTP, plain XML and SOAP."""

from __future__ import annotations

import re
from typing import Any

import pytest

from adapters.cim.http11 import HttpResponse
from adapters.cim.message import Binding
from adapters.cim.outbound import parse_reply
from adapters.cim.transport import HttpClient
from simulators.cim.faults import FaultPlan
from simulators.cim.fleet import Fleet
from simulators.cim.headend import HeadEnd
from tests.integration.cim.conftest import running, stored_intervals, url_of
from tests.support.recording_port import RecordingPort


@pytest.mark.parametrize("binding", list(Binding))
async def test_fleet_pushed_as_events_is_stored_exactly(binding: Binding, fleet: Fleet, port: RecordingPort,
                                                        endpoint_config: dict[str, Any]) -> None:
    async with running(endpoint_config, port) as adapter:
        report = await HeadEnd(fleet, binding=binding).push(url_of(adapter), meters_per_message=8)
    assert report.errors == []
    assert report.results == {"OK": 3}
    assert stored_intervals(port) == fleet.meters * fleet.intervals_per_meter
    for meter in ("CIM-000001", "CIM-000020"):
        assert port.interval_values(meter) == fleet.expected(meter)
    assert port.dead_letters == []
    block = port.batches[0].interval_blocks[0]
    assert block.reading_type.cim_code == fleet.reading_type_code
    assert any(block.qualities for batch in port.batches for block in batch.interval_blocks)


async def post(url: str, body: bytes, **headers: str) -> HttpResponse:
    client = HttpClient(url, timeout=10, max_body=1 << 20, headers=tuple(headers.items()))
    try:
        return await client.post(body)
    finally:
        await client.close()


async def test_bad_codes_land_the_good_readings_and_reply_partial(fleet: Fleet, port: RecordingPort,
                                                                   endpoint_config: dict[str, Any]) -> None:
    faults = FaultPlan({"bad-code": 0.3}, seed=7)
    async with running(endpoint_config, port) as adapter:
        report = await HeadEnd(fleet, faults=faults).push(url_of(adapter), meters_per_message=20)
    damaged = faults.log.damaged_meters
    assert damaged and len(damaged) < fleet.meters
    assert report.results == {"PARTIAL": 1}
    assert len(report.errors) == len(damaged)
    assert all(e.startswith("3.1 BAD_READING_TYPE") for e in report.errors)
    assert {d.reason_code for d in port.dead_letters} == {"BAD_READING_TYPE"}
    dead_meters = [re.search(rb"mRID>(CIM-\d+)<", d.payload).group(1).decode() for d in port.dead_letters]  # type: ignore[union-attr]
    assert sorted(dead_meters) == sorted(damaged)
    assert all("has 7 fields" in d.reason for d in port.dead_letters)
    for meter in fleet.meter_ids:
        assert port.interval_values(meter) == ({} if meter in damaged else fleet.expected(meter))


async def test_malformed_message_is_refused_whole_and_dead_lettered(fleet: Fleet, port: RecordingPort,
                                                                     endpoint_config: dict[str, Any]) -> None:
    body = HeadEnd(fleet).event_message(fleet.meter_ids, fleet.start, fleet.end)[:-300]
    async with running(endpoint_config, port) as adapter:
        response = await post(url_of(adapter), body)
    assert response.status == 400
    reply = parse_reply(response.body, max_bytes=1 << 20).reply
    assert reply is not None and reply.result == "FAILED"
    assert [(e.code, e.reason) for e in reply.errors] == [("2.1", "XML_MALFORMED")]
    assert port.batches == []
    (dead,) = port.dead_letters
    assert dead.payload == body and dead.reason_code == "XML_MALFORMED"


async def test_xxe_over_http_is_refused(port: RecordingPort, endpoint_config: dict[str, Any]) -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY s SYSTEM "file:///etc/passwd">]>'
            b'<EventMessage xmlns="http://iec.ch/TC57/2011/schema/message"><Header><Verb>created</Verb>'
            b"<Noun>&s;</Noun></Header></EventMessage>")
    async with running(endpoint_config, port) as adapter:
        response = await post(url_of(adapter), body)
    assert response.status == 400
    reply = parse_reply(response.body, max_bytes=1 << 20).reply
    assert reply is not None and [(e.code, e.reason) for e in reply.errors] == [("2.2", "XML_FORBIDDEN")]
    assert [d.reason_code for d in port.dead_letters] == ["XML_FORBIDDEN"]


async def test_soap_failure_is_a_soap_fault(fleet: Fleet, port: RecordingPort,
                                            endpoint_config: dict[str, Any]) -> None:
    body = HeadEnd(fleet, binding=Binding.SOAP11).event_message(fleet.meter_ids[:1], fleet.start, fleet.end)
    async with running(endpoint_config, port) as adapter:
        response = await post(url_of(adapter), body.replace(b"<msg:Verb>created", b"<msg:Verb>deleted"))
    assert response.status == 500
    assert b"<faultcode>soap:Client</faultcode>" in response.body
    assert b"MeterReadingsFaultMessage" in response.body and b"UNSUPPORTED_MESSAGE" in response.body


async def test_oversized_payload_gets_413_without_being_read(fleet: Fleet, port: RecordingPort,
                                                             endpoint_config: dict[str, Any]) -> None:
    faults = FaultPlan({"oversized": 1.0}, oversize_bytes=300_000)
    async with running({**endpoint_config, "max_message_bytes": 200_000}, port) as adapter:
        report = await HeadEnd(fleet, faults=faults).push(url_of(adapter), meters_per_message=20)
    assert report.http_statuses == {413: 1}
    assert port.batches == []
    (dead,) = port.dead_letters
    assert dead.reason_code == "DOCUMENT_TOO_LARGE"
    assert "above max_message_bytes 200000" in dead.reason


async def test_bearer_token_is_required_when_configured(fleet: Fleet, port: RecordingPort,
                                                        endpoint_config: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIM_TEST_TOKEN", "s3cret")
    async with running({**endpoint_config, "auth_token_env": "CIM_TEST_TOKEN"}, port) as adapter:
        refused = await post(url_of(adapter), b"<x/>")
        accepted = await HeadEnd(fleet).push(url_of(adapter), token="s3cret")
    assert refused.status == 401
    assert accepted.results == {"OK": 1}
    assert stored_intervals(port) == fleet.meters * fleet.intervals_per_meter


async def test_wrong_element_order_fails_validation_only_when_switched_on(fleet: Fleet,
                                                                          endpoint_config: dict[str, Any]) -> None:
    lenient, strict = RecordingPort(), RecordingPort()
    async with running(endpoint_config, lenient) as adapter:
        ok = await HeadEnd(fleet, faults=FaultPlan({"wrong-order": 1.0})).push(url_of(adapter), meters_per_message=20)
    assert ok.results == {"OK": 1}
    assert lenient.interval_values("CIM-000003") == fleet.expected("CIM-000003")
    endpoint_config = {"listen": endpoint_config["listen"].rsplit(":", 1)[0] + ":0", "validate_schema": True}
    async with running(endpoint_config, strict) as adapter:
        refused = await HeadEnd(fleet, faults=FaultPlan({"wrong-order": 1.0})).push(url_of(adapter),
                                                                                     meters_per_message=20)
    assert refused.results == {"FAILED": 1}
    assert refused.errors[0].startswith("2.4 SCHEMA_INVALID")
    assert "IntervalReadings': This element is not expected" in refused.errors[0]
    assert strict.batches == []
    assert [d.reason_code for d in strict.dead_letters] == ["SCHEMA_INVALID"]


async def test_changed_event_is_taken_like_created(fleet: Fleet, port: RecordingPort,
                                                   endpoint_config: dict[str, Any]) -> None:
    body = HeadEnd(fleet).event_message(fleet.meter_ids[:2], fleet.start, fleet.end, verb="changed")
    async with running(endpoint_config, port) as adapter:
        response = await post(url_of(adapter), body)
    assert response.status == 200
    assert port.interval_values("CIM-000002") == fleet.expected("CIM-000002")
