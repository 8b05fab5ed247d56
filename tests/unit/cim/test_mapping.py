"""MeterReading elements -> canonical blocks and register reads, exactly."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.cim.errors import (
    BadQualityCode,
    BadReadingType,
    BadTimestamp,
    BadValue,
    ConflictingReading,
    MisalignedReading,
    MissingMeterId,
)
from adapters.cim.normalize import MappingOptions, MeterReadingMapper, parse_decimal, to_counts
from adapters.cim.reader import FailedReading, MappedReading, read_message
from meterhub.v1 import model_pb2 as pb

KWH15 = "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0"
REGISTER = "0.0.0.9.1.1.12.0.0.0.0.0.0.0.0.3.72.0"


def reading(stamp: str, value: str, *qualities: str) -> str:
    q = "".join(f'<ReadingQualities><ReadingQualityType ref="{c}"/></ReadingQualities>' for c in qualities)
    return f"<IntervalReadings><timeStamp>{stamp}</timeStamp><value>{value}</value>{q}</IntervalReadings>"


def message(*meter_readings: str) -> bytes:
    body = "".join(meter_readings)
    return (
        '<EventMessage xmlns="http://iec.ch/TC57/2011/schema/message"><Header><Verb>created</Verb>'
        '<Noun>MeterReadings</Noun></Header><Payload>'
        f'<MeterReadings xmlns="http://iec.ch/TC57/2011/MeterReadings#">{body}</MeterReadings>'
        "</Payload></EventMessage>"
    ).encode()


def meter_reading(meter: str, readings: str, code: str = KWH15, registers: str = "") -> str:
    return (f"<MeterReading><IntervalBlocks>{readings}<ReadingType ref=\"{code}\"/></IntervalBlocks>"
            f"<Meter><mRID>{meter}</mRID></Meter>{registers}</MeterReading>")


def items(data: bytes, **options: object) -> list[MappedReading | FailedReading]:
    mapper = MeterReadingMapper(MappingOptions(**options))  # type: ignore[arg-type]
    return [i for i in read_message(io.BytesIO(data), mapper) if isinstance(i, MappedReading | FailedReading)]


def one_block_set(data: bytes) -> list[pb.IntervalBlock]:
    (item,) = items(data)
    assert isinstance(item, MappedReading), item
    return list(item.readings.interval_blocks)


def test_values_become_exact_wh_counts_and_timestamps_end_stamped_utc() -> None:
    data = message(meter_reading("M1", reading("2026-11-01T01:15:00+01:00", "0.412")
                                 + reading("2026-11-01T00:30:00Z", "0.398", "1.2.32")
                                 + reading("2026-11-01T00:45:00Z", "12345.678", "2.8.0")))
    (block,) = one_block_set(data)
    assert block.meter_id == "M1"
    assert block.first_interval_end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 1, 0, 15, tzinfo=UTC)
    assert block.interval_seconds == 900
    assert list(block.values) == [412, 398, 12345678]
    assert list(block.qualities) == [0, pb.QUALITY_FLAG_POWER_FAIL, pb.QUALITY_FLAG_ESTIMATED]
    assert block.reading_type.power_of_ten_multiplier == 0
    assert block.meter_multiplier_applied


def test_finer_values_refine_the_resolution_instead_of_rounding() -> None:
    (block,) = one_block_set(message(meter_reading("M1", reading("2026-11-01T00:15:00Z", "0.4125")
                                                   + reading("2026-11-01T00:30:00Z", "1"))))
    assert block.reading_type.power_of_ten_multiplier == -1
    assert list(block.values) == [4125, 10000]


def test_gaps_split_blocks_and_identical_repeats_are_dropped() -> None:
    data = message(meter_reading("M1", reading("2026-11-01T00:45:00Z", "3") + reading("2026-11-01T00:15:00Z", "1")
                                 + reading("2026-11-01T00:15:00Z", "1") + reading("2026-11-01T01:15:00Z", "5")))
    blocks = one_block_set(data)
    assert [(b.first_interval_end_time.seconds % 86400 // 60, list(b.values)) for b in blocks] == [
        (15, [1000]), (45, [3000]), (75, [5000])]


def test_register_reads() -> None:
    data = message(meter_reading("M1", "", registers=(
        f'<Readings><timeStamp>2026-11-01T00:00:00Z</timeStamp><value>12345.678</value>'
        f'<ReadingType ref="{REGISTER}"/></Readings>')))
    (item,) = items(data)
    assert isinstance(item, MappedReading)
    (read,) = item.readings.register_reads
    assert (read.meter_id, read.value, read.reading_type.accumulation) == ("M1", 12345678, pb.ACCUMULATION_CUMULATIVE)
    assert read.read_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(("readings", "code", "error", "text"), [
    (reading("2026-11-01T00:15:00Z", "abc"), KWH15, BadValue, "'abc' is not a finite decimal"),
    (reading("2026-11-01T00:15:00Z", "INF"), KWH15, BadValue, "not a finite decimal"),
    (reading("2026-11-01T00:15:00Z", "NaN"), KWH15, BadValue, "not a finite decimal"),
    (reading("2026-11-01T00:15:00Z", "1_000"), KWH15, BadValue, "not a finite decimal"),
    (reading("2026-11-01T00:15:00Z", "1E+9999"), KWH15, BadValue, "does not fit a 64-bit count"),
    (reading("2026-11-01T00:15:00Z", "99999999999999999999"), KWH15, BadValue, "does not fit"),
    (reading("2026-11-01T00:15:00Z", "1E-30"), KWH15, BadValue, "out of range"),
    (reading("2026-11-01T00:15:00", "1"), KWH15, BadTimestamp, "has no UTC offset"),
    (reading("yesterday", "1"), KWH15, BadTimestamp, "is not an xs:dateTime"),
    (reading("2026-11-01T00:10:00Z", "1"), KWH15, MisalignedReading, "not aligned to 900 s"),
    (reading("2026-11-01T00:15:00Z", "1") + reading("2026-11-01T00:15:00Z", "2"), KWH15, ConflictingReading,
     "appears twice"),
    (reading("2026-11-01T00:15:00Z", "1", "1.4"), KWH15, BadQualityCode, "'1.4'"),
    (reading("2026-11-01T00:15:00Z", "1"), "0.0.2.4.1.1.12", BadReadingType, "has 7 fields"),
    (reading("2026-11-01T00:15:00Z", "1"), "0.0.0.9.1.1.12.0.0.0.0.0.0.0.0.3.72.0", BadReadingType,
     "no measuring period"),
])
def test_bad_meter_reading_is_refused_with_a_precise_reason(readings: str, code: str, error: type[Exception],
                                                            text: str) -> None:
    good = meter_reading("GOOD", reading("2026-11-01T00:15:00Z", "1"))
    (bad, ok) = items(message(meter_reading("M9", readings, code), good))
    assert isinstance(bad, FailedReading)
    assert isinstance(bad.error, error)
    assert text in bad.error.message
    assert "meter 'M9'" in bad.error.message
    assert bad.meter_id == "M9"
    assert bad.raw.startswith(b"<MeterReading") and b"M9" in bad.raw
    assert isinstance(ok, MappedReading)
    assert list(ok.readings.interval_blocks[0].values) == [1000]


def test_meter_reading_without_meter_id() -> None:
    (bad,) = items(message("<MeterReading><Meter/></MeterReading>"))
    assert isinstance(bad, FailedReading)
    assert isinstance(bad.error, MissingMeterId)


def test_meter_id_from_names_when_configured() -> None:
    data = message("<MeterReading><Meter><mRID>uuid-1</mRID><Names><name>SERIAL-9</name></Names></Meter>"
                   "</MeterReading>")
    (item,) = items(data, meter_id_source="name")
    assert isinstance(item, MappedReading)
    assert item.readings.meter_id == "SERIAL-9"


def test_to_counts_is_exact_for_decimals_floats_cannot_hold() -> None:
    values = [parse_decimal(t, "x") for t in ("0.1", "0.2", "0.3", "1e3", "-2.5")]
    assert to_counts(values, 3, 3, "x") == ([100, 200, 300, 1000000, -2500], 0)
    assert parse_decimal(" 7.50 ", "x") == Decimal("7.50")
