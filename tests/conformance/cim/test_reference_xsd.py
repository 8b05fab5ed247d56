"""Our messages against the reference IEC 61968-100 / 61968-9 XSDs.

The reference schemas are not ours to ship: they are read from
../shared/reference/cim next to the repository and never copied into it.
Our own schema subset (adapters/cim/schema) is checked against the same
examples, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.adapter import message_element, response_body
from adapters.cim.errors import SchemaInvalid
from adapters.cim.message import MRM, Binding, Header, MessageKind, ReplyError, RequestParams, build_message, wrap
from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.reader import MappedReading, read_message
from adapters.cim.validation import SchemaValidator
from adapters.cim.xmlsafe import new_parser
from simulators.cim.faults import FaultPlan
from simulators.cim.fleet import Fleet
from simulators.cim.headend import HeadEnd
from tests.support.reference import reference_root

REPO = Path(__file__).resolve().parents[3]
REFERENCE = reference_root() / "cim"
SAMPLES = Path(__file__).resolve().parent / "samples"


def _reference_dir() -> Path:
    xsd = REFERENCE / "xsd-normalized"
    if not (xsd / "Message.xsd").is_file():
        pytest.fail(f"reference CIM XSDs not found at {xsd}: these conformance tests need "
                    "../shared/reference/cim next to the repository (see DESIGN.md section 8)")
    return xsd


class Reference:
    def __init__(self) -> None:
        xsd = _reference_dir()
        self.generic = etree.XMLSchema(etree.parse(str(xsd / "Envelope+MeterReadings.xsd"), new_parser()))
        self.typed = etree.XMLSchema(etree.parse(str(xsd / "MeterReadingsMessage.xsd"), new_parser()))

    def errors(self, data: bytes) -> list[str]:
        message = message_element(etree.fromstring(data, new_parser()))
        schema = self.typed if etree.QName(message).namespace == MRM else self.generic
        if schema.validate(message):
            return []
        return [f"{e.line}: {e.message}" for e in schema.error_log]


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference()


@pytest.fixture(scope="module")
def ours() -> SchemaValidator:
    return SchemaValidator()


def sample_files() -> Iterator[Path]:
    yield from sorted(SAMPLES.glob("*.xml"))


@pytest.mark.parametrize("path", list(sample_files()), ids=lambda p: p.name)
def test_our_samples_are_valid_under_the_reference_and_our_subset(path: Path, reference: Reference,
                                                                  ours: SchemaValidator) -> None:
    data = path.read_bytes()
    assert reference.errors(data) == []
    ours.validate(message_element(etree.fromstring(data, new_parser())))


def test_samples_read_back_to_the_values_they_were_written_from() -> None:
    items = list(read_message(io.BytesIO((SAMPLES / "event-created-soap12.xml").read_bytes()),
                              MeterReadingMapper(MappingOptions())))
    mapped = [i for i in items if isinstance(i, MappedReading)]
    fleet = Fleet(2, datetime(2026, 11, 1, tzinfo=UTC), 1)
    first = mapped[0].readings
    assert first.meter_id == "CIM-000001"
    assert list(first.interval_blocks[0].values) == [fleet.expected("CIM-000001")[t] for t in
                                                     sorted(fleet.expected("CIM-000001"))[:4]]
    assert first.register_reads[0].value == 12345678


@pytest.mark.parametrize("binding", list(Binding))
def test_simulator_events_and_get_replies_are_valid(binding: Binding, reference: Reference,
                                                    ours: SchemaValidator) -> None:
    fleet = Fleet(5, datetime(2026, 11, 1, tzinfo=UTC), 1)
    head_end = HeadEnd(fleet, binding=binding)
    event = head_end.event_message(fleet.meter_ids, fleet.start, fleet.end)
    assert reference.errors(event) == []
    ours.validate(message_element(etree.fromstring(event, new_parser())))
    header = Header(verb="get", timestamp=fleet.start, source="t", message_id="g-1")
    request = wrap(build_message(MessageKind.REQUEST, header, request=RequestParams(fleet.start, fleet.end, ("CIM-000002",)),
                                 typed=binding is not Binding.XML), binding)
    assert reference.errors(request) == []
    status, reply, _ = head_end.get_reply(request)
    assert status == 200
    assert reference.errors(reply) == []
    ours.validate(message_element(etree.fromstring(reply, new_parser())))


@pytest.mark.parametrize("binding", list(Binding))
def test_adapter_replies_are_valid(binding: Binding, reference: Reference) -> None:
    for result, errors in (("OK", ()), ("PARTIAL", (ReplyError("3.1", "FATAL", "BAD_READING_TYPE", "x"),))):
        body = response_body(binding, typed=True, result=result, errors=errors, correlation_id="c-1", source="hub")
        assert reference.errors(body) == []


def test_wrong_order_is_invalid_under_both_schemas(reference: Reference, ours: SchemaValidator) -> None:
    fleet = Fleet(1, datetime(2026, 11, 1, tzinfo=UTC), 1)
    event = HeadEnd(fleet, faults=FaultPlan({"wrong-order": 1.0})).event_message(fleet.meter_ids, fleet.start,
                                                                                 fleet.end)
    assert any("IntervalReadings" in e and "not expected" in e for e in reference.errors(event))
    with pytest.raises(SchemaInvalid, match="IntervalReadings"):
        ours.validate(message_element(etree.fromstring(event, new_parser())))


def test_reference_examples_agree_with_our_subset(reference: Reference, ours: SchemaValidator) -> None:
    examples = REFERENCE / "examples"
    for path in sorted(examples.glob("*.xml")):
        data = path.read_bytes()
        valid_reference = reference.errors(data) == []
        try:
            ours.validate(message_element(etree.fromstring(data, new_parser())))
            valid_ours = True
        except SchemaInvalid:
            valid_ours = False
        assert valid_ours == valid_reference == (not path.name.startswith("NEGATIVE")), path.name
