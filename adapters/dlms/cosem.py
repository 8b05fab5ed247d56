"""COSEM object model pieces the adapter and simulator share: OBIS codes,
date-time, scaler-unit, capture objects and selective-access descriptors
(DLMS UA Blue Book). Pure functions over :mod:`adapters.dlms.axdr` data."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from adapters.dlms import axdr
from adapters.dlms.axdr import Data, Tag
from adapters.dlms.errors import DlmsProtocolError

DATE_TIME_SIZE = 12
DEVIATION_UNSPECIFIED = -0x8000


class ClassId(enum.IntEnum):
    DATA = 1
    REGISTER = 3
    EXTENDED_REGISTER = 4
    PROFILE_GENERIC = 7
    CLOCK = 8
    ASSOCIATION_LN = 15


class Unit(enum.IntEnum):
    """Blue Book unit enumeration, the values we map."""

    WATT = 27
    VOLT_AMPERE = 28
    VAR = 29
    WATT_HOUR = 30
    VOLT_AMPERE_HOUR = 31
    VAR_HOUR = 32
    AMPERE = 33
    VOLT = 35
    HERTZ = 44
    CUBIC_METRE = 13
    COUNT = 255


class ProfileStatus(enum.IntFlag):
    """AMR profile status bits (DLMS UA 1000-1 / IDIS)."""

    CRITICAL_ERROR = 0x01
    CLOCK_INVALID = 0x02
    DATA_NOT_VALID = 0x04
    DAYLIGHT_SAVING = 0x08
    CLOCK_ADJUSTED = 0x20
    POWER_DOWN = 0x80


class ClockStatus(enum.IntFlag):
    INVALID_VALUE = 0x01
    DOUBTFUL_VALUE = 0x02
    DIFFERENT_CLOCK_BASE = 0x04
    INVALID_CLOCK_STATUS = 0x08
    DAYLIGHT_SAVING_ACTIVE = 0x80


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """A six-byte logical name, written A.B.C.D.E.F."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 6:
            raise DlmsProtocolError(f"logical name of {len(self.raw)} bytes", reason="DLMS_BAD_VALUE")

    @classmethod
    def parse(cls, text: str) -> Obis:
        parts = text.replace("-", ".").replace(":", ".").replace("*", ".").split(".")
        if len(parts) != 6 or not all(p.isdigit() and int(p) < 256 for p in parts):
            raise ValueError(f"not an OBIS code: {text!r}")
        return cls(bytes(int(p) for p in parts))

    def __str__(self) -> str:
        return ".".join(str(b) for b in self.raw)


CLOCK_OBIS = Obis.parse("0.0.1.0.0.255")
ASSOCIATION_OBIS = Obis.parse("0.0.40.0.0.255")
LOAD_PROFILE_OBIS = Obis.parse("1.0.99.1.0.255")
STATUS_OBIS = Obis.parse("0.0.96.10.1.255")
IMPORT_ENERGY_OBIS = Obis.parse("1.0.1.8.0.255")
EXPORT_ENERGY_OBIS = Obis.parse("1.0.2.8.0.255")
IMPORT_INTERVAL_OBIS = Obis.parse("1.0.1.29.0.255")
EXPORT_INTERVAL_OBIS = Obis.parse("1.0.2.29.0.255")


@dataclass(frozen=True, slots=True)
class AttributeRef:
    """Cosem-Attribute-Descriptor: class id, logical name, attribute index."""

    class_id: int
    obis: Obis
    attribute: int

    def encode(self) -> bytes:
        return self.class_id.to_bytes(2, "big") + self.obis.raw + self.attribute.to_bytes(1, "big", signed=True)


@dataclass(frozen=True, slots=True)
class CaptureObject:
    """One column of a profile generic buffer."""

    class_id: int
    obis: Obis
    attribute: int
    data_index: int = 0

    def to_data(self) -> Data:
        return axdr.structure(axdr.integer(Tag.LONG_UNSIGNED, self.class_id), axdr.octet_string(self.obis.raw),
                              axdr.integer(Tag.INTEGER, self.attribute),
                              axdr.integer(Tag.LONG_UNSIGNED, self.data_index))

    @classmethod
    def from_data(cls, data: Data) -> CaptureObject:
        items = data.items
        if len(items) != 4:
            raise DlmsProtocolError("capture object needs 4 elements", reason="DLMS_BAD_VALUE")
        return cls(items[0].integer, Obis(items[1].octets), items[2].integer, items[3].integer)


def capture_objects_from_data(data: Data) -> tuple[CaptureObject, ...]:
    return tuple(CaptureObject.from_data(item) for item in data.items)


def capture_objects_to_data(objects: tuple[CaptureObject, ...]) -> Data:
    return axdr.array(*(o.to_data() for o in objects))


@dataclass(frozen=True, slots=True)
class ScalerUnit:
    scaler: int
    unit: int

    def to_data(self) -> Data:
        return axdr.structure(axdr.integer(Tag.INTEGER, self.scaler), axdr.integer(Tag.ENUM, self.unit))

    @classmethod
    def from_data(cls, data: Data) -> ScalerUnit:
        items = data.items
        if len(items) != 2:
            raise DlmsProtocolError("scaler_unit needs 2 elements", reason="DLMS_BAD_VALUE")
        return cls(items[0].integer, items[1].integer)


# ---------------------------------------------------------------- date-time


def encode_date_time(moment: datetime, clock_status: int = 0) -> bytes:
    """12-byte COSEM date-time of an aware datetime, sent as UTC with deviation 0."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    utc = moment.astimezone(UTC)
    return (utc.year.to_bytes(2, "big") + bytes((utc.month, utc.day, utc.isoweekday(), utc.hour, utc.minute,
                                                 utc.second, utc.microsecond // 10000))
            + (0).to_bytes(2, "big", signed=True) + bytes((clock_status & 0xFF,)))


def decode_date_time(raw: bytes) -> tuple[datetime, int]:
    """(aware UTC datetime, clock status). Deviation is minutes from local time to UTC
    (Blue Book 4.1.6.1); unspecified deviation is read as UTC. Wildcards are refused:
    a timestamp must be one instant."""
    if len(raw) != DATE_TIME_SIZE:
        raise DlmsProtocolError(f"date-time of {len(raw)} bytes", reason="DLMS_BAD_VALUE")
    year = int.from_bytes(raw[0:2], "big")
    month, day, _weekday, hour, minute, second, hundredths = raw[2:9]
    deviation = int.from_bytes(raw[9:11], "big", signed=True)
    status = raw[11]
    if hundredths == 0xFF:
        hundredths = 0
    try:
        local = datetime(year, month, day, hour, minute, second, hundredths * 10000,
                         tzinfo=UTC if deviation == DEVIATION_UNSPECIFIED
                         else timezone(timedelta(minutes=-deviation)))
    except ValueError as exc:
        raise DlmsProtocolError(f"invalid date-time {raw.hex()}", reason="DLMS_BAD_VALUE") from exc
    return local.astimezone(UTC), status


def date_time_from_data(data: Data) -> tuple[datetime, int]:
    """A date-time sent as octet-string(12) (usual) or as the date-time type."""
    if data.tag not in (Tag.OCTET_STRING, Tag.DATE_TIME):
        raise DlmsProtocolError(f"expected a date-time, got {data.tag.name}", reason="DLMS_BAD_VALUE")
    return decode_date_time(data.octets)


# ---------------------------------------------------------------- selective access


@dataclass(frozen=True, slots=True)
class RangeDescriptor:
    """Access selector 1: entries whose restricting column lies in [start, end]."""

    start: datetime
    end: datetime
    restricting: CaptureObject = CaptureObject(ClassId.CLOCK, CLOCK_OBIS, 2, 0)
    selected: tuple[CaptureObject, ...] = ()

    SELECTOR = 1

    def to_data(self) -> Data:
        return axdr.structure(self.restricting.to_data(), axdr.octet_string(encode_date_time(self.start)),
                              axdr.octet_string(encode_date_time(self.end)),
                              capture_objects_to_data(self.selected))

    @classmethod
    def from_data(cls, data: Data) -> RangeDescriptor:
        items = data.items
        if len(items) != 4:
            raise DlmsProtocolError("range descriptor needs 4 elements", reason="DLMS_BAD_VALUE")
        start, _ = date_time_from_data(items[1])
        end, _ = date_time_from_data(items[2])
        return cls(start, end, CaptureObject.from_data(items[0]), capture_objects_from_data(items[3]))


@dataclass(frozen=True, slots=True)
class EntryDescriptor:
    """Access selector 2: entries from_entry..to_entry (1-based, 0 = last),
    columns from_column..to_column (1-based, 0 = last)."""

    from_entry: int = 1
    to_entry: int = 0
    from_column: int = 1
    to_column: int = 0

    SELECTOR = 2

    def to_data(self) -> Data:
        return axdr.structure(axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, self.from_entry),
                              axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, self.to_entry),
                              axdr.integer(Tag.LONG_UNSIGNED, self.from_column),
                              axdr.integer(Tag.LONG_UNSIGNED, self.to_column))

    @classmethod
    def from_data(cls, data: Data) -> EntryDescriptor:
        items = data.items
        if len(items) != 4:
            raise DlmsProtocolError("entry descriptor needs 4 elements", reason="DLMS_BAD_VALUE")
        return cls(items[0].integer, items[1].integer, items[2].integer, items[3].integer)


AccessDescriptor = RangeDescriptor | EntryDescriptor


def access_descriptor(selector: int, parameters: Data) -> AccessDescriptor:
    if selector == RangeDescriptor.SELECTOR:
        return RangeDescriptor.from_data(parameters)
    if selector == EntryDescriptor.SELECTOR:
        return EntryDescriptor.from_data(parameters)
    raise DlmsProtocolError(f"unsupported access selector {selector}", reason="DLMS_BAD_SELECTOR")
