"""C12.19 tables and the normalisation of load profile data."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.c1222.config import DEFAULT_CHANNELS, parse_config
from adapters.c1222.errors import TableError
from adapters.c1222.normalize import LpRead, interval_blocks, interval_qualities, scale
from adapters.c1222.tables import (
    ActualRegisters,
    Clock,
    CurrentRegisters,
    GenConfig,
    IntFormat,
    LpControl,
    LpDimensions,
    LpFlag,
    LpLayout,
    LpStatus,
    ManufacturerIdent,
    NibbleMapping,
    TimeFormat,
    decode_lp_blocks,
    decode_stime,
    decode_table_reads,
    encode_lp_block,
    encode_stime,
)
from gateway.errors import ConfigError
from meterhub.v1 import model_pb2 as pb
from simulators.c1222.meter import MeterSpec, SimulatedMeter

T = datetime(2024, 3, 10, 13, 45, tzinfo=UTC)


@pytest.mark.parametrize("fmt", [TimeFormat.BCD, TimeFormat.UINT8, TimeFormat.UINT32_MINUTES,
                                 TimeFormat.UINT32_SECONDS])
@pytest.mark.parametrize("order", ["little", "big"])
def test_stime_round_trip(fmt: TimeFormat, order: str) -> None:
    assert decode_stime(encode_stime(T, fmt, order), fmt, order) == T  # type: ignore[arg-type]
    assert Clock.decode(Clock(T.replace(second=7)).encode(fmt, order), fmt, order).time == T.replace(second=7)  # type: ignore[arg-type]


def test_bcd_time_vector() -> None:
    assert encode_stime(T, TimeFormat.BCD, "little").hex() == "2403101345"


def test_gen_config_round_trip_and_order() -> None:
    cfg = GenConfig(data_order_msb_first=True, time_format=TimeFormat.BCD, std_tbls_used=frozenset({0, 1, 64}))
    again = GenConfig.decode(cfg.encode())
    assert again == cfg
    assert again.order == "big"
    assert cfg.encode()[0] & 1 == 1


def test_st1_vector() -> None:
    raw = ManufacturerIdent("MHUB", "SIM1222", 1, 0, 2, 3, "MANUFACTURER SN").encode()
    assert raw[16:] == b"MANUFACTURER SN "
    assert ManufacturerIdent.decode(raw).serial_number == "MANUFACTURER SN"


@pytest.mark.parametrize("order", ["little", "big"])
def test_lp_dimension_control_status_round_trip(order: str) -> None:
    spec = MeterSpec(lp_start=T, data_order_msb_first=order == "big")
    dims = spec.dimensions()
    assert LpDimensions.decode(dims.encode(order), order) == dims  # type: ignore[arg-type]
    ctrl = spec.control()
    assert LpControl.decode(ctrl.encode(order), order, 2, True) == ctrl  # type: ignore[arg-type]
    status = LpStatus(0, 3, 2, 17, 3, 40)  # type: ignore[arg-type]
    assert LpStatus.decode(status.encode(order), order) == status  # type: ignore[arg-type]
    assert dims.encode("big")[:4] == dims.memory_len.to_bytes(4, "big")


@pytest.mark.parametrize("int_format", [IntFormat.UINT8, IntFormat.UINT16, IntFormat.INT32])
@pytest.mark.parametrize("order", ["little", "big"])
def test_lp_block_round_trip(int_format: IntFormat, order: str) -> None:
    layout = LpLayout(3, 4, 15, int_format, LpFlag.EXTENDED_INT_STATUS | LpFlag.BLK_END_READ,
                      TimeFormat.UINT32_SECONDS, order)  # type: ignore[arg-type]
    values = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]], dtype=np.int64)
    status = np.array([[0x20, 0x14], [0, 0], [0x10, 0x20], [0, 0]], dtype=np.uint8)
    raw = encode_lp_block(T, values, status, layout, [100, 200, 300]) * 2
    blocks = decode_lp_blocks(raw, layout)
    assert blocks.end_times == (T, T)
    assert (blocks.values[1] == values).all()
    assert (blocks.status[0] == status).all()
    assert blocks.end_readings[0] == (100, 200, 300)
    assert len(raw) == 2 * layout.block_bytes


def test_lp_block_short_data_is_table_error() -> None:
    layout = LpLayout(1, 2, 15, IntFormat.UINT16, LpFlag(0), TimeFormat.UINT32_SECONDS, "little")
    with pytest.raises(TableError):
        decode_lp_blocks(b"\x00" * (layout.block_bytes + 1), layout)


def test_nibble_mappings() -> None:
    # byte0: common POWER_FAIL (0x20) | ch1 low nibble OVERFLOW(1); byte1: ch2 high SKIPPED(4), ch3 low PARTIAL(2)
    status = np.array([[0x21, 0x42]], dtype=np.uint8)
    q = interval_qualities(status, 3, NibbleMapping.FIRST_IN_COMMON_BYTE)
    assert q[0, 0] == pb.QUALITY_FLAG_POWER_FAIL | pb.QUALITY_FLAG_OVERFLOW
    assert q[0, 1] == pb.QUALITY_FLAG_POWER_FAIL | pb.QUALITY_FLAG_SKIPPED_INTERVAL | pb.QUALITY_FLAG_MISSING
    assert q[0, 2] == pb.QUALITY_FLAG_POWER_FAIL | pb.QUALITY_FLAG_PARTIAL_INTERVAL
    # the other reading: channel j in byte j//2+1, even j low nibble
    q2 = interval_qualities(np.array([[0x80, 0x31, 0x00]], dtype=np.uint8), 3, NibbleMapping.AFTER_COMMON_BYTE)
    assert q2[0, 0] == pb.QUALITY_FLAG_CLOCK_SET | pb.QUALITY_FLAG_OVERFLOW
    assert q2[0, 1] == pb.QUALITY_FLAG_CLOCK_SET | pb.QUALITY_FLAG_LONG_INTERVAL
    assert q2[0, 2] == pb.QUALITY_FLAG_CLOCK_SET
    dst = interval_qualities(np.array([[0x10, 0x00]], dtype=np.uint8), 1, NibbleMapping.FIRST_IN_COMMON_BYTE)
    assert dst[0, 0] == pb.QUALITY_FLAG_DST_ACTIVE


def test_scale_exact() -> None:
    values, exponent = scale(np.array([3, 5], dtype=np.int64), 2, 10)
    assert values.tolist() == [6, 10] and exponent == -1
    assert scale(np.array([9], dtype=np.int64), 1, 3)[0].tolist() == [3]
    with pytest.raises(TableError):
        scale(np.array([10], dtype=np.int64), 1, 3)


def test_interval_blocks_split_per_day_and_gap() -> None:
    step = 900
    day = int(datetime(2024, 3, 10, tzinfo=UTC).timestamp())
    ends = np.array([day - step, day, day + step, day + 3 * step], dtype=np.int64)  # 23:45, 00:00 | 00:15, (gap) 00:45
    lp = LpRead(step, ends, np.arange(8, dtype=np.int64).reshape(4, 2), np.zeros((4, 2), np.uint8), (2, 1), (10, 1))
    blocks = interval_blocks("M1", lp, DEFAULT_CHANNELS, NibbleMapping.FIRST_IN_COMMON_BYTE)
    ch0 = [b for b in blocks if b.reading_type.flow_direction == pb.FLOW_DIRECTION_DELIVERED]
    assert [list(b.values) for b in ch0] == [[0, 4], [8], [12]]
    assert ch0[0].reading_type.power_of_ten_multiplier == -1
    assert all(not b.qualities for b in blocks)


def test_registers_round_trip() -> None:
    regs = ActualRegisters(0x04, 0, 0, 2, 1, 0, 1, 1, 0, 0)
    cfg = GenConfig()
    current = CurrentRegisters((123456789, -5), ((77,),), 3, ((1, 2),))
    assert CurrentRegisters.decode(current.encode(regs, cfg), regs, cfg) == current


def test_simulated_meter_is_deterministic() -> None:
    spec = MeterSpec(lp_start=T)
    a = SimulatedMeter(5, spec).intervals(int(T.timestamp()) + 900, 10)
    b = SimulatedMeter(5, spec).intervals(int(T.timestamp()) + 900, 10)
    c = SimulatedMeter(6, spec).intervals(int(T.timestamp()) + 900, 10)
    assert (a.values == b.values).all() and not (a.values == c.values).all()


def test_config_errors_name_the_key() -> None:
    base = {"type": "c1222", "fleet": {"port": 1153, "count": 2}}
    assert len(parse_config(base).meters) == 2
    for bad, key in [({"concurrency": 0}, "concurrency"), ({"security_mode": "x"}, "security_mode"),
                     ({"security_mode": "ciphered"}, "key"), ({"bogus": 1}, "bogus"),
                     ({"nibble_mapping": "z"}, "nibble_mapping"), ({"key": "abc"}, "key"),
                     ({"channels": [{"unit": "parsec"}]}, "channels[0].unit")]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            parse_config({**base, **bad})
    with pytest.raises(ConfigError, match="meters"):
        parse_config({"type": "c1222"})


@pytest.mark.parametrize("fmt", [TimeFormat.UINT32_MINUTES, TimeFormat.UINT32_SECONDS])
def test_times_past_the_year_9999_are_table_errors(fmt: TimeFormat) -> None:
    # UINT32 minutes reach the year 10136: a table error, not Python's OverflowError.
    raw = b"\xff\xff\xff\xff"
    if fmt is TimeFormat.UINT32_MINUTES:
        with pytest.raises(TableError, match="past the year 9999"):
            decode_stime(raw, fmt, "little")
        with pytest.raises(TableError, match="ST52"):
            Clock.decode(raw + b"\x00\x10", fmt, "little")
    else:
        assert decode_stime(raw, fmt, "little").year == 2106


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from(list(TimeFormat)), st.sampled_from(["little", "big"]),
       st.integers(1, 4), st.booleans())
def test_garbage_tables_raise_only_table_errors(data: bytes, fmt: TimeFormat, order: str, channels: int,
                                                scalar_divisor: bool) -> None:
    decoders = [
        lambda: GenConfig.decode(data),
        lambda: LpDimensions.decode(data, order),  # type: ignore[arg-type]
        lambda: LpControl.decode(data, order, channels, scalar_divisor),  # type: ignore[arg-type]
        lambda: LpStatus.decode(data, order),  # type: ignore[arg-type]
        lambda: Clock.decode(data, fmt, order),  # type: ignore[arg-type]
        lambda: decode_stime(data[:5], fmt, order),  # type: ignore[arg-type]
        lambda: ActualRegisters.decode(data),
        lambda: CurrentRegisters.decode(data, ActualRegisters(0x04, 0, 0, channels, 1, 0, 1, 1, 0, 0), GenConfig()),
        lambda: decode_lp_blocks(data, LpLayout(channels, 2, 15, IntFormat.UINT16, LpFlag.EXTENDED_INT_STATUS,
                                                fmt, order)),  # type: ignore[arg-type]
        lambda: decode_table_reads(data),
    ]
    for decode in decoders:
        with contextlib.suppress(TableError):
            decode()
