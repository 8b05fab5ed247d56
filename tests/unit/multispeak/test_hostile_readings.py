"""Attacker-controlled text in reading payloads: every conversion ends in UndecodableReading for the
element it spoils (never TypeError / ValueError / OverflowError), and the rest of the payload decodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]

from adapters.multispeak.errors import UndecodableReading
from adapters.multispeak.normalize import (
    MAX_UNKNOWN_STATUS_CODES,
    Channel,
    Delimiters,
    Profile,
    StatusMapper,
    decimal_counts,
    formatted_block_blocks,
    interval_blocks,
    profiles,
)
from adapters.multispeak.readings import ReadingDecoder
from adapters.multispeak.soap import CB_SERVER, MSP_NS, MultiSpeakCodec

CODEC = MultiSpeakCodec(CB_SERVER, max_bytes=1 << 20)
START = datetime(2026, 3, 1, tzinfo=UTC)
PROFILES = {"p": Profile("p", 900, {1: Channel(1, "kWh", ("kWh", ""))})}


def _profile(length: object, units: str | None = "Minutes", index: object = 1) -> dict[str, object]:
    return {"profileID": "p", "intervalLength": {"_value_1": length, "units": units},
            "channels": {"channel": [{"index": index, "fieldName": "kWh", "fieldDescription": None,
                                      "units": "kWh"}]}}


@pytest.mark.parametrize(("length", "units", "message"), [
    (float("inf"), "Minutes", "intervalLength inf Minutes is not a finite interval length"),
    (float("-inf"), "Minutes", "not a finite interval length"),
    (float("nan"), "Minutes", "intervalLength nan Minutes is not a finite interval length"),
    (1e308, "Days", "does not divide a day"),  # 1e308 x 86400 overflows a float
    (-15.0, "Minutes", "does not divide a day"),
    (0.0, "Minutes", "does not divide a day"),
    (7.0, "Minutes", "does not divide a day"),
    (0.5, "Seconds", "does not divide a day"),
    (15.0, "Fortnights", "is not a usable interval length"),
    (None, "Minutes", "is not a usable interval length"),
    ("15", "Minutes", "is not a number"),
])
def test_unusable_interval_lengths(length: object, units: str, message: str) -> None:
    (entry,) = profiles({"profiles": {"profile": [_profile(length, units)]}}).values()
    assert isinstance(entry, UndecodableReading)
    assert message in entry.message


@pytest.mark.parametrize(("length", "units", "seconds"), [(15.0, "Minutes", 900), (0.25, "Hours", 900),
                                                          (0.1, "Hours", 360), (1, "Days", 86400),
                                                          (240.0, None, 14400)])
def test_interval_lengths_are_read_exactly(length: object, units: str | None, seconds: int) -> None:
    (entry,) = profiles({"profiles": {"profile": [_profile(length, units)]}}).values()
    assert isinstance(entry, Profile) and entry.interval_seconds == seconds


@pytest.mark.parametrize(("index", "message"), [
    (None, "profile 'p': a channel's index is missing or empty"),
    (2**40, "is outside the 32-bit range"),
    (True, "is not an integer"),
])
def test_bad_profile_channel_index(index: object, message: str) -> None:
    (entry,) = profiles({"profiles": {"profile": [_profile(15.0, index=index)]}}).values()
    assert isinstance(entry, UndecodableReading) and message in entry.message


def test_one_bad_profile_leaves_the_others() -> None:
    good, bad = _profile(15.0), {**_profile(float("inf")), "profileID": "q"}
    known = profiles({"profiles": {"profile": [good, bad]}})
    assert isinstance(known["p"], Profile) and isinstance(known["q"], UndecodableReading)
    block = _block("1;2")
    assert [b.values for b in interval_blocks(block, known, Delimiters(";", ","), StatusMapper())] == [[1000, 2000]]
    with pytest.raises(UndecodableReading, match=r"refers to profile 'q', which is undecodable: .*not a finite"):
        interval_blocks({**block, "profileID": "q"}, known, Delimiters(";", ","), StatusMapper())


def _block(d: str, *, idx: object = 1, start: datetime = START) -> dict[str, object]:
    return {"profileID": "p", "meterID": {"_value_1": "M1", "serviceType": "Electric"}, "intervalStart": start,
            "dB": {"chs": {"ch": [{"idx": idx, "d": d}]}, "cS": None}}


@pytest.mark.parametrize(("block", "message"), [
    (_block("1", idx=None), "meter M1: a channel's idx is missing or empty"),
    (_block("1", idx=-(2**31) - 1), "outside the 32-bit range"),
    # 0001-01-01T00:00+05:00 is before the first instant Python can hold in UTC.
    (_block("1", start=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))), "outside the years 1-9999"),
    (_block("1", start=datetime(9999, 12, 31, 23, 45, tzinfo=UTC)), "past the year 9999"),
    (_block("9" * 5000), "has 5000 integer digits"),
])
def test_undecodable_blocks_raise_only_undecodable(block: dict[str, object], message: str) -> None:
    with pytest.raises(UndecodableReading, match=message):
        interval_blocks(block, PROFILES, Delimiters(";", ","), StatusMapper())


@pytest.mark.parametrize("text", ["9" * 41, "9" * 5000, "1" + "0" * 4400 + ".5"])
def test_values_with_thousands_of_digits_are_undecodable(text: str) -> None:
    with pytest.raises(UndecodableReading, match="integer digits"):
        decimal_counts([text], 3, 0)
    assert decimal_counts(["0" * 5000 + "12"], 0, 0)[0] == [12]  # leading zeros are not digits that count


def _formatted(syntax: list[dict[str, object]], records: list[str]) -> dict[str, object]:
    return {"separator": ",", "valSyntax": {"syntaxItem": syntax}, "valueList": {"val": records}}


FB_SYNTAX = [{"fieldName": "MeterID", "position": 0, "uom": None},
             {"fieldName": "IntervalEnd", "position": 1, "uom": None},
             {"fieldName": "kWh", "position": 2, "uom": "kWh"}]


@pytest.mark.parametrize(("item", "message"), [
    ({"fieldName": "kWh", "position": None, "uom": "kWh"}, "position is missing or empty"),
    ({"fieldName": "kWh", "position": -1, "uom": "kWh"}, "negative position -1"),
    ({"fieldName": "k" * 65, "position": 2, "uom": "kWh"}, "longer than 64 characters"),
])
def test_bad_formatted_block_syntax(item: dict[str, object], message: str) -> None:
    with pytest.raises(UndecodableReading, match=message):
        formatted_block_blocks(_formatted([*FB_SYNTAX[:2], item], ["M1,2026-03-01T00:15:00Z,1"]), 900,
                               StatusMapper())


def test_formatted_records_spanning_centuries_are_refused_not_expanded() -> None:
    records = ["M1,2026-03-01T00:15:00Z,1", "M1,9999-12-31T23:45:00Z,2", "M2,2026-03-01T00:15:00Z,3"]
    blocks, errors = formatted_block_blocks(_formatted(FB_SYNTAX, records), 900, StatusMapper())
    assert [(b.meter_id, list(b.values)) for b in blocks] == [("M2", [3000])]
    assert len(errors) == 1 and "intervals (cap 100000)" in errors[0]


def test_unknown_status_codes_are_bounded() -> None:
    mapper = StatusMapper()
    assert mapper.flags([f"code{i}" for i in range(MAX_UNKNOWN_STATUS_CODES + 500)]) == 0
    assert len(mapper.unknown) == MAX_UNKNOWN_STATUS_CODES
    assert mapper.unknown_overflow == 500


# -- whole intervalData payloads through the element-by-element decoder ---------------------------

TEMPLATE = f"""<intervalReads xmlns="{MSP_NS}"><statusDelimiter>{{sd}}</statusDelimiter>
<intervalDelimiter>;</intervalDelimiter><profiles>
<profile profileID="LP15"><intervalLength units="{{units}}">{{length}}</intervalLength><channels><channel>
<index>{{index}}</index><fieldName>kWh</fieldName><units>kWh</units></channel></channels></profile>
<profile profileID="LP60"><intervalLength units="Minutes">60</intervalLength><channels><channel>
<index>1</index><fieldName>kWh</fieldName><units>kWh</units></channel></channels></profile></profiles>
<blocks><block><profileID>LP15</profileID><meterID>M1</meterID><intervalStart>{{start}}</intervalStart>
<dB><chs><ch><idx>{{idx}}</idx><d>{{d}}</d></ch></chs><cS>{{cs}}</cS></dB></block>
<block><profileID>LP60</profileID><meterID>M2</meterID><intervalStart>2026-03-01T00:00:00Z</intervalStart>
<dB><chs><ch><idx>1</idx><d>1.5;2.25</d></ch></chs></dB></block></blocks></intervalReads>"""
GOOD = {"sd": ",", "units": "Minutes", "length": "15", "index": "1", "start": "2026-03-01T00:00:00Z", "idx": "1",
        "d": "1;2", "cs": ""}
XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), max_size=30).map(
    lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;"))


def _decode(fields: dict[str, str]) -> tuple[list[str], list[str]]:
    element = CODEC.parser.parse(TEMPLATE.format(**fields).encode())
    decoded = ReadingDecoder(CODEC, StatusMapper(), value_exponent=0, interval_seconds=900).interval_data(element)
    return sorted(b.meter_id for b in decoded.blocks), [r.reason_code for r in decoded.rejected]


def test_the_template_decodes() -> None:
    assert _decode(GOOD) == (["M1", "M2"], [])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(set(GOOD) - {"sd"})), XML_TEXT | st.sampled_from(
    ["", "INF", "-INF", "NaN", "1e308", "-1", "99999999999999999999", "0001-01-01T00:00:00+14:00",
     "9999-12-31T23:45:00-14:00", "9" * 5000, "Days", "Seconds", ";", "1,Estimated;" * 3]))
def test_any_field_text_spoils_only_its_own_block(field: str, text: str) -> None:
    """Whatever text lands in a field of meter M1's profile or block, M2's block (another profile) decodes,
    and M1's is either decoded or rejected as one of our protocol errors."""
    meters, rejected = _decode({**GOOD, field: text})
    assert "M2" in meters
    assert set(rejected) <= {"UNDECODABLE_READING", "UNEXPECTED_CONTENT"}
    assert ("M1" in meters) != bool(rejected)


@pytest.mark.parametrize("delimiter", [";", ""])
def test_a_header_that_cannot_be_read_rejects_the_element_whole(delimiter: str) -> None:
    meters, rejected = _decode({**GOOD, "sd": delimiter})
    assert (meters, rejected) == (([], ["UNDECODABLE_READING"]) if delimiter else (["M1", "M2"], []))


def test_dead_letter_of_a_spoiled_profile_holds_its_blocks_and_the_profiles() -> None:
    element = CODEC.parser.parse(TEMPLATE.format(**{**GOOD, "length": "INF"}).encode())
    decoded = ReadingDecoder(CODEC, StatusMapper(), value_exponent=0, interval_seconds=900).interval_data(element)
    assert [b.meter_id for b in decoded.blocks] == ["M2"]
    (rejected,) = decoded.rejected
    assert rejected.reason == ("intervalData: profile 'LP15' intervalLength inf Minutes is not a finite interval "
                               "length (1 block(s) refer to it)")
    kept = etree.fromstring(rejected.payload)
    q = f"{{{MSP_NS}}}"
    assert [b.findtext(f"{q}meterID") for b in kept.iter(f"{q}block")] == ["M1"]
    assert len(list(kept.iter(f"{q}profile"))) == 2
