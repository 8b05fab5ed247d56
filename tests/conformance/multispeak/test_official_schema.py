"""The messages we send and accept validate against the official MultiSpeak v4.1.6 schemas.

The official WSDLs are read from ../shared/reference/multispeak at test time (never copied
into the project); their inline schemas are compiled with lxml.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from lxml import etree  # type: ignore[import-untyped]

from adapters.multispeak import MultiSpeakAdapter, parse_config
from adapters.multispeak.http_server import HttpRequest, HttpResponse, HttpServer
from adapters.multispeak.soap import CB_SERVER, MR_SERVER, MSP_NS, SOAP_ENV_NS, MessageHeader, MultiSpeakCodec
from simulators.multispeak.fleet import meter_ids
from simulators.multispeak.server import HeadEndSimulator
from tests.support.recording_port import RecordingPort
from tests.support.reference import reference_root

REFERENCE = reference_root() / "multispeak" / "v4.1.6"
XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP_BINDING = "http://schemas.xmlsoap.org/wsdl/soap/"
NOW = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)


def _reference(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        pytest.fail(f"official MultiSpeak v4.1.6 WSDL missing: {path} (the conformance tests read "
                    "../shared/reference/multispeak; it is reference material and is not shipped with meterhub)")
    return path


def _official_schema(name: str, tmp: Path) -> etree.XMLSchema:
    """The WSDL's inline schemas as files whose imports point at each other, compiled."""
    doc = etree.parse(str(_reference(name)), etree.XMLParser(resolve_entities=False, no_network=True))
    schemas = doc.getroot().findall(f"{{{WSDL}}}types/{{{XS}}}schema")
    files = {s.get("targetNamespace"): tmp / f"schema{i}.xsd" for i, s in enumerate(schemas)}
    for schema in schemas:
        for imp in schema.findall(f"{{{XS}}}import"):
            if imp.get("namespace") in files:
                imp.set("schemaLocation", files[imp.get("namespace")].name)
        files[schema.get("targetNamespace")].write_bytes(etree.tostring(schema))
    main = etree.parse(str(files[MSP_NS]))
    return etree.XMLSchema(main)


@pytest.fixture(scope="module")
def mr_schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    return _official_schema("MR_Server.wsdl", tmp_path_factory.mktemp("mr"))


@pytest.fixture(scope="module")
def cb_schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    return _official_schema("CB_Server.wsdl", tmp_path_factory.mktemp("cb"))


def assert_valid(schema: etree.XMLSchema, envelope: bytes) -> str:
    """Validates the MultiSpeakMsgHeader and the body element; returns the body element's name."""
    root = etree.fromstring(envelope)
    header = root.find(f"{{{SOAP_ENV_NS}}}Header/{{{MSP_NS}}}MultiSpeakMsgHeader")
    body = root.find(f"{{{SOAP_ENV_NS}}}Body")[0]
    for element in (header, body):
        assert element is not None
        copy = etree.fromstring(etree.tostring(element))
        if not schema.validate(copy):
            raise AssertionError(f"{etree.QName(element).localname} is not valid v4.1.6: {schema.error_log}")
    return str(etree.QName(body).localname)


class Recorder:
    """Sits between the adapter and the simulator and keeps every request and response."""

    def __init__(self, target: HeadEndSimulator) -> None:
        self.target = target
        self.exchanges: list[tuple[bytes, bytes]] = []

    async def handle(self, request: HttpRequest) -> HttpResponse:
        response = await self.target.handle(request)
        self.exchanges.append((request.body, response.body))
        return response


async def test_adapter_requests_and_simulator_responses_are_valid(mr_schema: etree.XMLSchema,
                                                                  cb_schema: etree.XMLSchema) -> None:
    port = RecordingPort()
    meters = meter_ids(2)
    async with HeadEndSimulator(meters, clock=lambda: NOW, user="hub", password="pw") as sim:
        recorder = Recorder(sim)
        async with HttpServer(recorder.handle, host="127.0.0.1", port=0, max_body_bytes=1 << 22) as proxy:
            for lp_format in ("intervalData", "formattedBlock"):
                config = parse_config({
                    "url": f"http://127.0.0.1:{proxy.port}/MR_Server.asmx", "meters": list(meters), "user": "hub",
                    "password": "pw", "start": (NOW - timedelta(days=1)).isoformat(), "lp_format": lp_format,
                    "callback_listen": "127.0.0.1:0"})
                adapter = MultiSpeakAdapter("conf", config, port, clock=lambda: NOW)
                async with adapter.session():
                    await adapter.poll_once()
                    await adapter.call("PingURL")
                    await adapter.initiate_reads(meters)
                    await sim.wait_callbacks()
    seen = set()
    for request, response in recorder.exchanges:
        seen.add(assert_valid(mr_schema, request))
        seen.add(assert_valid(mr_schema, response))
    assert seen == {"GetLPReadingsByMeterIDIntervalData", "GetLPReadingsByMeterIDIntervalDataResponse",
                    "GetLPReadingsByMeterIDFormattedBlock", "GetLPReadingsByMeterIDFormattedBlockResponse",
                    "GetReadingsByMeterID", "GetReadingsByMeterIDResponse", "PingURL", "PingURLResponse",
                    "InitiateMeterReadingsByMeterID", "InitiateMeterReadingsByMeterIDResponse"}
    assert port.batches and not port.dead_letters
    del cb_schema


async def test_callbacks_and_their_replies_are_valid(cb_schema: etree.XMLSchema) -> None:
    port = RecordingPort()
    meters = meter_ids(2)
    config = parse_config({"url": "http://127.0.0.1:9/MR_Server.asmx", "meters": list(meters),
                           "callback_listen": "127.0.0.1:0"})
    adapter = MultiSpeakAdapter("conf", config, port, clock=lambda: NOW)
    sim = HeadEndSimulator(meters, clock=lambda: NOW)
    async with adapter.session(), httpx.AsyncClient(trust_env=False) as client:
        adapter.transactions.open("t1", frozenset(meters), NOW, timedelta(minutes=5))
        bodies = [body for _, body in sim.notifications("t1", list(meters), NOW)]
        bodies.append(MultiSpeakCodec(CB_SERVER, max_bytes=1 << 20).build_request("PingURL", MessageHeader()))
        names = set()
        for body in bodies:
            names.add(assert_valid(cb_schema, body))
            reply = await client.post(adapter.callback_url, content=body)
            assert reply.status_code == 200
            names.add(assert_valid(cb_schema, reply.content))
    assert names == {"ReadingChangedNotification", "ReadingChangedNotificationResponse", "IntervalDataNotification",
                     "IntervalDataNotificationResponse", "PingURL", "PingURLResponse"}
    assert len(port.batches) == 2
    await asyncio.sleep(0)


@pytest.mark.parametrize(("ours", "official"), [(MR_SERVER, "MR_Server.wsdl"), (CB_SERVER, "CB_Server.wsdl")])
def test_operations_and_soap_actions_match_the_official_wsdl(ours: str, official: str) -> None:
    doc = etree.parse(str(_reference(official)), etree.XMLParser(resolve_entities=False, no_network=True))
    binding = doc.getroot().find(f"{{{WSDL}}}binding")
    actions = {op.get("name"): op.find(f"{{{SOAP_BINDING}}}operation").get("soapAction")
               for op in binding.findall(f"{{{WSDL}}}operation")}
    codec = MultiSpeakCodec(ours, max_bytes=1 << 20)
    for operation in codec.operations:
        assert actions.get(operation) == codec.soap_action(operation)


def test_the_official_schema_rejects_what_v41_forbids(mr_schema: etree.XMLSchema) -> None:
    """Keeps the checks above honest: a unit outside the v4.1 uom list and a header without
    BuildString are refused by the official schema (our lenient subset would accept them)."""
    sim = HeadEndSimulator(meter_ids(1), clock=lambda: NOW)
    reading = sim.meter_reading(sim.meters[0], NOW)
    reading["readingValues"]["readingValue"][0]["units"] = "kilowatt-hours"
    body = sim.mr.build_response("GetReadingsByMeterID", sim.header,
                                 GetReadingsByMeterIDResult={"meterReading": [reading]})
    with pytest.raises(AssertionError, match=r"not valid v4\.1\.6"):
        assert_valid(mr_schema, body)
    body = sim.mr.build_response("PingURL", MessageHeader(build_string=""), PingURLResult=None)
    root = etree.fromstring(body)
    header = root.find(f"{{{SOAP_ENV_NS}}}Header/{{{MSP_NS}}}MultiSpeakMsgHeader")
    del header.attrib["BuildString"]
    with pytest.raises(AssertionError, match="MultiSpeakMsgHeader is not valid"):
        assert_valid(mr_schema, etree.tostring(root))
