"""MultiSpeak v4.1 readings -> meterhub.v1 protobufs. Pure: no I/O, no clocks.

Values stay exact: a decimal string becomes an integer count of the unit's base (Wh, W,
V...) x 10^exponent, the exponent chosen so no digit is lost. Floats never touch a value.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.multispeak.errors import UndecodableReading
from meterhub.v1 import model_pb2 as pb

logger = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1
# Significant digits of a value: int64 has 19, anything longer overflows (and int() refuses
# strings above 4300 digits with a ValueError).
MAX_DIGITS = 40
# Intervals one block or one formattedBlock series may span.
MAX_INTERVALS = 100_000
# A formattedBlock field name becomes the channel's device_channel, stored in 64 characters.
MAX_DEVICE_CHANNEL_CHARS = 64
# Distinct unknown status codes remembered (and logged once each); the rest are only counted.
MAX_UNKNOWN_STATUS_CODES = 256
_WORDS = re.compile(r"[a-z0-9]+")
_CIM_CODE = re.compile(r"\d+(?:\.\d+){17}", re.ASCII)

# SI prefixes as MultiSpeak writes them in its units of measure ("kWh", "microV", "Mamps").
_PREFIXES = {"": 0, "k": 3, "M": 6, "G": 9, "m": -3, "micro": -6}
_ENERGY_KINDS = {pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.MEASUREMENT_KIND_REACTIVE_ENERGY,
                 pb.MEASUREMENT_KIND_APPARENT_ENERGY}
_POWER_KINDS = {pb.MEASUREMENT_KIND_ACTIVE_POWER, pb.MEASUREMENT_KIND_REACTIVE_POWER,
                pb.MEASUREMENT_KIND_APPARENT_POWER}


@dataclass(frozen=True, slots=True)
class UnitSpec:
    kind: int
    unit: int
    # Power of ten of the unit relative to the base unit (kWh -> 3).
    prefix: int
    commodity: int = pb.COMMODITY_ELECTRICITY


def _unit_table() -> dict[str, UnitSpec]:
    table: dict[str, UnitSpec] = {}
    electrical = (("Wh", pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR),
                  ("W", pb.MEASUREMENT_KIND_ACTIVE_POWER, pb.UNIT_WATT),
                  ("VARh", pb.MEASUREMENT_KIND_REACTIVE_ENERGY, pb.UNIT_VAR_HOUR),
                  ("VAR", pb.MEASUREMENT_KIND_REACTIVE_POWER, pb.UNIT_VAR),
                  ("VAh", pb.MEASUREMENT_KIND_APPARENT_ENERGY, pb.UNIT_VOLT_AMPERE_HOUR),
                  ("VA", pb.MEASUREMENT_KIND_APPARENT_POWER, pb.UNIT_VOLT_AMPERE),
                  ("V", pb.MEASUREMENT_KIND_VOLTAGE, pb.UNIT_VOLT),
                  ("V RMS", pb.MEASUREMENT_KIND_VOLTAGE, pb.UNIT_VOLT))
    for base, kind, unit in electrical:
        for prefix, exp in _PREFIXES.items():
            table[prefix + base] = UnitSpec(kind, unit, exp)
    for prefix, exp in _PREFIXES.items():
        for name in ("Amps", "amps", "Amps RMS", "amps RMS"):
            table[prefix + name] = UnitSpec(pb.MEASUREMENT_KIND_CURRENT, pb.UNIT_AMPERE, exp)
    table["Frequency"] = UnitSpec(pb.MEASUREMENT_KIND_FREQUENCY, pb.UNIT_HERTZ, 0)
    table["Power factor"] = UnitSpec(pb.MEASUREMENT_KIND_POWER_FACTOR, pb.UNIT_COS_PHI, 0)
    table["cubic meter"] = UnitSpec(pb.MEASUREMENT_KIND_VOLUME, pb.UNIT_CUBIC_METRE, 0, pb.COMMODITY_UNSPECIFIED)
    table["liters"] = UnitSpec(pb.MEASUREMENT_KIND_VOLUME, pb.UNIT_CUBIC_METRE, -3, pb.COMMODITY_UNSPECIFIED)
    for name in ("Counter", "Nbr of pulse"):
        table[name] = UnitSpec(pb.MEASUREMENT_KIND_UNSPECIFIED, pb.UNIT_COUNT, 0, pb.COMMODITY_UNSPECIFIED)
    return table


UNITS: Mapping[str, UnitSpec] = _unit_table()
_SERVICE_COMMODITY = {"electric": pb.COMMODITY_ELECTRICITY, "gas": pb.COMMODITY_GAS, "water": pb.COMMODITY_WATER,
                      "heating": pb.COMMODITY_HEAT, "steam": pb.COMMODITY_HEAT}

# Reading status codes (readingStatusCode text, per-interval statuses of intervalData) -> QualityFlag
# bits. Keys are lower case without spaces, dashes or underscores.
STATUS_FLAGS: Mapping[str, int] = {
    "ok": 0, "valid": 0, "normal": 0, "good": 0, "0": 0, "actual": 0, "billingread": 0, "firstread": 0,
    "finalread": 0, "beforecorrection": 0,
    "estimated": pb.QUALITY_FLAG_ESTIMATED, "estimate": pb.QUALITY_FLAG_ESTIMATED, "e": pb.QUALITY_FLAG_ESTIMATED,
    "manuallyupdated": pb.QUALITY_FLAG_EDITED, "manuallyentered": pb.QUALITY_FLAG_EDITED,
    "edited": pb.QUALITY_FLAG_EDITED, "aftercorrection": pb.QUALITY_FLAG_EDITED,
    "poweroutage": pb.QUALITY_FLAG_POWER_FAIL, "powerfail": pb.QUALITY_FLAG_POWER_FAIL,
    "powerfailure": pb.QUALITY_FLAG_POWER_FAIL, "outage": pb.QUALITY_FLAG_POWER_FAIL,
    "clockset": pb.QUALITY_FLAG_CLOCK_SET, "clockchanged": pb.QUALITY_FLAG_CLOCK_SET,
    "timechanged": pb.QUALITY_FLAG_CLOCK_SET, "timereset": pb.QUALITY_FLAG_CLOCK_SET,
    "overflow": pb.QUALITY_FLAG_OVERFLOW, "rollover": pb.QUALITY_FLAG_OVERFLOW,
    "tamper": pb.QUALITY_FLAG_TAMPER, "testmode": pb.QUALITY_FLAG_TEST_MODE,
    "partialinterval": pb.QUALITY_FLAG_PARTIAL_INTERVAL, "shortinterval": pb.QUALITY_FLAG_PARTIAL_INTERVAL,
    "longinterval": pb.QUALITY_FLAG_LONG_INTERVAL, "skippedinterval": pb.QUALITY_FLAG_SKIPPED_INTERVAL,
    "dstineffect": pb.QUALITY_FLAG_DST_ACTIVE, "dst": pb.QUALITY_FLAG_DST_ACTIVE,
    "suspiciousread": pb.QUALITY_FLAG_DEVICE_ERROR, "dataerror": pb.QUALITY_FLAG_DEVICE_ERROR,
    "deviceerror": pb.QUALITY_FLAG_DEVICE_ERROR, "hardwareerror": pb.QUALITY_FLAG_DEVICE_ERROR,
    "missing": pb.QUALITY_FLAG_MISSING, "nodata": pb.QUALITY_FLAG_MISSING,
}
_STATUS_STRIP = str.maketrans("", "", " -_")


class StatusMapper:
    """Status codes -> QualityFlag bits; reports each unknown code once (they set no flag)."""

    def __init__(self, extra: Mapping[str, int] | None = None) -> None:
        self._table = dict(STATUS_FLAGS)
        for code, bits in (extra or {}).items():
            self._table[code.lower().translate(_STATUS_STRIP)] = bits
        self.unknown: dict[str, int] = {}
        # Occurrences of unknown codes beyond the first MAX_UNKNOWN_STATUS_CODES distinct ones.
        self.unknown_overflow = 0

    def _unknown(self, code: str) -> None:
        if code in self.unknown:
            self.unknown[code] += 1
        elif len(self.unknown) < MAX_UNKNOWN_STATUS_CODES:
            logger.warning("unknown MultiSpeak reading status code %r: no quality flag set", code[:64])
            self.unknown[code] = 1
        else:
            if not self.unknown_overflow:
                logger.warning("more than %d distinct unknown MultiSpeak status codes: no longer logged",
                               MAX_UNKNOWN_STATUS_CODES)
            self.unknown_overflow += 1

    def flags(self, codes: Iterable[str]) -> int:
        bits = 0
        for code in codes:
            key = code.lower().translate(_STATUS_STRIP)
            if not key:
                continue
            found = self._table.get(key)
            if found is None:
                self._unknown(code)
                continue
            bits |= found
        return bits


def decimal_counts(texts: Sequence[str], prefix: int, value_exponent: int) -> tuple[list[int], list[bool], int]:
    """Exact decimal strings of a unit with ``prefix`` -> (counts, missing, exponent).

    counts x 10^exponent are the values in the base unit. Empty strings are missing
    intervals (count 0). Anything else that is not a plain decimal raises UndecodableReading.
    """
    parsed: list[tuple[str, str, int, str] | None] = []
    max_decimals = 0
    for text in texts:
        if not text:
            parsed.append(None)
            continue
        sign = text[0] if text[0] in "+-" else ""
        whole, _, fraction = text[len(sign):].partition(".")
        # isascii() first: str.isdigit() also accepts other scripts' digits and superscripts.
        if not ((whole or fraction) and text.isascii() and (not whole or whole.isdigit())
                and (not fraction or fraction.isdigit())):
            raise UndecodableReading(f"value {text[:40]!r} is not a decimal number")
        if len(fraction) > max_decimals:
            if len(fraction) > 30:
                raise UndecodableReading(f"value {text[:40]!r} has more than 30 decimals")
            max_decimals = len(fraction)
        whole = whole.lstrip("0")
        if len(whole) > MAX_DIGITS:
            raise UndecodableReading(f"value {text[:40]!r}... has {len(whole)} integer digits: it overflows 64 bits")
        parsed.append((sign, whole + fraction, len(fraction), text))
    exponent = min(value_exponent, prefix - max_decimals)
    scale = [10 ** (prefix - d - exponent) for d in range(max_decimals + 1)]
    counts: list[int] = []
    missing: list[bool] = []
    for item in parsed:
        if item is None:
            counts.append(0)
            missing.append(True)
            continue
        sign, digits, decimals, text = item
        count = int(digits or "0") * scale[decimals]
        if count > INT64_MAX:
            raise UndecodableReading(f"value {text[:60]} overflows 64 bits at 10^{exponent}")
        counts.append(-count if sign == "-" else count)
        missing.append(False)
    return counts, missing, exponent


def _direction(words: set[str], kind: int) -> int:
    if words & {"received", "reverse", "export", "exported", "neg", "negative", "generation", "out"}:
        return pb.FLOW_DIRECTION_RECEIVED
    if "net" in words:
        return pb.FLOW_DIRECTION_NET
    if words & {"total", "sum", "abs", "absolute"}:
        return pb.FLOW_DIRECTION_TOTAL
    if kind in _ENERGY_KINDS or kind in _POWER_KINDS:
        return pb.FLOW_DIRECTION_DELIVERED
    return pb.FLOW_DIRECTION_UNSPECIFIED


def reading_type(units: str | None, names: Iterable[str | None], *, register: bool,
                 service_type: str | None = None) -> tuple[pb.ReadingType, int]:
    """A ReadingType (multiplier left at 0) and the unit's prefix exponent."""
    spec = UNITS.get((units or "").strip())
    if spec is None:
        raise UndecodableReading(f"unit of measure {units!r} has no exact meterhub unit")
    words: set[str] = set()
    for name in names:
        if name:
            words.update(_WORDS.findall(name.lower()))
    kind = spec.kind
    if kind in _ENERGY_KINDS:
        accumulation = pb.ACCUMULATION_CUMULATIVE if register else pb.ACCUMULATION_DELTA
    elif kind in _POWER_KINDS and words & {"demand", "peak", "max", "maximum"}:
        kind = pb.MEASUREMENT_KIND_DEMAND if kind == pb.MEASUREMENT_KIND_ACTIVE_POWER else kind
        accumulation = pb.ACCUMULATION_MAXIMUM
    elif kind == pb.MEASUREMENT_KIND_UNSPECIFIED:
        accumulation = pb.ACCUMULATION_CUMULATIVE if register else pb.ACCUMULATION_DELTA
    else:
        accumulation = pb.ACCUMULATION_INSTANTANEOUS
    commodity = spec.commodity
    if service_type:
        commodity = _SERVICE_COMMODITY.get(service_type.lower(), commodity)
    rt = pb.ReadingType()
    rt.commodity = commodity  # type: ignore[assignment]
    rt.kind = kind  # type: ignore[assignment]
    rt.unit = spec.unit  # type: ignore[assignment]
    rt.flow_direction = _direction(words, spec.kind)  # type: ignore[assignment]
    rt.accumulation = accumulation  # type: ignore[assignment]
    return rt, spec.prefix


def _aware(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise UndecodableReading(f"{what} is missing")
    if value.tzinfo is None or value.utcoffset() is None:
        raise UndecodableReading(f"{what} {value.isoformat()} has no UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is before the first representable instant
        raise UndecodableReading(f"{what} {value.isoformat()} is outside the years 1-9999 in UTC") from exc


def _later(moment: datetime, seconds: int, what: str) -> datetime:
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise UndecodableReading(f"{what}: {moment.isoformat()} + {seconds} s is past the year 9999") from exc


def _index(value: Any, what: str) -> int:
    """An xsd:int / xsd:integer element as zeep decoded it; an empty element is None."""
    if value is None:
        raise UndecodableReading(f"{what} is missing or empty")
    if isinstance(value, bool) or not isinstance(value, int):
        raise UndecodableReading(f"{what} {value!r} is not an integer")
    if not -(2**31) <= value < 2**31:
        raise UndecodableReading(f"{what} {str(value)[:24]}... is outside the 32-bit range of an xsd:int")
    return value


def _duration_seconds(value: Any, what: str) -> int:
    if value is None:
        raise UndecodableReading(f"{what} is missing")
    units = (value["units"] or "Minutes").strip()
    scale = {"Seconds": 1, "Minutes": 60, "Hours": 3600, "Days": 86400}.get(units)
    amount = value["_value_1"]
    if scale is None or amount is None:
        raise UndecodableReading(f"{what} {amount!r} {units[:20]!r} is not a usable interval length")
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal):
        raise UndecodableReading(f"{what} {amount!r} is not a number")
    if isinstance(amount, float) and not math.isfinite(amount):
        raise UndecodableReading(f"{what} {amount} {units} is not a finite interval length")
    try:
        # xsd:float arrives as a binary float: its shortest decimal form is what was written (0.25 Hours).
        seconds = Decimal(repr(amount) if isinstance(amount, float) else amount) * scale
    except (InvalidOperation, ValueError) as exc:
        raise UndecodableReading(f"{what} {amount!r} {units} is not a usable interval length") from exc
    if not seconds.is_finite() or seconds != seconds.to_integral_value() or not 0 < seconds <= 86400 \
            or 86400 % int(seconds):
        raise UndecodableReading(f"{what} {amount} {units} does not divide a day into whole seconds")
    return int(seconds)


def _meter_id(value: Any) -> tuple[str, str | None]:
    if value is None or not value["_value_1"]:
        raise UndecodableReading("meterID is missing")
    return str(value["_value_1"]).strip(), value["serviceType"]


@dataclass(frozen=True, slots=True)
class Channel:
    index: int
    units: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Profile:
    profile_id: str
    interval_seconds: int
    channels: Mapping[int, Channel]


def _profile(p: Any, pid: str) -> Profile:
    seconds = _duration_seconds(p["intervalLength"], f"profile {pid!r} intervalLength")
    channels: dict[int, Channel] = {}
    for ch in (p["channels"] or {"channel": []})["channel"]:
        index = _index(ch["index"], f"profile {pid!r}: a channel's index")
        channels[index] = Channel(index, ch["units"] or "", (ch["fieldName"] or "", ch["fieldDescription"] or ""))
    return Profile(pid, seconds, channels)


# A profile as decoded, or why it could not be.
ProfileEntry = Profile | UndecodableReading


def profiles(interval_data: Any) -> dict[str, ProfileEntry]:
    """The profiles of an intervalData element, each decoded on its own: an undecodable one maps
    to its error, so only the blocks that refer to it are lost."""
    out: dict[str, ProfileEntry] = {}
    for p in (interval_data["profiles"] or {"profile": []})["profile"]:
        pid = p["profileID"] or ""
        try:
            out[pid] = _profile(p, pid)
        except UndecodableReading as exc:
            out[pid] = exc
    return out


def profile_for(pid: str, known: Mapping[str, ProfileEntry]) -> tuple[str, ProfileEntry]:
    """The profile a block's profileID names (an empty one means the only profile there is)."""
    entry = known.get(pid)
    if entry is None and not pid and len(known) == 1:
        pid, entry = next(iter(known.items()))
    if entry is None:
        raise UndecodableReading(f"block refers to unknown profile {pid[:80]!r}")
    return pid, entry


def _split(text: str, delimiter: str) -> list[str]:
    tokens = text.split(delimiter)
    # A trailing delimiter ends the last interval ("1,2;5;6,4,8;"); it does not open a new one.
    if len(tokens) > 1 and tokens[-1] == "":
        tokens.pop()
    return tokens


@dataclass(frozen=True, slots=True)
class Delimiters:
    interval: str
    status: str

    @classmethod
    def of(cls, interval_data: Any) -> Delimiters:
        interval = interval_data["intervalDelimiter"] or ","
        status = interval_data["statusDelimiter"] or ":"
        if interval == status:
            raise UndecodableReading(f"intervalDelimiter and statusDelimiter are both {interval!r}")
        return cls(interval, status)


def interval_blocks(block: Any, known: Mapping[str, ProfileEntry], delimiters: Delimiters,
                    statuses: StatusMapper, *, value_exponent: int = 0,
                    max_intervals: int = MAX_INTERVALS) -> list[pb.IntervalBlock]:
    """One intervalData block (one meter, one profile) -> one IntervalBlock per channel."""
    pid, profile = profile_for(block["profileID"] or "", known)
    if isinstance(profile, UndecodableReading):
        raise UndecodableReading(f"block refers to profile {pid[:80]!r}, which is undecodable: {profile.message}")
    meter_id, service_type = _meter_id(block["meterID"])
    start = _aware(block["intervalStart"], f"meter {meter_id} block intervalStart")
    seconds = profile.interval_seconds
    first_end = _later(start, seconds, f"meter {meter_id} block intervalStart")
    if int(first_end.timestamp()) % seconds or first_end.microsecond:
        raise UndecodableReading(f"meter {meter_id}: intervals from {start.isoformat()} are not aligned "
                                 f"to {seconds} s")
    db = block["dB"]
    if db is None or db["chs"] is None:
        return []
    common: list[int] = []
    if db["cS"]:
        common = [statuses.flags(t.split(delimiters.status)) for t in _split(db["cS"], delimiters.interval)]
    out: list[pb.IntervalBlock] = []
    for ch in db["chs"]["ch"]:
        idx = _index(ch["idx"], f"meter {meter_id}: a channel's idx")
        channel = profile.channels.get(idx)
        if channel is None:
            raise UndecodableReading(f"meter {meter_id}: channel {idx} is not in profile {pid[:80]!r}")
        tokens = _split(ch["d"] or "", delimiters.interval)
        if len(tokens) > max_intervals:
            raise UndecodableReading(f"meter {meter_id}: {len(tokens)} intervals in one block (cap {max_intervals})")
        if delimiters.status in (ch["d"] or ""):
            values_text = []
            flags = []
            for token in tokens:
                value, *codes = token.split(delimiters.status)
                values_text.append(value)
                flags.append(statuses.flags(codes) if codes else 0)
        else:
            values_text, flags = tokens, [0] * len(tokens)
        rt, prefix = reading_type(channel.units, channel.names, register=False, service_type=service_type)
        try:
            counts, missing, exponent = decimal_counts(values_text, prefix, value_exponent)
        except UndecodableReading as exc:
            raise UndecodableReading(f"meter {meter_id} channel {channel.index}: {exc.message}") from exc
        rt.power_of_ten_multiplier = exponent
        rt.device_channel = str(channel.index)
        qualities = [f | (common[i] if i < len(common) else 0) | (pb.QUALITY_FLAG_MISSING if missing[i] else 0)
                     for i, f in enumerate(flags)]
        ib = pb.IntervalBlock(meter_id=meter_id, reading_type=rt, interval_seconds=seconds, values=counts,
                              qualities=qualities if any(qualities) else ())
        ib.first_interval_end_time.FromDatetime(first_end)
        out.append(ib)
    return out


def register_reads(meter_reading: Any, statuses: StatusMapper, *,
                   value_exponent: int = 0) -> tuple[list[pb.RegisterRead], list[str]]:
    """A meterReading's readingValues -> RegisterReads, and a reason per value that could not be mapped."""
    meter_id, service_type = _meter_id(meter_reading["meterID"])
    reads: list[pb.RegisterRead] = []
    errors: list[str] = []
    values = (meter_reading["readingValues"] or {"readingValue": []})["readingValue"]
    for rv in values:
        try:
            reads.append(_register_read(meter_id, service_type, rv, statuses, value_exponent))
        except UndecodableReading as exc:
            errors.append(f"meter {meter_id} {rv['fieldName'] or rv['name'] or ''}: {exc.message}")
    return reads, errors


def _register_read(meter_id: str, service_type: str | None, rv: Any, statuses: StatusMapper,
                   value_exponent: int) -> pb.RegisterRead:
    code = rv["readingTypeCode"]
    names = (rv["fieldName"], rv["readingType"], rv["name"], code["name"] if code is not None else None)
    rt, prefix = reading_type(rv["units"], names, register=True, service_type=service_type)
    if code is not None and code["_value_1"] and _CIM_CODE.fullmatch(code["_value_1"].strip()):
        rt.cim_code = code["_value_1"].strip()
    counts, missing, exponent = decimal_counts([(rv["value"] or "").strip()], prefix, value_exponent)
    if missing[0]:
        raise UndecodableReading("readingValue without a value")
    rt.power_of_ten_multiplier = exponent
    status = rv["readingStatusCode"]
    quality = statuses.flags([status["_value_1"]]) if status is not None and status["_value_1"] else 0
    read = pb.RegisterRead(meter_id=meter_id, reading_type=rt, value=counts[0], quality=quality)
    read.read_time.FromDatetime(_aware(rv["timeStamp"], f"meter {meter_id} readingValue timeStamp"))
    return read


# formattedBlock: a syntax (fieldName -> position) and separator-delimited records, one per meter
# and interval. Fields we read: MeterID, the interval end time (IntervalEnd / ReadingDate /
# TimeStamp), Status, and every field with a unit of measure (one channel each).
_FB_METER = ("meterid", "meterno")
_FB_TIME = ("intervalend", "readingdate", "timestamp", "intervalenddate", "datetime")
_FB_STATUS = ("status", "readingstatuscode", "statuscode")


def formatted_block_blocks(fb: Any, interval_seconds: int, statuses: StatusMapper, *, value_exponent: int = 0,
                           max_intervals: int = MAX_INTERVALS) -> tuple[list[pb.IntervalBlock], list[str]]:
    """A load-profile formattedBlock -> IntervalBlocks (gaps flagged MISSING), and reasons for bad records."""
    separator = fb["separator"] or ","
    syntax = (fb["valSyntax"] or {"syntaxItem": []})["syntaxItem"]
    meter_pos = time_pos = status_pos = None
    value_fields: list[tuple[int, str, str]] = []
    for item in syntax:
        name = (item["fieldName"] or "").strip()
        key = name.lower().translate(_STATUS_STRIP)
        pos = _index(item["position"], f"formattedBlock syntax item {name[:40]!r}: position")
        if pos < 0:
            raise UndecodableReading(f"formattedBlock syntax item {name[:40]!r} has a negative position {pos}")
        if key in _FB_METER:
            meter_pos = pos
        elif key in _FB_TIME:
            time_pos = pos
        elif key in _FB_STATUS:
            status_pos = pos
        elif item["uom"]:
            if len(name) > MAX_DEVICE_CHANNEL_CHARS:
                raise UndecodableReading(f"formattedBlock field name {name[:40]!r}... is longer than "
                                         f"{MAX_DEVICE_CHANNEL_CHARS} characters")
            value_fields.append((pos, name, item["uom"]))
    if meter_pos is None or time_pos is None or not value_fields:
        raise UndecodableReading("formattedBlock syntax needs MeterID, an interval end time and a value field")
    errors: list[str] = []
    series: dict[tuple[str, int], dict[datetime, tuple[str, int]]] = {}
    for record in (fb["valueList"] or {"val": []})["val"]:
        fields = (record or "").split(separator)
        try:
            meter_id = fields[meter_pos].strip()
            end = _parse_time(fields[time_pos].strip())
            flags = statuses.flags(fields[status_pos].split("|")) if status_pos is not None else 0
            values = [(pos, fields[pos].strip()) for pos, _name, _uom in value_fields]
        except (IndexError, UndecodableReading) as exc:
            errors.append(f"formattedBlock record {record[:60]!r}: {exc}")
            continue
        if not meter_id or int(end.timestamp()) % interval_seconds:
            errors.append(f"formattedBlock record {record[:60]!r}: no meter id, or an unaligned interval end")
            continue
        for pos, text in values:
            series.setdefault((meter_id, pos), {})[end] = (text, flags)
    out: list[pb.IntervalBlock] = []
    names = {pos: (name, uom) for pos, name, uom in value_fields}
    step = timedelta(seconds=interval_seconds)
    for (meter_id, pos), points in sorted(series.items()):
        name, uom = names[pos]
        try:
            rt, prefix = reading_type(uom, (name,), register=False)
            first, last = min(points), max(points)
            n = _span(first, last, step, max_intervals)
            times = [first + i * step for i in range(n)]
            texts = [points.get(t, ("", 0))[0] for t in times]
            counts, missing, exponent = decimal_counts(texts, prefix, value_exponent)
        except UndecodableReading as exc:
            errors.append(f"formattedBlock meter {meter_id} field {name}: {exc.message}")
            continue
        rt.power_of_ten_multiplier = exponent
        rt.device_channel = name
        qualities = [points.get(t, ("", 0))[1] | (pb.QUALITY_FLAG_MISSING if missing[i] else 0)
                     for i, t in enumerate(times)]
        ib = pb.IntervalBlock(meter_id=meter_id, reading_type=rt, interval_seconds=interval_seconds, values=counts,
                              qualities=qualities if any(qualities) else ())
        ib.first_interval_end_time.FromDatetime(first)
        out.append(ib)
    return out, errors


def _span(first: datetime, last: datetime, step: timedelta, cap: int) -> int:
    n = (last - first) // step + 1
    if n > cap:
        raise UndecodableReading(f"records from {first.isoformat()} to {last.isoformat()} span {n} intervals "
                                 f"(cap {cap})")
    return n


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UndecodableReading(f"time {text[:40]!r} is not ISO 8601") from exc
    return _aware(value, "interval end")
