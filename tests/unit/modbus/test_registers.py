"""Register maps, read planning and word decoding."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.modbus.errors import ModbusProtocolError
from adapters.modbus.maps import SUNSPEC_METER_MODEL_ADDRESS, builtin_maps, sunspec_meter_map
from adapters.modbus.registers import (
    DataType,
    Function,
    Point,
    Quantity,
    ReadRange,
    RegisterMap,
    WordOrder,
    decode_points,
    decode_raw,
    encode_raw,
    float_to_count,
    plan_reads,
)


def _point(dtype: DataType, order: WordOrder = WordOrder.BIG, address: int = 0) -> Point:
    quantity = Quantity.SCALE_FACTOR if dtype is DataType.SUNSSF else Quantity.ENERGY_DELIVERED
    return Point(name="p", address=address, data_type=dtype, quantity=quantity, word_order=order)


@pytest.mark.parametrize(("dtype", "words", "expected"), [
    (DataType.INT16, [0xFFFE], -2),
    (DataType.UINT16, [0xFFFE], 0xFFFE),
    (DataType.INT32, [0xFFFF, 0xFFFE], -2),
    (DataType.UINT32, [0x0001, 0x0002], 0x00010002),
    (DataType.ACC32, [0xFFFF, 0xFFFF], 0xFFFFFFFF),
    (DataType.ACC64, [0x0001, 0, 0, 5], (1 << 48) + 5),
    (DataType.SUNSSF, [0xFFFD], -3),
    (DataType.FLOAT32, list(struct.unpack(">HH", struct.pack(">f", 1234.5))), 1234.5),
])
def test_decode_types(dtype: DataType, words: list[int], expected: float) -> None:
    assert decode_raw(_point(dtype), words, sunspec_sentinels=False) == expected


def test_little_word_order_swaps_words() -> None:
    assert decode_raw(_point(DataType.UINT32, WordOrder.LITTLE), [0x0002, 0x0001], sunspec_sentinels=False) == 0x10002


@pytest.mark.parametrize(("dtype", "words"), [
    (DataType.INT16, [0x8000]), (DataType.UINT16, [0xFFFF]), (DataType.SUNSSF, [0x8000]),
    (DataType.INT32, [0x8000, 0]), (DataType.UINT32, [0xFFFF, 0xFFFF]),
])
def test_sunspec_not_implemented_is_none(dtype: DataType, words: list[int]) -> None:
    assert decode_raw(_point(dtype), words, sunspec_sentinels=True) is None


@given(st.sampled_from(list(DataType)), st.sampled_from(list(WordOrder)), st.integers(min_value=-(1 << 63),
                                                                                      max_value=(1 << 64) - 1))
def test_encode_decode_round_trip(dtype: DataType, order: WordOrder, value: int) -> None:
    point = _point(dtype, order)
    if dtype is DataType.FLOAT32:
        value_f = float(struct.unpack(">f", struct.pack(">f", float(value % 1_000_000)))[0])
        assert decode_raw(point, encode_raw(point, value_f), sunspec_sentinels=False) == value_f
        return
    words = encode_raw(point, value)
    assert len(words) == dtype.words
    decoded = decode_raw(point, words, sunspec_sentinels=False)
    assert isinstance(decoded, int)
    assert decoded % (1 << 16 * dtype.words) == value % (1 << 16 * dtype.words)


@given(st.lists(st.integers(min_value=-(1 << 20), max_value=1 << 20), max_size=6), st.sampled_from(list(DataType)))
def test_garbage_words_raise_protocol_error_only(words: list[int], dtype: DataType) -> None:
    with contextlib.suppress(ModbusProtocolError):
        decode_raw(_point(dtype), words, sunspec_sentinels=True)


@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=0, max_size=130))
def test_garbage_blocks_decode_or_raise_protocol_error(words: list[int]) -> None:
    register_map = sunspec_meter_map(203)
    reads = plan_reads(register_map.points, max_gap=16)
    assert len(reads) == 1
    with contextlib.suppress(ModbusProtocolError):
        decode_points(register_map, {reads[0]: words})


def test_float_to_count_is_exact_half_even() -> None:
    assert float_to_count(1234.5678, -2) == 123457
    assert float_to_count(0.125, -2) == 12  # 12.5 -> 12 (half to even)
    assert float_to_count(2.5, 0) == 2


def test_plan_reads_merges_contiguous_and_small_gaps() -> None:
    pts = [Point("a", 10, DataType.UINT32, Quantity.POWER), Point("b", 12, DataType.INT16, Quantity.POWER),
           Point("c", 20, DataType.INT16, Quantity.POWER),
           Point("d", 13, DataType.INT16, Quantity.POWER, function=Function.INPUT)]
    assert plan_reads(pts, max_gap=0) == (ReadRange(Function.HOLDING, 10, 3), ReadRange(Function.HOLDING, 20, 1),
                                          ReadRange(Function.INPUT, 13, 1))
    assert plan_reads(pts, max_gap=7) == (ReadRange(Function.HOLDING, 10, 11), ReadRange(Function.INPUT, 13, 1))


def test_plan_reads_respects_request_limit() -> None:
    pts = [Point(f"p{i}", i * 2, DataType.UINT32, Quantity.POWER) for i in range(100)]
    reads = plan_reads(pts)
    assert [r.count for r in reads] == [124, 76]
    assert all(r.count <= 125 for r in reads)


def test_sunspec_maps_read_in_one_request_each() -> None:
    for model in (201, 202, 203, 204):
        register_map = sunspec_meter_map(model)
        reads = plan_reads(register_map.points, max_gap=16)
        assert reads == (ReadRange(Function.HOLDING, SUNSPEC_METER_MODEL_ADDRESS + 2, 53),)
        names = {p.name: p for p in register_map.points}
        assert names["TotWhImp"].address == 40115 and names["TotWhImp"].scale_register == "TotWh_SF"
        assert names["TotWhExp"].address == 40107 and names["TotWh_SF"].address == 40123


def test_float_submeter_plan() -> None:
    reads = plan_reads(builtin_maps()["float_submeter"].points, max_gap=16)
    assert reads == (ReadRange(Function.INPUT, 0, 12), ReadRange(Function.INPUT, 52, 36))


def test_decode_points_applies_sunspec_scale_factors() -> None:
    register_map = sunspec_meter_map(201)
    (read,) = plan_reads(register_map.points, max_gap=16)
    words = [0x8000] * read.count
    at = {p.name: p.address - read.address for p in register_map.points}
    words[at["W"]] = 1500
    words[at["W_SF"]] = 1
    words[at["TotWhImp"]:at["TotWhImp"] + 2] = [0x0001, 0x0000]
    words[at["TotWhExp"]:at["TotWhExp"] + 2] = [0, 7]
    words[at["TotWh_SF"]] = 0xFFFF  # -1: 0.1 Wh
    values = decode_points(register_map, {read: words})
    assert (values["W"].value, values["W"].exponent) == (1500, 1)
    assert (values["TotWhImp"].value, values["TotWhImp"].exponent) == (65536, -1)
    assert values["TotWhExp"].value == 7
    assert "A" not in values  # A_SF not implemented: A cannot be scaled
    assert "Hz" not in values


def test_decode_points_rejects_wrong_block_length_and_wild_scale_factor() -> None:
    register_map = sunspec_meter_map(201)
    (read,) = plan_reads(register_map.points, max_gap=16)
    with pytest.raises(ModbusProtocolError):
        decode_points(register_map, {read: [0] * (read.count - 1)})
    words = [0] * read.count
    words[register_map.points[-1].address - read.address] = 99  # TotWh_SF = 99
    with pytest.raises(ModbusProtocolError, match="scale factor"):
        decode_points(register_map, {read: words})


def test_register_map_validation() -> None:
    with pytest.raises(ValueError, match="scale register"):
        RegisterMap("m", (Point("a", 0, DataType.INT16, Quantity.POWER, scale_register="nope"),))
    with pytest.raises(ValueError, match="duplicate"):
        RegisterMap("m", (Point("a", 0, DataType.INT16, Quantity.POWER), Point("a", 1, DataType.INT16, Quantity.POWER)))
