"""Interval building from counter samples: pure, time passed in."""

from __future__ import annotations

from adapters.modbus.maps import sunspec_meter_map
from adapters.modbus.normalize import (
    CounterState,
    IntervalBuilder,
    IntervalValue,
    NormalizeSettings,
    advance_counter,
    counter_failed,
    interval_blocks,
)
from adapters.modbus.registers import PointValue, Quantity
from meterhub.v1 import model_pb2 as pb

I = 900_000_000  # noqa: E741
T0 = 1_790_000_000_000_000 - 1_790_000_000_000_000 % I
TOL = 60_000_000
MISSING = pb.QUALITY_FLAG_MISSING


def feed(samples: list[tuple[int, int]], *, modulus: int | None = 1 << 32, exponent: int = 0,
         state: CounterState | None = None) -> tuple[CounterState | None, list[IntervalValue]]:
    out: list[IntervalValue] = []
    for t, value in samples:
        state, done = advance_counter(state, sample_us=t, value=value, exponent=exponent, rollover_modulus=modulus,
                                      interval_us=I, tolerance_us=TOL)
        out.extend(done)
    return state, out


def test_deltas_between_aligned_samples() -> None:
    _, out = feed([(T0 + 5, 1000), (T0 + I + 30_000_000, 1250), (T0 + 2 * I, 1400)])
    assert out == [IntervalValue(T0 + I, 250, 0, 0), IntervalValue(T0 + 2 * I, 150, 0, 0)]


def test_samples_between_interval_ends_are_ignored() -> None:
    _, out = feed([(T0, 1000), (T0 + I // 2, 1100), (T0 + I, 1300)])
    assert out == [IntervalValue(T0 + I, 300, 0, 0)]


def test_rollover_of_acc32() -> None:
    _, out = feed([(T0, (1 << 32) - 100), (T0 + I, 50)])
    assert out == [IntervalValue(T0 + I, 150, 0, 0)]


def test_backwards_counter_without_rollover_is_flagged() -> None:
    _, out = feed([(T0, 500), (T0 + I, 400)], modulus=None)
    assert out == [IntervalValue(T0 + I, 0, MISSING | pb.QUALITY_FLAG_DEVICE_ERROR, 0)]


def test_gap_makes_every_interval_of_it_missing() -> None:
    state, out = feed([(T0, 100), (T0 + 3 * I, 400), (T0 + 4 * I, 450)])
    assert out == [IntervalValue(T0 + I, 0, MISSING, 0), IntervalValue(T0 + 2 * I, 0, MISSING, 0),
                   IntervalValue(T0 + 3 * I, 0, MISSING, 0), IntervalValue(T0 + 4 * I, 50, 0, 0)]
    assert state == CounterState(T0 + 4 * I, 450, 0, T0 + 4 * I)


def test_late_sample_beyond_tolerance_is_not_an_interval_end() -> None:
    _, out = feed([(T0, 100), (T0 + I + TOL + 1, 400), (T0 + 2 * I, 500)])
    assert out == [IntervalValue(T0 + I, 0, MISSING, 0), IntervalValue(T0 + 2 * I, 0, MISSING, 0)]


def test_scale_factor_change_breaks_the_chain() -> None:
    state, _ = feed([(T0, 100)])
    _, out = feed([(T0 + I, 20)], exponent=1, state=state)
    assert out == [IntervalValue(T0 + I, 0, MISSING, 1)]


def test_failure_emits_missing_once_and_recovery_continues() -> None:
    state, _ = feed([(T0, 100)])
    state, out1 = counter_failed(state, at_us=T0 + I + 10, interval_us=I, tolerance_us=TOL)
    state, again = counter_failed(state, at_us=T0 + I + 20, interval_us=I, tolerance_us=TOL)
    state, out2 = feed([(T0 + 2 * I, 300), (T0 + 3 * I, 340)], state=state)
    assert out1 == [IntervalValue(T0 + I, 0, MISSING, 0)]
    assert again == []
    assert out2 == [IntervalValue(T0 + 2 * I, 0, MISSING, 0), IntervalValue(T0 + 3 * I, 40, 0, 0)]


def test_failure_before_any_sample_emits_nothing() -> None:
    assert counter_failed(None, at_us=T0, interval_us=I, tolerance_us=TOL) == (None, [])


def test_blocks_split_on_breaks_and_carry_qualities() -> None:
    values = [IntervalValue(T0 + I, 5, 0, 0), IntervalValue(T0 + 2 * I, 0, MISSING, 0),
              IntervalValue(T0 + 4 * I, 7, 0, 0)]
    blocks = interval_blocks("M1", Quantity.ENERGY_DELIVERED, "TotWhImp", values, I, multiplier_applied=True)
    assert [list(b.values) for b in blocks] == [[5, 0], [7]]
    assert list(blocks[0].qualities) == [0, MISSING]
    assert list(blocks[1].qualities) == []
    assert blocks[0].first_interval_end_time.ToMicroseconds() == T0 + I
    rt = blocks[0].reading_type
    assert (rt.accumulation, rt.flow_direction, rt.unit) == (pb.ACCUMULATION_DELTA, pb.FLOW_DIRECTION_DELIVERED,
                                                             pb.UNIT_WATT_HOUR)


def test_builder_batches_intervals_register_reads_and_events() -> None:
    register_map = sunspec_meter_map(201)
    points = {p.name: p for p in register_map.points}
    builder = IntervalBuilder(NormalizeSettings(interval_seconds=900, tolerance_seconds=60,
                                                register_read_seconds=3600))

    def values(imp: int, w: int) -> dict[str, PointValue]:
        return {"TotWhImp": PointValue(points["TotWhImp"], imp, -1), "W": PointValue(points["W"], w, 0),
                "A": PointValue(points["A"], 1, -2)}

    builder.sample("M1", T0, values(1000, 500))
    first = builder.take_batch()
    assert first is not None and not first.interval_blocks and len(first.register_reads) == 3
    builder.sample("M1", T0 + I, values(1600, 400))
    builder.failed("M1", T0 + 2 * I, "MODBUS_TIMEOUT")
    builder.failed("M1", T0 + 3 * I, "MODBUS_TIMEOUT")
    batch = builder.take_batch()
    assert batch is not None
    (block,) = batch.interval_blocks
    assert list(block.values) == [600, 0, 0] and list(block.qualities) == [0, MISSING, MISSING]
    assert block.reading_type.power_of_ten_multiplier == -1
    assert not batch.register_reads  # not an hour boundary
    (event,) = batch.meter_events  # one event per outage, not per failed poll
    assert event.type == pb.METER_EVENT_TYPE_COMMUNICATION_FAILURE and event.details["reason"] == "MODBUS_TIMEOUT"
    assert builder.take_batch() is None


def test_demand_max_reading_type() -> None:
    builder = IntervalBuilder(NormalizeSettings(interval_seconds=900, tolerance_seconds=60,
                                                register_read_seconds=900))
    from adapters.modbus.maps import float_submeter_map
    pts = {p.name: p for p in float_submeter_map().points}
    builder.sample("M2", T0, {"MaxTotalDemand": PointValue(pts["MaxTotalDemand"], 4200, 0),
                              "TotalDemand": PointValue(pts["TotalDemand"], 3000, 0)})
    batch = builder.take_batch()
    assert batch is not None
    kinds = {r.reading_type.device_channel: (r.reading_type.kind, r.reading_type.accumulation)
             for r in batch.register_reads}
    assert kinds == {"MaxTotalDemand": (pb.MEASUREMENT_KIND_DEMAND, pb.ACCUMULATION_MAXIMUM),
                     "TotalDemand": (pb.MEASUREMENT_KIND_DEMAND, pb.ACCUMULATION_INSTANTANEOUS)}
