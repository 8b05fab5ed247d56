from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.multispeak.errors import UndecodableReading
from adapters.multispeak.normalize import (
    Channel,
    Delimiters,
    Profile,
    StatusMapper,
    decimal_counts,
    interval_blocks,
    reading_type,
)
from meterhub.v1 import model_pb2 as pb

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_decimal_strings_become_exact_counts() -> None:
    counts, missing, exponent = decimal_counts(["1.5", "0.125", "", "-2", "+3.000"], 3, 0)
    assert (counts, missing, exponent) == ([1500, 125, 0, -2000, 3000], [False, False, True, False, False], 0)
    # More decimals than Wh resolution: the exponent goes finer, nothing is rounded.
    counts, _, exponent = decimal_counts(["0.0001", "2"], 3, 0)
    assert (counts, exponent) == ([1, 20000], -1)
    # Coarser resolution requested but values need finer: finer wins.
    counts, _, exponent = decimal_counts(["12.5"], 0, 2)
    assert (counts, exponent) == ([125], -1)
    counts, _, exponent = decimal_counts(["1200"], 3, 3)
    assert (counts, exponent) == ([1200], 3)


@pytest.mark.parametrize("text", ["1e3", "1.2.3", "NaN", "inf", "0x10", "1_000", " 1", "١٢", "-", "."])
def test_non_decimals_are_undecodable(text: str) -> None:
    with pytest.raises(UndecodableReading):
        decimal_counts([text], 0, 0)


def test_overflow_is_undecodable() -> None:
    with pytest.raises(UndecodableReading, match="overflows"):
        decimal_counts(["9223372036854775.808"], 3, 0)


@given(st.lists(st.text(max_size=12), max_size=20), st.integers(-6, 9), st.integers(-6, 6))
def test_garbage_values_raise_only_undecodable(texts: list[str], prefix: int, exponent: int) -> None:
    try:
        counts, missing, exp = decimal_counts(texts, prefix, exponent)
    except UndecodableReading:
        return
    assert len(counts) == len(texts) == len(missing)
    assert exp <= exponent


@given(st.integers(-(10**15), 10**15), st.integers(0, 6))
def test_round_trip_of_decimals(value: int, decimals: int) -> None:
    text = f"{'-' if value < 0 else ''}{abs(value) // 10**decimals}" + (
        f".{abs(value) % 10**decimals:0{decimals}d}" if decimals else "")
    counts, _, exponent = decimal_counts([text], 0, 0)
    assert counts[0] == value * 10 ** (-decimals - exponent)


def test_units_and_directions() -> None:
    rt, prefix = reading_type("kWh", ["kWh received"], register=False)
    assert (rt.unit, rt.flow_direction, rt.accumulation, prefix) == (
        pb.UNIT_WATT_HOUR, pb.FLOW_DIRECTION_RECEIVED, pb.ACCUMULATION_DELTA, 3)
    rt, prefix = reading_type("kW", ["Peak demand"], register=True)
    assert (rt.kind, rt.unit, rt.accumulation, prefix) == (
        pb.MEASUREMENT_KIND_DEMAND, pb.UNIT_WATT, pb.ACCUMULATION_MAXIMUM, 3)
    rt, prefix = reading_type("kVARh", ["Net kVARh"], register=True)
    assert (rt.unit, rt.flow_direction, rt.accumulation) == (
        pb.UNIT_VAR_HOUR, pb.FLOW_DIRECTION_NET, pb.ACCUMULATION_CUMULATIVE)
    rt, prefix = reading_type("V", ["Voltage A"], register=False)
    assert (rt.unit, rt.accumulation, rt.flow_direction) == (
        pb.UNIT_VOLT, pb.ACCUMULATION_INSTANTANEOUS, pb.FLOW_DIRECTION_UNSPECIFIED)
    rt, prefix = reading_type("cubic meter", [], register=True, service_type="Water")
    assert (rt.commodity, rt.unit, prefix) == (pb.COMMODITY_WATER, pb.UNIT_CUBIC_METRE, 0)
    with pytest.raises(UndecodableReading, match="ccf"):
        reading_type("ccf", [], register=True)


def test_status_codes_map_to_quality_flags() -> None:
    mapper = StatusMapper()
    assert mapper.flags(["Estimated", "Power Outage"]) == pb.QUALITY_FLAG_ESTIMATED | pb.QUALITY_FLAG_POWER_FAIL
    assert mapper.flags(["DSTinEffect", "manuallyUpdated"]) == pb.QUALITY_FLAG_DST_ACTIVE | pb.QUALITY_FLAG_EDITED
    assert mapper.flags(["Valid", ""]) == 0
    assert mapper.flags(["Sparkles"]) == 0
    assert mapper.unknown == {"Sparkles": 1}


def _block(d: str, cs: str | None = None, start: datetime = START) -> dict[str, object]:
    return {"profileID": "p", "meterID": {"_value_1": "M1", "serviceType": "Electric"}, "intervalStart": start,
            "dB": {"chs": {"ch": [{"idx": 1, "d": d}]}, "cS": cs}}


PROFILES = {"p": Profile("p", 900, {1: Channel(1, "kWh", ("kWh", ""))})}


def test_interval_block_with_statuses_common_status_and_trailing_delimiter() -> None:
    blocks = interval_blocks(_block("1.5,E;0.25;;2,Tamper,ClockSet;", cs=";PowerOutage;;"), PROFILES,
                             Delimiters(";", ","), StatusMapper())
    (b,) = blocks
    assert list(b.values) == [1500, 250, 0, 2000]
    assert list(b.qualities) == [pb.QUALITY_FLAG_ESTIMATED, pb.QUALITY_FLAG_POWER_FAIL, pb.QUALITY_FLAG_MISSING,
                                 pb.QUALITY_FLAG_TAMPER | pb.QUALITY_FLAG_CLOCK_SET]
    assert b.first_interval_end_time.ToDatetime(tzinfo=UTC) == START + timedelta(minutes=15)
    assert b.reading_type.power_of_ten_multiplier == 0 and b.reading_type.device_channel == "1"


@pytest.mark.parametrize(("block", "message"), [
    (_block("1", start=START + timedelta(minutes=7)), "not aligned"),
    (_block("1", start=datetime(2026, 3, 1)), "no UTC offset"),  # noqa: DTZ001 - the point of the test
    ({**_block("1"), "profileID": "other"}, "unknown profile"),
    ({**_block("1"), "dB": {"chs": {"ch": [{"idx": 7, "d": "1"}]}, "cS": None}}, "channel 7"),
    (_block("1;x"), "not a decimal"),
])
def test_undecodable_blocks(block: dict[str, object], message: str) -> None:
    with pytest.raises(UndecodableReading, match=message):
        interval_blocks(block, PROFILES, Delimiters(";", ","), StatusMapper())
