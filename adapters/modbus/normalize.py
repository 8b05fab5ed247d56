"""Polled register values -> meterhub.v1 protobufs. Pure: time is passed in.

Energy counters become interval values by differencing counter samples taken at
interval ends: a sample within ``tolerance`` after an interval end counts as the
counter at that end. One interval's value is the exact integer delta of its two
end samples (rollover of acc32/uint32/acc64 counters included). Intervals whose
ends were not both sampled (failed poll, late poll, scale factor change, a
non-wrapping counter going backwards) are emitted with value 0 and
QUALITY_FLAG_MISSING, so every interval is emitted exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.modbus.registers import PointValue, Quantity
from meterhub.v1 import model_pb2 as pb

INT64_MAX = (1 << 63) - 1

_KIND_UNIT: dict[Quantity, tuple[pb.MeasurementKind.ValueType, pb.Unit.ValueType, pb.FlowDirection.ValueType]] = {
    # quantity: (kind, unit, flow direction)
    Quantity.ENERGY_DELIVERED: (pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR, pb.FLOW_DIRECTION_DELIVERED),
    Quantity.ENERGY_RECEIVED: (pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR, pb.FLOW_DIRECTION_RECEIVED),
    Quantity.POWER: (pb.MEASUREMENT_KIND_ACTIVE_POWER, pb.UNIT_WATT, pb.FLOW_DIRECTION_NET),
    Quantity.VOLTAGE: (pb.MEASUREMENT_KIND_VOLTAGE, pb.UNIT_VOLT, pb.FLOW_DIRECTION_UNSPECIFIED),
    Quantity.CURRENT: (pb.MEASUREMENT_KIND_CURRENT, pb.UNIT_AMPERE, pb.FLOW_DIRECTION_UNSPECIFIED),
    Quantity.FREQUENCY: (pb.MEASUREMENT_KIND_FREQUENCY, pb.UNIT_HERTZ, pb.FLOW_DIRECTION_UNSPECIFIED),
    Quantity.POWER_FACTOR: (pb.MEASUREMENT_KIND_POWER_FACTOR, pb.UNIT_COS_PHI, pb.FLOW_DIRECTION_UNSPECIFIED),
    Quantity.DEMAND: (pb.MEASUREMENT_KIND_DEMAND, pb.UNIT_WATT, pb.FLOW_DIRECTION_DELIVERED),
    Quantity.DEMAND_MAX: (pb.MEASUREMENT_KIND_DEMAND, pb.UNIT_WATT, pb.FLOW_DIRECTION_DELIVERED),
}


def reading_type(quantity: Quantity, exponent: int, *, channel: str, interval: bool = False) -> pb.ReadingType:
    """The reading type of a point's values: energy as a cumulative register (or,
    with ``interval``, as per-interval deltas), demand maximum as MAXIMUM, all
    others as INSTANTANEOUS samples."""
    kind, unit, flow = _KIND_UNIT[quantity]
    if quantity.is_energy:
        accumulation = pb.ACCUMULATION_DELTA if interval else pb.ACCUMULATION_CUMULATIVE
    elif quantity is Quantity.DEMAND_MAX:
        accumulation = pb.ACCUMULATION_MAXIMUM
    else:
        accumulation = pb.ACCUMULATION_INSTANTANEOUS
    return pb.ReadingType(commodity=pb.COMMODITY_ELECTRICITY, kind=kind, unit=unit, flow_direction=flow,
                          accumulation=accumulation, power_of_ten_multiplier=exponent, device_channel=channel)


@dataclass(frozen=True, slots=True)
class CounterState:
    """What is known of one energy counter: the last counter sample taken at an
    interval end, and the last interval end already emitted."""

    last_end_us: int
    last_value: int
    exponent: int
    emitted_through_us: int


@dataclass(frozen=True, slots=True)
class IntervalValue:
    end_us: int
    value: int
    quality: int
    exponent: int


def _missing(start_us: int, end_us: int, interval_us: int, exponent: int, flags: int) -> list[IntervalValue]:
    return [IntervalValue(t, 0, flags, exponent) for t in range(start_us + interval_us, end_us + interval_us,
                                                                 interval_us)]


def advance_counter(state: CounterState | None, *, sample_us: int, value: int, exponent: int,
                    rollover_modulus: int | None, interval_us: int,
                    tolerance_us: int) -> tuple[CounterState | None, list[IntervalValue]]:
    """Feed one counter sample; returns the new state and the intervals it completes."""
    end = sample_us - sample_us % interval_us
    if sample_us - end > tolerance_us:
        return state, []  # between interval ends: no interval boundary to attribute it to
    if state is None:
        return CounterState(end, value, exponent, end), []
    if end <= state.last_end_us:
        return state, []
    if end <= state.emitted_through_us:
        # Already flagged missing through this end: only a new baseline.
        return CounterState(end, value, exponent, state.emitted_through_us), []
    new_state = CounterState(end, value, exponent, end)
    single = state.last_end_us == state.emitted_through_us and end - state.last_end_us == interval_us
    if not single or exponent != state.exponent:
        return new_state, _missing(state.emitted_through_us, end, interval_us, exponent, pb.QUALITY_FLAG_MISSING)
    delta = value - state.last_value
    if delta < 0 and rollover_modulus is not None:
        delta += rollover_modulus
    if delta < 0 or delta > INT64_MAX:
        flags = pb.QUALITY_FLAG_MISSING | pb.QUALITY_FLAG_DEVICE_ERROR
        return new_state, [IntervalValue(end, 0, flags, exponent)]
    return new_state, [IntervalValue(end, delta, 0, exponent)]


def counter_failed(state: CounterState | None, *, at_us: int, interval_us: int,
                   tolerance_us: int) -> tuple[CounterState | None, list[IntervalValue]]:
    """A poll at ``at_us`` got no counter: the intervals through that end are missing."""
    end = at_us - at_us % interval_us
    if state is None or at_us - end > tolerance_us or end <= state.emitted_through_us:
        return state, []
    new_state = CounterState(state.last_end_us, state.last_value, state.exponent, end)
    return new_state, _missing(state.emitted_through_us, end, interval_us, state.exponent, pb.QUALITY_FLAG_MISSING)


def interval_blocks(meter_id: str, quantity: Quantity, channel: str, values: list[IntervalValue],
                    interval_us: int, *, multiplier_applied: bool) -> list[pb.IntervalBlock]:
    """Contiguous runs of one channel's intervals as blocks (a new block where the
    run breaks or the exponent changes)."""
    blocks: list[pb.IntervalBlock] = []
    run: list[IntervalValue] = []

    def flush() -> None:
        if not run:
            return
        block = pb.IntervalBlock(
            meter_id=meter_id, reading_type=reading_type(quantity, run[0].exponent, channel=channel, interval=True),
            interval_seconds=interval_us // 1_000_000, values=[v.value for v in run],
            meter_multiplier_applied=multiplier_applied)
        if any(v.quality for v in run):
            block.qualities.extend(v.quality for v in run)
        block.first_interval_end_time.FromMicroseconds(run[0].end_us)
        blocks.append(block)
        run.clear()

    for item in sorted(values, key=lambda v: v.end_us):
        if run and (item.end_us != run[-1].end_us + interval_us or item.exponent != run[-1].exponent):
            flush()
        run.append(item)
    flush()
    return blocks


@dataclass(frozen=True, slots=True)
class NormalizeSettings:
    interval_seconds: int
    tolerance_seconds: int
    register_read_seconds: int
    instantaneous: bool = True
    multiplier_applied: bool = True


@dataclass
class _Channel:
    quantity: Quantity
    state: CounterState | None = None
    pending: list[IntervalValue] = field(default_factory=list)


class IntervalBuilder:
    """Turns successive polls of many meters into batches. A deterministic state
    machine: every input carries its time; nothing here reads a clock or does I/O."""

    def __init__(self, settings: NormalizeSettings) -> None:
        self.settings = settings
        self._interval_us = settings.interval_seconds * 1_000_000
        self._tolerance_us = settings.tolerance_seconds * 1_000_000
        self._register_us = settings.register_read_seconds * 1_000_000
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._reads: list[pb.RegisterRead] = []
        self._events: list[pb.MeterEvent] = []
        self._failing: set[str] = set()
        self._read_once: set[str] = set()

    def sample(self, meter_id: str, sample_us: int, values: Mapping[str, PointValue]) -> None:
        """A successful poll of a meter at ``sample_us``."""
        self._failing.discard(meter_id)
        boundary = sample_us - sample_us % self._register_us
        emit_reads = sample_us - boundary <= self._tolerance_us or meter_id not in self._read_once
        if emit_reads:
            self._read_once.add(meter_id)
        for name, pv in values.items():
            quantity = pv.point.quantity
            if quantity.is_energy:
                channel = self._channels.setdefault((meter_id, name), _Channel(quantity))
                channel.state, done = advance_counter(
                    channel.state, sample_us=sample_us, value=pv.value, exponent=pv.exponent,
                    rollover_modulus=pv.point.data_type.rollover_modulus, interval_us=self._interval_us,
                    tolerance_us=self._tolerance_us)
                channel.pending.extend(done)
            elif not self.settings.instantaneous:
                continue
            if emit_reads:
                read = pb.RegisterRead(meter_id=meter_id, value=pv.value,
                                       reading_type=reading_type(quantity, pv.exponent, channel=name),
                                       meter_multiplier_applied=self.settings.multiplier_applied)
                read.read_time.FromMicroseconds(sample_us)
                self._reads.append(read)

    def failed(self, meter_id: str, at_us: int, reason: str) -> None:
        """A poll of a meter at ``at_us`` failed (after retries)."""
        for (mid, _name), channel in self._channels.items():
            if mid != meter_id:
                continue
            channel.state, done = counter_failed(channel.state, at_us=at_us, interval_us=self._interval_us,
                                                 tolerance_us=self._tolerance_us)
            channel.pending.extend(done)
        if meter_id not in self._failing:
            self._failing.add(meter_id)
            event = pb.MeterEvent(meter_id=meter_id, type=pb.METER_EVENT_TYPE_COMMUNICATION_FAILURE,
                                  details={"reason": reason})
            event.event_time.FromMicroseconds(at_us)
            self._events.append(event)

    @property
    def pending_intervals(self) -> int:
        return sum(len(c.pending) for c in self._channels.values())

    def take_batch(self) -> pb.ReadingBatch | None:
        """Everything pending as one batch (None when there is nothing)."""
        batch = pb.ReadingBatch()
        for (meter_id, name), channel in self._channels.items():
            if channel.pending:
                batch.interval_blocks.extend(interval_blocks(
                    meter_id, channel.quantity, name, channel.pending, self._interval_us,
                    multiplier_applied=self.settings.multiplier_applied))
                channel.pending = []
        batch.register_reads.extend(self._reads)
        batch.meter_events.extend(self._events)
        self._reads.clear()
        self._events.clear()
        if not (batch.interval_blocks or batch.register_reads or batch.meter_events):
            return None
        return batch
