"""One 61968-9 ``MeterReading`` element -> meterhub.v1 IntervalBlocks and
RegisterReads. Pure: no I/O, values exact (Decimal text -> int64 counts).

- IntervalBlocks: readings are end-stamped; every timeStamp must carry a UTC
  offset; they are sorted, de-duplicated (identical repeats) and split into
  contiguous runs, so a gap stays a gap (VEE flags it) instead of being
  invented as data. A block's interval is the measuring period of its
  ReadingType code.
- Readings (scalar) become RegisterReads.
- Values become counts of unit x 10^e where e is the code's multiplier minus
  ``decimals``, or finer if a value needs it (never rounded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from lxml import etree  # type: ignore[import-untyped]

from adapters.cim.errors import (
    BadQualityCode,
    BadReadingType,
    BadTimestamp,
    BadValue,
    ConflictingReading,
    ContentError,
    MisalignedReading,
    MissingMeterId,
)
from adapters.cim.message import MR
from adapters.cim.quality import flags_from_code
from adapters.cim.readingtype import CimReadingType, parse_code, to_reading_type
from meterhub.v1 import model_pb2 as pb

T_METER_READING = f"{{{MR}}}MeterReading"
T_INTERVAL_BLOCKS = f"{{{MR}}}IntervalBlocks"
T_INTERVAL_READINGS = f"{{{MR}}}IntervalReadings"
T_READINGS = f"{{{MR}}}Readings"
T_READING_TYPE = f"{{{MR}}}ReadingType"
T_TIMESTAMP = f"{{{MR}}}timeStamp"
T_VALUE = f"{{{MR}}}value"
T_QUALITIES = f"{{{MR}}}ReadingQualities"
T_QUALITY_TYPE = f"{{{MR}}}ReadingQualityType"
T_METER = f"{{{MR}}}Meter"
T_MRID = f"{{{MR}}}mRID"
T_NAMES = f"{{{MR}}}Names"
T_NAME = f"{{{MR}}}name"
T_USAGE_POINT = f"{{{MR}}}UsagePoint"

MAX_VALUE_CHARS = 64
MAX_INT64 = 2**63 - 1
MAX_DIGITS = 19
MAX_EXPONENT = 18
_XS_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CanonicalReadings:
    """What one MeterReading maps to."""

    meter_id: str
    interval_blocks: tuple[pb.IntervalBlock, ...]
    register_reads: tuple[pb.RegisterRead, ...]

    @property
    def interval_count(self) -> int:
        return sum(len(b.values) for b in self.interval_blocks)


@dataclass(frozen=True, slots=True)
class MappingOptions:
    decimals: int = 3
    meter_multiplier_applied: bool = True
    # Where the meter id comes from: "mrid" (Meter/mRID, then Meter/Names/name) or "name".
    meter_id_source: str = "mrid"


def parse_decimal(text: str | None, where: str) -> Decimal:
    """An xs:float lexical value as an exact Decimal; INF/NaN and garbage refused."""
    if text is None:
        raise BadValue(f"{where}: value is empty")
    if len(text) > MAX_VALUE_CHARS:
        raise BadValue(f"{where}: value of {len(text)} characters is too long")
    stripped = text.strip()
    if not _XS_FLOAT.fullmatch(stripped):
        raise BadValue(f"{where}: value {stripped!r} is not a finite decimal number")
    try:
        return Decimal(stripped)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid literals
        raise BadValue(f"{where}: value {stripped!r} is not a number") from exc


def to_counts(values: list[Decimal], multiplier: int, decimals: int, where: str) -> tuple[list[int], int]:
    """Exact integer counts and their power of ten (relative to the base unit)."""
    exponent = multiplier - decimals
    for value in values:
        exp = value.as_tuple().exponent
        assert isinstance(exp, int)  # finite by construction
        if multiplier + exp < exponent:
            exponent = multiplier + exp
    if exponent < -MAX_EXPONENT or exponent > MAX_EXPONENT:
        raise BadValue(f"{where}: values need a resolution of 10^{exponent}, out of range")
    shift = multiplier - exponent
    counts: list[int] = []
    for value in values:
        digits = len(value.as_tuple().digits)
        if digits > MAX_DIGITS or value.adjusted() + shift > MAX_DIGITS:
            raise BadValue(f"{where}: value {value} does not fit a 64-bit count at 10^{exponent}")
        count = int(value.scaleb(shift))
        if count > MAX_INT64 or count < -MAX_INT64:
            raise BadValue(f"{where}: value {value} does not fit a 64-bit count at 10^{exponent}")
        counts.append(count)
    return counts, exponent


def parse_epoch(text: str | None, where: str) -> int:
    """Seconds since the epoch of an xs:dateTime that carries a UTC offset."""
    if text is None:
        raise BadTimestamp(f"{where}: timeStamp is missing")
    if len(text) > 64:
        raise BadTimestamp(f"{where}: timeStamp is too long")
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadTimestamp(f"{where}: timeStamp {text.strip()!r} is not an xs:dateTime") from exc
    if value.tzinfo is None:
        raise BadTimestamp(f"{where}: timeStamp {text.strip()!r} has no UTC offset")
    if value.microsecond:
        raise MisalignedReading(f"{where}: timeStamp {text.strip()!r} has a fraction of a second")
    return (value - _EPOCH) // _ONE_SECOND


_ONE_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC) - _EPOCH


def _timestamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def _meter_id(element: etree._Element, source: str) -> str:
    meter = element.find(T_METER)
    if meter is not None:
        mrid = (meter.findtext(T_MRID) or "").strip()
        name = ""
        names = meter.find(T_NAMES)
        if names is not None:
            name = (names.findtext(T_NAME) or "").strip()
        chosen = (name or mrid) if source == "name" else (mrid or name)
        if chosen:
            if len(chosen) > 128:
                raise MissingMeterId("Meter id is longer than 128 characters")
            return chosen
    raise MissingMeterId("MeterReading has no Meter/mRID or Meter/Names/name")


def _qualities(element: etree._Element, where: str) -> int:
    flags = 0
    for child in element:
        if child.tag == T_QUALITY_TYPE:
            try:
                flags |= flags_from_code(child.get("ref") or "")
            except BadQualityCode as exc:
                raise BadQualityCode(f"{where}: {exc.message}") from None
    return flags


def _reading_fields(reading: etree._Element, where: str) -> tuple[str | None, str | None, int, str | None]:
    stamp = value = rt_ref = None
    flags = 0
    for child in reading:
        tag = child.tag
        if tag == T_TIMESTAMP:
            stamp = child.text
        elif tag == T_VALUE:
            value = child.text
        elif tag == T_QUALITIES:
            flags |= _qualities(child, where)
        elif tag == T_READING_TYPE:
            rt_ref = child.get("ref")
    return stamp, value, flags, rt_ref


class _TypeCache:
    """Parsed codes of one message (a fleet repeats the same few codes)."""

    def __init__(self, decimals: int) -> None:
        self._decimals = decimals
        self._cache: dict[str, tuple[CimReadingType, pb.ReadingType]] = {}

    def get(self, code: str | None, where: str) -> tuple[CimReadingType, pb.ReadingType]:
        if not code:
            raise BadReadingType(f"{where}: ReadingType ref is missing")
        hit = self._cache.get(code)
        if hit is None:
            try:
                cim = parse_code(code)
                hit = (cim, to_reading_type(cim, decimals=self._decimals))
            except BadReadingType as exc:
                raise BadReadingType(f"{where}: {exc.message}") from None
            if len(self._cache) < 256:
                self._cache[code] = hit
        return hit


def _interval_blocks(meter_id: str, block: etree._Element, index: int, types: _TypeCache,
                     options: MappingOptions) -> list[pb.IntervalBlock]:
    where = f"meter {meter_id!r} IntervalBlocks[{index}]"
    stamps: list[str | None] = []
    raw_values: list[str | None] = []
    flags: list[int] = []
    rt_ref = None
    for child in block:
        tag = child.tag
        if tag == T_INTERVAL_READINGS:
            stamp, value, quality, _ = _reading_fields(child, f"{where} IntervalReadings[{len(stamps)}]")
            stamps.append(stamp)
            raw_values.append(value)
            flags.append(quality)
        elif tag == T_READING_TYPE:
            rt_ref = child.get("ref")
    cim, base_type = types.get(rt_ref, where)
    interval = cim.interval_seconds
    if interval is None:
        raise BadReadingType(f"{where}: ReadingType {cim.code!r} has no measuring period for interval data")
    if not stamps:
        return []
    ends = np.fromiter((parse_epoch(s, f"{where} IntervalReadings[{i}]") for i, s in enumerate(stamps)),
                       dtype=np.int64, count=len(stamps))
    decimals = [parse_decimal(v, f"{where} IntervalReadings[{i}]") for i, v in enumerate(raw_values)]
    counts, exponent = to_counts(decimals, cim.multiplier, options.decimals, where)
    values = np.array(counts, dtype=np.int64)
    qualities = np.array(flags, dtype=np.int64)
    order = np.argsort(ends, kind="stable")
    ends, values, qualities = ends[order], values[order], qualities[order]
    off = np.flatnonzero(ends % interval)
    if off.size:
        bad = datetime.fromtimestamp(int(ends[off[0]]), UTC).isoformat()
        raise MisalignedReading(f"{where}: interval end {bad} is not aligned to {interval} s")
    if ends.size > 1:
        same = ends[1:] == ends[:-1]
        if same.any():
            differs = same & ((values[1:] != values[:-1]) | (qualities[1:] != qualities[:-1]))
            if differs.any():
                bad = datetime.fromtimestamp(int(ends[1:][differs][0]), UTC).isoformat()
                raise ConflictingReading(f"{where}: interval ending {bad} appears twice with different values")
            keep = np.concatenate(([True], ~same))
            ends, values, qualities = ends[keep], values[keep], qualities[keep]
    reading_type = pb.ReadingType()
    reading_type.CopyFrom(base_type)
    reading_type.power_of_ten_multiplier = exponent
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ends) != interval) + 1, [ends.size]))
    blocks: list[pb.IntervalBlock] = []
    for lo, hi in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
        out = pb.IntervalBlock(meter_id=meter_id, reading_type=reading_type, interval_seconds=interval,
                               meter_multiplier_applied=options.meter_multiplier_applied)
        out.first_interval_end_time.seconds = int(ends[lo])
        out.values.extend(values[lo:hi].tolist())
        run_q = qualities[lo:hi]
        if run_q.any():
            out.qualities.extend(run_q.tolist())
        blocks.append(out)
    return blocks


def _register_read(meter_id: str, reading: etree._Element, index: int, types: _TypeCache,
                   options: MappingOptions) -> pb.RegisterRead:
    where = f"meter {meter_id!r} Readings[{index}]"
    stamp, value, quality, rt_ref = _reading_fields(reading, where)
    cim, base_type = types.get(rt_ref, where)
    seconds = parse_epoch(stamp, where)
    (count,), exponent = to_counts([parse_decimal(value, where)], cim.multiplier, options.decimals, where)
    reading_type = pb.ReadingType()
    reading_type.CopyFrom(base_type)
    reading_type.power_of_ten_multiplier = exponent
    read = pb.RegisterRead(meter_id=meter_id, reading_type=reading_type, value=count, quality=quality,
                           meter_multiplier_applied=options.meter_multiplier_applied)
    read.read_time.seconds = seconds
    return read


class MeterReadingMapper:
    """Maps MeterReading elements of one message or file (caches codes)."""

    def __init__(self, options: MappingOptions) -> None:
        self.options = options
        self._types = _TypeCache(options.decimals)

    def map(self, element: etree._Element) -> CanonicalReadings:
        """Raises a ContentError subclass naming the meter and the element."""
        meter_id = _meter_id(element, self.options.meter_id_source)
        blocks: list[pb.IntervalBlock] = []
        reads: list[pb.RegisterRead] = []
        n_blocks = n_reads = 0
        for child in element:
            tag = child.tag
            if tag == T_INTERVAL_BLOCKS:
                blocks.extend(_interval_blocks(meter_id, child, n_blocks, self._types, self.options))
                n_blocks += 1
            elif tag == T_READINGS:
                reads.append(_register_read(meter_id, child, n_reads, self._types, self.options))
                n_reads += 1
        return CanonicalReadings(meter_id, tuple(blocks), tuple(reads))


def safe_meter_id(element: etree._Element) -> str:
    """Best-effort meter id for error reports; never raises."""
    try:
        return _meter_id(element, "mrid")
    except ContentError:
        return ""


Mapper = Callable[[etree._Element], CanonicalReadings]
