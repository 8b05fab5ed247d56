"""DLMS reads -> meterhub.v1 protobufs. Pure (no I/O), whole columns at a time.

A profile buffer becomes one IntervalBlock per channel and UTC day (the day of
each interval's start, as the store keeps channel-days). Values stay integer
counts of unit x 10^scaler, exactly as the meter sent them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from adapters.dlms.cosem import CLOCK_OBIS, CaptureObject, ClassId, ClockStatus, Obis, ProfileStatus, ScalerUnit, Unit
from adapters.dlms.profile import Int64Array, ProfileColumns
from meterhub.v1 import model_pb2 as pb

SECONDS_PER_DAY = 86400

_UNITS: dict[int, tuple[pb.Unit.ValueType, pb.MeasurementKind.ValueType]] = {
    Unit.WATT_HOUR: (pb.UNIT_WATT_HOUR, pb.MEASUREMENT_KIND_ACTIVE_ENERGY),
    Unit.VAR_HOUR: (pb.UNIT_VAR_HOUR, pb.MEASUREMENT_KIND_REACTIVE_ENERGY),
    Unit.VOLT_AMPERE_HOUR: (pb.UNIT_VOLT_AMPERE_HOUR, pb.MEASUREMENT_KIND_APPARENT_ENERGY),
    Unit.WATT: (pb.UNIT_WATT, pb.MEASUREMENT_KIND_ACTIVE_POWER),
    Unit.VAR: (pb.UNIT_VAR, pb.MEASUREMENT_KIND_REACTIVE_POWER),
    Unit.VOLT_AMPERE: (pb.UNIT_VOLT_AMPERE, pb.MEASUREMENT_KIND_APPARENT_POWER),
    Unit.VOLT: (pb.UNIT_VOLT, pb.MEASUREMENT_KIND_VOLTAGE),
    Unit.AMPERE: (pb.UNIT_AMPERE, pb.MEASUREMENT_KIND_CURRENT),
    Unit.HERTZ: (pb.UNIT_HERTZ, pb.MEASUREMENT_KIND_FREQUENCY),
    Unit.CUBIC_METRE: (pb.UNIT_CUBIC_METRE, pb.MEASUREMENT_KIND_VOLUME),
}

# OBIS C (quantity) -> flow direction, for electricity.
_FLOW: dict[int, pb.FlowDirection.ValueType] = {1: pb.FLOW_DIRECTION_DELIVERED, 2: pb.FLOW_DIRECTION_RECEIVED,
                         3: pb.FLOW_DIRECTION_DELIVERED, 4: pb.FLOW_DIRECTION_RECEIVED,
                         9: pb.FLOW_DIRECTION_DELIVERED, 10: pb.FLOW_DIRECTION_RECEIVED,
                         15: pb.FLOW_DIRECTION_TOTAL, 16: pb.FLOW_DIRECTION_NET}
# OBIS D (processing) -> accumulation.
_ACCUMULATION: dict[int, pb.Accumulation.ValueType] = {8: pb.ACCUMULATION_CUMULATIVE, 9: pb.ACCUMULATION_DELTA,
                                 29: pb.ACCUMULATION_DELTA, 7: pb.ACCUMULATION_INSTANTANEOUS,
                                 6: pb.ACCUMULATION_MAXIMUM}

STATUS_QUALITY: tuple[tuple[int, int], ...] = (
    (ProfileStatus.POWER_DOWN, pb.QUALITY_FLAG_POWER_FAIL),
    (ProfileStatus.CLOCK_ADJUSTED, pb.QUALITY_FLAG_CLOCK_SET),
    (ProfileStatus.CLOCK_INVALID, pb.QUALITY_FLAG_CLOCK_SET),
    (ProfileStatus.DAYLIGHT_SAVING, pb.QUALITY_FLAG_DST_ACTIVE),
    (ProfileStatus.DATA_NOT_VALID, pb.QUALITY_FLAG_DEVICE_ERROR),
    (ProfileStatus.CRITICAL_ERROR, pb.QUALITY_FLAG_DEVICE_ERROR),
)


def reading_type(obis: Obis, scaler: ScalerUnit,
                 default_accumulation: pb.Accumulation.ValueType = pb.ACCUMULATION_DELTA
                 ) -> pb.ReadingType | None:
    """The ReadingType of an electricity register, or None for a unit we do not map."""
    mapped = _UNITS.get(scaler.unit)
    if mapped is None:
        return None
    unit, kind = mapped
    c, d = obis.raw[2], obis.raw[3]
    return pb.ReadingType(
        commodity=pb.COMMODITY_ELECTRICITY, kind=kind, unit=unit,
        flow_direction=_FLOW.get(c, pb.FLOW_DIRECTION_UNSPECIFIED),
        accumulation=_ACCUMULATION.get(d, default_accumulation),
        power_of_ten_multiplier=scaler.scaler, device_channel=str(obis))


def status_qualities(status: Int64Array) -> Int64Array:
    """AMR profile status bytes -> QualityFlag bit sets."""
    out = np.zeros(len(status), dtype=np.int64)
    for bit, flag in STATUS_QUALITY:
        out |= np.where(status & bit, flag, 0)
    return out


def clock_status_qualities(status: Int64Array) -> Int64Array:
    doubtful = ClockStatus.INVALID_VALUE | ClockStatus.DOUBTFUL_VALUE | ClockStatus.INVALID_CLOCK_STATUS
    return np.where(status & doubtful, pb.QUALITY_FLAG_CLOCK_SET, 0).astype(np.int64)


@dataclass(frozen=True, slots=True)
class ProfileLayout:
    """Which buffer column is the clock, which is the status word, which are channels."""

    clock: int
    status: int | None
    channels: tuple[tuple[int, CaptureObject, pb.ReadingType], ...]


def profile_layout(capture_objects: tuple[CaptureObject, ...], scalers: Mapping[Obis, ScalerUnit]) -> ProfileLayout:
    clock = status = None
    channels = []
    for i, capture in enumerate(capture_objects):
        if capture.class_id == ClassId.CLOCK and capture.obis == CLOCK_OBIS and capture.attribute == 2:
            clock = i
        elif capture.class_id == ClassId.DATA and capture.obis.raw[2:4] == bytes((96, 10)):
            status = i
        elif capture.class_id in (ClassId.REGISTER, ClassId.EXTENDED_REGISTER) and capture.attribute == 2:
            scaler = scalers.get(capture.obis)
            rt = reading_type(capture.obis, scaler) if scaler is not None else None
            if rt is not None:
                channels.append((i, capture, rt))
    if clock is None:
        raise ValueError("load profile has no clock column")
    return ProfileLayout(clock, status, tuple(channels))


def interval_blocks(meter_id: str, columns: ProfileColumns, layout: ProfileLayout, interval_seconds: int,
                    extra_quality: int = 0) -> list[pb.IntervalBlock]:
    """One block per channel and UTC day. Intervals missing inside a day's span are sent
    as 0 with QUALITY_FLAG_MISSING; ``extra_quality`` is OR-ed into every present interval."""
    if columns.rows == 0:
        return []
    ends = columns.columns[layout.clock]
    quality = np.full(len(ends), extra_quality, dtype=np.int64)
    # Entries stamped off the interval grid were captured after a clock adjustment.
    off_grid = ends % interval_seconds != 0
    ends = np.where(off_grid, (ends + interval_seconds // 2) // interval_seconds * interval_seconds, ends)
    quality |= np.where(off_grid, pb.QUALITY_FLAG_CLOCK_SET, 0)
    clock_status = columns.clock_status[layout.clock]
    if clock_status is not None:
        quality |= clock_status_qualities(clock_status)
    if layout.status is not None:
        quality |= status_qualities(columns.columns[layout.status])
    # Keep the last entry per interval end, in time order.
    order = np.argsort(ends, kind="stable")
    ends, quality = ends[order], quality[order]
    last_of_run = np.append(ends[1:] != ends[:-1], True)
    ends, quality, order = ends[last_of_run], quality[last_of_run], order[last_of_run]
    days = (ends - interval_seconds) // SECONDS_PER_DAY
    blocks: list[pb.IntervalBlock] = []
    for day in np.unique(days):
        in_day = days == day
        day_ends = ends[in_day]
        slots = (day_ends - day_ends[0]) // interval_seconds
        width = int(slots[-1]) + 1
        day_quality = np.full(width, pb.QUALITY_FLAG_MISSING, dtype=np.int64)
        day_quality[slots] = quality[in_day]
        first_end = datetime.fromtimestamp(int(day_ends[0]), UTC)
        for column, _capture, rt in layout.channels:
            values = np.zeros(width, dtype=np.int64)
            values[slots] = columns.columns[column][order][in_day]
            channel_quality = day_quality.copy()
            absent = ~columns.present[column][order][in_day]
            channel_quality[slots[absent]] = pb.QUALITY_FLAG_MISSING
            block = pb.IntervalBlock(meter_id=meter_id, reading_type=rt, interval_seconds=interval_seconds,
                                     values=values.tolist(),
                                     qualities=channel_quality.tolist() if channel_quality.any() else [])
            block.first_interval_end_time.FromDatetime(first_end)
            blocks.append(block)
    return blocks


def power_fail_events(meter_id: str, columns: ProfileColumns, layout: ProfileLayout) -> list[pb.MeterEvent]:
    """One POWER_FAIL event per profile entry whose status word has the power-down bit."""
    if layout.status is None or columns.rows == 0:
        return []
    flagged = (columns.columns[layout.status] & ProfileStatus.POWER_DOWN) != 0
    events = []
    for end in columns.columns[layout.clock][flagged].tolist():
        event = pb.MeterEvent(meter_id=meter_id, type=pb.METER_EVENT_TYPE_POWER_FAIL,
                              details={"source": "profile status", "obis": "1.0.99.1.0.255"})
        event.event_time.FromDatetime(datetime.fromtimestamp(end, UTC))
        events.append(event)
    return events


def register_read(meter_id: str, obis: Obis, value: int, scaler: ScalerUnit, read_time: datetime,
                  quality: int = 0) -> pb.RegisterRead | None:
    rt = reading_type(obis, scaler, pb.ACCUMULATION_CUMULATIVE)
    if rt is None:
        return None
    read = pb.RegisterRead(meter_id=meter_id, reading_type=rt, value=value, quality=quality)
    read.read_time.FromDatetime(read_time)
    return read


def clock_drift_event(meter_id: str, meter_time: datetime, now: datetime, tolerance_seconds: float
                      ) -> pb.MeterEvent | None:
    drift = (meter_time - now).total_seconds()
    if abs(drift) <= tolerance_seconds:
        return None
    event = pb.MeterEvent(meter_id=meter_id, type=pb.METER_EVENT_TYPE_CLOCK_DRIFT,
                          details={"drift_seconds": str(round(drift)), "meter_time": meter_time.isoformat(),
                                   "tolerance_seconds": str(tolerance_seconds)})
    event.event_time.FromDatetime(now)
    return event
