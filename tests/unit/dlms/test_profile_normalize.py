"""Columnar profile buffers and their mapping to IntervalBlocks."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dlms import axdr, normalize, profile
from adapters.dlms.axdr import Tag
from adapters.dlms.cosem import (
    EXPORT_INTERVAL_OBIS,
    IMPORT_INTERVAL_OBIS,
    ProfileStatus,
    ScalerUnit,
    Unit,
    decode_date_time,
    encode_date_time,
)
from adapters.dlms.errors import DlmsProtocolError
from meterhub.v1 import model_pb2 as pb
from simulators.dlms.server import CAPTURE_OBJECTS

DAY = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
ENDS = np.arange(DAY + 900, DAY + 86400 + 1, 900, dtype=np.int64)
LAYOUT = normalize.profile_layout(CAPTURE_OBJECTS, {IMPORT_INTERVAL_OBIS: ScalerUnit(-1, Unit.WATT_HOUR),
                                                    EXPORT_INTERVAL_OBIS: ScalerUnit(0, Unit.WATT_HOUR)})


def buffer(ends: np.ndarray, status: np.ndarray | None = None) -> bytes:
    status = np.zeros(len(ends), dtype=np.int64) if status is None else status
    return profile.encode_buffer(ends, status, (np.arange(len(ends), dtype=np.int64) * 10,
                                                np.full(len(ends), 7, dtype=np.int64)))


def test_first_row_bytes() -> None:
    raw = buffer(ENDS[:1])
    assert raw == bytes.fromhex("0101" "0204" "090C" "07EA0301" "07" "000F0000" "0000" "00"
                                "1100" "0600000000" "0600000007")


def test_columnar_and_generic_paths_agree() -> None:
    raw = buffer(ENDS)
    fast = profile.decode_buffer(raw)
    generic = profile._decode_generic(axdr.decode(raw))
    for a, b in zip(fast.columns, generic.columns, strict=True):
        assert a.tolist() == b.tolist()
    assert fast.columns[0].tolist() == ENDS.tolist()


def test_mixed_rows_fall_back_to_the_generic_decoder() -> None:
    row = axdr.structure(axdr.octet_string(encode_date_time(datetime(2026, 3, 1, 0, 15, tzinfo=UTC))),
                         axdr.null(), axdr.integer(Tag.LONG_UNSIGNED, 5), axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, 1))
    columns = profile.decode_buffer(axdr.encode(axdr.array(row)))
    assert columns.present[1].tolist() == [False]
    assert columns.columns[2].tolist() == [5]


def test_deviation_is_minutes_from_local_time_to_utc() -> None:
    # 01:15 local at UTC+1 is sent with deviation -60 (Blue Book 4.1.6.1).
    raw = bytes.fromhex("07EA0301" "07" "010F0000" "FFC4" "00")
    assert decode_date_time(raw) == (datetime(2026, 3, 1, 0, 15, tzinfo=UTC), 0)
    rows = bytes.fromhex("0101" "0201" "090C") + raw
    assert profile.decode_buffer(rows).columns[0].tolist() == [DAY + 900]


@pytest.mark.parametrize("bad", ["07EA0D01070000000000000000", "07EA0230070000000000000000",
                                 "07EA030107180000000000000000"])
def test_invalid_dates_are_protocol_errors(bad: str) -> None:
    raw = bytes.fromhex("0101" "0201" "090C") + bytes.fromhex(bad)[:12]
    with pytest.raises(DlmsProtocolError):
        profile.decode_buffer(raw)


@given(st.binary(max_size=200))
@settings(max_examples=400, deadline=None)
def test_buffer_garbage_only_raises_protocol_error(raw: bytes) -> None:
    with contextlib.suppress(DlmsProtocolError):
        profile.decode_buffer(b"\x01" + raw)


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50), st.integers(0, 200_000))
@settings(max_examples=100, deadline=None)
def test_encode_decode_columns(values: list[int], day: int) -> None:
    ends = np.arange(len(values), dtype=np.int64) * 900 + day * 86400 + 900
    column = np.array(values, dtype=np.int64)
    raw = profile.encode_buffer(ends, column % 256, (column, column))
    decoded = profile.decode_buffer(raw)
    assert decoded.columns[0].tolist() == ends.tolist()
    assert decoded.columns[2].tolist() == values


def test_blocks_per_day_with_scaler_and_missing_intervals() -> None:
    ends = np.concatenate([ENDS, ENDS[:4] + 86400])
    keep = np.ones(len(ends), dtype=bool)
    keep[[3, 50]] = False
    status = np.zeros(len(ends), dtype=np.int64)
    status[10] = ProfileStatus.POWER_DOWN | ProfileStatus.DAYLIGHT_SAVING
    columns = profile.decode_buffer(buffer(ends[keep], status[keep]))
    blocks = normalize.interval_blocks("M1", columns, LAYOUT, 900)
    assert [(b.reading_type.device_channel, len(b.values)) for b in blocks] == [
        ("1.0.1.29.0.255", 96), ("1.0.2.29.0.255", 96), ("1.0.1.29.0.255", 4), ("1.0.2.29.0.255", 4)]
    day1 = blocks[0]
    assert day1.reading_type.power_of_ten_multiplier == -1
    assert day1.first_interval_end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 1, 0, 15, tzinfo=UTC)
    assert day1.values[3] == 0
    assert day1.qualities[3] == pb.QUALITY_FLAG_MISSING
    assert day1.qualities[50] == pb.QUALITY_FLAG_MISSING
    assert day1.qualities[10] == pb.QUALITY_FLAG_POWER_FAIL | pb.QUALITY_FLAG_DST_ACTIVE
    assert day1.values[4] == 30  # the 4th row present (index 3 dropped)
    assert blocks[2].qualities == []
    events = normalize.power_fail_events("M1", columns, LAYOUT)
    assert [int(e.event_time.seconds) for e in events] == [int(ends[10])]


def test_off_grid_entries_are_rounded_and_flagged() -> None:
    ends = ENDS[:3].copy()
    ends[1] += 20
    blocks = normalize.interval_blocks("M1", profile.decode_buffer(buffer(ends)), LAYOUT, 900,
                                       extra_quality=pb.QUALITY_FLAG_TEST_MODE)
    assert list(blocks[0].qualities) == [pb.QUALITY_FLAG_TEST_MODE,
                                         pb.QUALITY_FLAG_TEST_MODE | pb.QUALITY_FLAG_CLOCK_SET,
                                         pb.QUALITY_FLAG_TEST_MODE]


def test_reading_types_and_drift() -> None:
    rt = normalize.reading_type(IMPORT_INTERVAL_OBIS, ScalerUnit(3, Unit.VAR_HOUR))
    assert rt is not None
    assert (rt.unit, rt.kind, rt.power_of_ten_multiplier) == (pb.UNIT_VAR_HOUR, pb.MEASUREMENT_KIND_REACTIVE_ENERGY, 3)
    assert normalize.reading_type(IMPORT_INTERVAL_OBIS, ScalerUnit(0, 255)) is None
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert normalize.clock_drift_event("M1", now, now, 30) is None
    event = normalize.clock_drift_event("M1", datetime(2026, 2, 28, 23, 59, tzinfo=UTC), now, 30)
    assert event is not None
    assert event.type == pb.METER_EVENT_TYPE_CLOCK_DRIFT
    assert event.details["drift_seconds"] == "-60"
