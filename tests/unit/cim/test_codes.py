"""ReadingType and ReadingQuality codes <-> our model."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.cim.errors import BadQualityCode, BadReadingType
from adapters.cim.quality import LOSSLESS_FLAGS, codes_from_flags, flags_from_code, flags_from_codes
from adapters.cim.readingtype import COMMON_CODES, code_for, parse_code, to_reading_type
from meterhub.v1 import model_pb2 as pb


@pytest.mark.parametrize("code", sorted(COMMON_CODES))
def test_common_code_round_trips_through_our_model(code: str) -> None:
    cim = parse_code(code)
    assert cim.interval_seconds == COMMON_CODES[code][1]
    rt = to_reading_type(cim, decimals=3)
    assert rt.cim_code == code
    assert code_for(rt, cim.interval_seconds).code == code  # kept code
    derived = pb.ReadingType()
    derived.CopyFrom(rt)
    derived.cim_code = ""
    assert code_for(derived, cim.interval_seconds).code == code  # derived from the model alone


def test_kwh_delivered_15_min_maps_to_our_reading_type() -> None:
    rt = to_reading_type(parse_code("0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0"), decimals=3)
    assert (rt.commodity, rt.kind, rt.unit, rt.flow_direction, rt.accumulation, rt.power_of_ten_multiplier) == (
        pb.COMMODITY_ELECTRICITY, pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR,
        pb.FLOW_DIRECTION_DELIVERED, pb.ACCUMULATION_DELTA, 0)


@pytest.mark.parametrize(("code", "kind", "unit", "accumulation", "flow"), [
    ("0.0.2.4.19.1.12.0.0.0.0.0.0.0.0.3.72.0", pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR,
     pb.ACCUMULATION_DELTA, pb.FLOW_DIRECTION_RECEIVED),
    ("0.0.0.9.1.1.12.0.0.0.0.0.0.0.0.3.72.0", pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR,
     pb.ACCUMULATION_CUMULATIVE, pb.FLOW_DIRECTION_DELIVERED),
    ("8.8.0.6.1.1.8.0.0.0.0.0.0.0.0.3.38.0", pb.MEASUREMENT_KIND_DEMAND, pb.UNIT_WATT,
     pb.ACCUMULATION_MAXIMUM, pb.FLOW_DIRECTION_DELIVERED),
    ("0.0.2.6.0.1.54.0.0.0.0.0.0.0.0.0.29.0", pb.MEASUREMENT_KIND_VOLTAGE, pb.UNIT_VOLT,
     pb.ACCUMULATION_INSTANTANEOUS, pb.FLOW_DIRECTION_UNSPECIFIED),
])
def test_code_meanings(code: str, kind: int, unit: int, accumulation: int, flow: int) -> None:
    rt = to_reading_type(parse_code(code), decimals=3)
    assert (rt.kind, rt.unit, rt.accumulation, rt.flow_direction) == (kind, unit, accumulation, flow)


def test_voltage_resolution_is_millivolt_with_three_decimals() -> None:
    assert to_reading_type(parse_code("0.0.2.6.0.1.54.0.0.0.0.0.0.0.0.0.29.0"), decimals=3).power_of_ten_multiplier == -3


@pytest.mark.parametrize(("code", "message"), [
    ("0.0.2.4.1.1.12", "has 7 fields"),
    ("0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0.0", "has 19 fields"),
    ("0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.x.0", "field unit 'x' is not an integer"),
    ("0.0.2.4.-1.1.12.0.0.0.0.0.0.0.0.3.72.0", "field flow_direction -1 is negative"),
    ("0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.999.0", "unit symbol 999 is not supported"),
    ("0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.99.72.0", "multiplier 10^99 is out of range"),
    ("", "has 1 fields"),
])
def test_bad_reading_type_codes(code: str, message: str) -> None:
    with pytest.raises(BadReadingType, match=message.replace("^", r"\^")) as info:
        to_reading_type(parse_code(code), decimals=3)
    assert info.value.reason == "BAD_READING_TYPE"
    assert info.value.cim_code == "3.1"


@given(st.text(max_size=200))
def test_reading_type_garbage_is_only_ever_bad_reading_type(text: str) -> None:
    with contextlib.suppress(BadReadingType):
        to_reading_type(parse_code(text), decimals=3)


@pytest.mark.parametrize(("code", "flags"), [
    ("1.0.0", 0),
    ("2.0.0", 0),
    ("1.2.32", pb.QUALITY_FLAG_POWER_FAIL),
    ("1.4.1", pb.QUALITY_FLAG_OVERFLOW),
    ("1.4.2", pb.QUALITY_FLAG_PARTIAL_INTERVAL),
    ("1.4.3", pb.QUALITY_FLAG_LONG_INTERVAL),
    ("1.4.4", pb.QUALITY_FLAG_SKIPPED_INTERVAL),
    ("1.4.5", pb.QUALITY_FLAG_TEST_MODE),
    ("1.4.9", pb.QUALITY_FLAG_CLOCK_SET),
    ("1.3.0", pb.QUALITY_FLAG_TAMPER),
    ("2.7.0", pb.QUALITY_FLAG_EDITED),
    ("2.8.0", pb.QUALITY_FLAG_ESTIMATED),
    ("2.8.1", pb.QUALITY_FLAG_ESTIMATED),  # any estimated subcategory
    ("2.6.1001", pb.QUALITY_FLAG_SUSPECT),  # failed validation rule 1001
    ("2.10.0", pb.QUALITY_FLAG_SUSPECT),
    ("1.1.3", pb.QUALITY_FLAG_DEVICE_ERROR),
])
def test_quality_codes(code: str, flags: int) -> None:
    assert flags_from_code(code) == flags


@pytest.mark.parametrize(("code", "message"), [
    ("1.4", "is not system.category.subCategory"),
    ("a.b.c", "is not system.category.subCategory"),
    ("1.99.0", "category 99 is not defined"),
    ("9.0.0", "system 9 is not defined"),
    ("", "is not system.category.subCategory"),
])
def test_bad_quality_codes(code: str, message: str) -> None:
    with pytest.raises(BadQualityCode, match=message):
        flags_from_code(code)


_LOSSLESS = [v for v in pb.QualityFlag.values() if v & LOSSLESS_FLAGS]


@given(st.sets(st.sampled_from(_LOSSLESS)))
def test_lossless_flags_round_trip_through_codes(flags: set[int]) -> None:
    bits = sum(flags)
    assert flags_from_codes(codes_from_flags(bits)) == bits


def test_valid_interval_gets_no_quality_code_and_hub_estimates_become_estimated() -> None:
    assert codes_from_flags(0) == []
    assert codes_from_flags(pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED) == ["2.8.0"]
    assert codes_from_flags(pb.QUALITY_FLAG_FAILED_SPIKE) == ["2.10.0"]


@given(st.text(max_size=50))
def test_quality_garbage_is_only_ever_bad_quality_code(text: str) -> None:
    with contextlib.suppress(BadQualityCode):
        flags_from_code(text)
