"""meterhub.v1 blocks and register reads -> a 61968-9 ``MeterReadings`` payload.

Pure. One MeterReading per meter, one IntervalBlocks per canonical block,
end-stamped readings in UTC (``Z``), exact decimal values in the unit of the
ReadingType code (kWh for ``...3.72.0``), missing intervals left out and
quality codes only where an interval is not plainly valid. Element order is
the order of the 61968-9 schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.message import MR
from adapters.cim.quality import codes_from_flags
from adapters.cim.readingtype import code_for
from meterhub.v1 import model_pb2 as pb

_MISSING = pb.QUALITY_FLAG_MISSING


def format_value(count: int, exponent: int, multiplier: int) -> str:
    """``count x 10^exponent`` base units written in units of 10^multiplier, exactly."""
    value = Decimal(count).scaleb(exponent - multiplier)
    text = format(value, "f")
    return text


def _stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{MR}}}{name}")
    if text is not None:
        element.text = text
    return element


def _quality_elements(parent: etree._Element, flags: int) -> None:
    for code in codes_from_flags(flags):
        _sub(_sub(parent, "ReadingQualities"), "ReadingQualityType").set("ref", code)


def _interval_block(parent: etree._Element, block: pb.IntervalBlock) -> None:
    cim = code_for(block.reading_type, block.interval_seconds)
    element = _sub(parent, "IntervalBlocks")
    first = block.first_interval_end_time.seconds
    step = block.interval_seconds
    exponent = block.reading_type.power_of_ten_multiplier
    qualities = block.qualities
    for i, count in enumerate(block.values):
        flags = qualities[i] if qualities else 0
        if flags & _MISSING:
            continue
        reading = _sub(element, "IntervalReadings")
        _sub(reading, "timeStamp", _stamp(first + i * step))
        _sub(reading, "value", format_value(count, exponent, cim.multiplier))
        if flags:
            _quality_elements(reading, flags)
    _sub(element, "ReadingType").set("ref", cim.code)


def _register_read(parent: etree._Element, read: pb.RegisterRead) -> None:
    cim = code_for(read.reading_type, None)
    element = _sub(parent, "Readings")
    _sub(element, "timeStamp", _stamp(read.read_time.seconds))
    _sub(element, "value", format_value(read.value, read.reading_type.power_of_ten_multiplier, cim.multiplier))
    if read.quality:
        _quality_elements(element, read.quality)
    _sub(element, "ReadingType").set("ref", cim.code)


def meter_readings(blocks: Iterable[pb.IntervalBlock], register_reads: Iterable[pb.RegisterRead] = ()
                   ) -> etree._Element:
    """The ``m:MeterReadings`` element for the given canonical data."""
    by_meter: dict[str, tuple[list[pb.IntervalBlock], list[pb.RegisterRead]]] = {}
    for block in blocks:
        by_meter.setdefault(block.meter_id, ([], []))[0].append(block)
    for read in register_reads:
        by_meter.setdefault(read.meter_id, ([], []))[1].append(read)
    root = etree.Element(f"{{{MR}}}MeterReadings", nsmap={"m": MR})
    for meter_id, (meter_blocks, reads) in by_meter.items():
        reading = _sub(root, "MeterReading")
        for block in meter_blocks:
            _interval_block(reading, block)
        _sub(_sub(reading, "Meter"), "mRID", meter_id)
        for read in reads:
            _register_read(reading, read)
    return root
