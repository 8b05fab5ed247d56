"""Each validation rule on crafted arrays, through the engine and directly."""

from __future__ import annotations

import numpy as np

from meterhub.v1 import model_pb2 as pb
from tests.unit.vee.builders import batch, rows
from vee import VeeEngine, default_config, parse_vee_toml
from vee import flags as f
from vee import validation as val
from vee.config import FlatLineRule, SpikeRule, ZeroRunRule
from vee.runs import RowGrid


def run(v, q, text: str | None = None, **kw):  # type: ignore[no-untyped-def]
    config = parse_vee_toml(text) if text else default_config()
    return VeeEngine(config).run(batch(v, q, **kw))


def rules_of(result) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted({i.rule for i in result.items})


def test_clean_day_passes_and_is_validated() -> None:
    v, q = rows(2)
    result = run(v, q)
    assert result.items == ()
    assert np.all(result.qualities == f.VALIDATED)
    assert np.array_equal(result.values, v)


def test_missing_interval_without_neighbours_or_history_opens_item() -> None:
    v, q = rows(1)
    q[0, :30] = f.MISSING
    result = run(v, q)
    assert rules_of(result) == ["missing"]
    assert result.items[0].intervals == 30
    assert result.count("missing", "unfilled") == 30


def test_not_yet_due_intervals_are_not_missing() -> None:
    v, q = rows(1)
    q[0, 48:] = f.MISSING
    result = run(v, q, as_of_seconds=20_000 * 86400 + 48 * 900)
    assert result.items == ()
    assert result.count("missing", "intervals") == 0


def test_negative_on_delivered_but_not_on_net() -> None:
    v, q = rows(2)
    v[:, 5] = -3
    result = run(v, q, channels=[1, 2], days=[20_000, 20_000],
                 flows=[pb.FLOW_DIRECTION_DELIVERED, pb.FLOW_DIRECTION_NET])
    neg = [i for i in result.items if i.rule == "negative"]
    assert [i.channel_id for i in neg] == [1]
    assert result.qualities[0, 5] & f.FAILED_NEGATIVE
    assert not result.qualities[1, 5] & f.FAILED_NEGATIVE


def test_high_and_low_limit_scale_with_interval_length() -> None:
    v, q = rows(1)
    v[0, 3] = 25_001  # limit 100000/h -> 25000 per 15 min
    v[0, 4] = 25_000
    result = run(v, q)
    assert result.qualities[0, 3] & f.FAILED_HIGH_LIMIT
    assert not result.qualities[0, 4] & f.FAILED_HIGH_LIMIT
    text = "[rulesets.default.low_limit]\nenabled = true\nmin_per_hour = 401\n[rulesets.default.high_limit]\nenabled = false\n"
    v2, q2 = rows(1, value=101)
    v2[0, 7] = 100  # ceil(401/4) = 101
    result = run(v2, q2, text)
    assert [i.rule for i in result.items] == ["low_limit"]
    assert result.qualities[0, 7] & f.FAILED_LOW_LIMIT


def test_per_row_high_limit_override() -> None:
    v, q = rows(2)
    result = run(v, q, channels=[1, 2], days=[20_000, 20_000],
                 high_limit_per_hour=np.array([400, 0], dtype=np.int64))
    assert {i.channel_id for i in result.items if i.rule == "high_limit"} == {1}


def test_spike_compares_highest_with_third_highest() -> None:
    present = np.ones((3, 6), dtype=np.bool_)
    values = np.array([
        [1000, 1000, 1000, 1000, 1000, 4001],  # 4001 > 1000 * 4
        [1000, 1000, 1000, 1000, 1000, 4000],  # not above
        [1000, 1000, 1000, 1000, 4001, 4001],  # two high ones: third is 1000 still
    ], dtype=np.int64)
    mask = val.spike(values, present, SpikeRule(percent=300, min_value=1000))
    assert mask[0].tolist() == [False] * 5 + [True]
    assert not mask[1].any()
    assert mask[2].tolist() == [False] * 4 + [True, True]
    # Below min_value: never a spike.
    assert not val.spike(values // 10, present, SpikeRule(percent=300, min_value=1000)).any()


def test_spike_ignores_missing_intervals() -> None:
    values = np.array([[5000, 9999, 9999, 9999, 1000, 1000], [5000, 9999, 9999, 9999, 9999, 1000]], dtype=np.int64)
    present = np.array([[True, False, False, False, True, True], [True, False, False, False, False, True]])
    mask = val.spike(values, present, SpikeRule())
    assert mask[0].tolist() == [True] + [False] * 5
    assert not mask[1].any()  # fewer than three values: no third-highest


def test_zero_run_on_active_meter_suppressed_by_outage() -> None:
    v, q = rows(3, value=100)
    v[:, 10:60] = 0  # 12.5 hours of zeros
    q[1, 30] = f.POWER_FAIL  # outage splits the run: 5 h + 7.25 h
    result = run(v, q, channels=[1, 2, 3], days=[20_000] * 3, active=[True, True, False])
    zero = [i for i in result.items if i.rule == "zero_run"]
    assert [i.channel_id for i in zero] == [1]
    assert zero[0].intervals == 50
    assert not (result.qualities[1] & f.FAILED_ZERO_RUN).any()
    assert not (result.qualities[2] & f.FAILED_ZERO_RUN).any()


def test_zero_run_crosses_midnight_of_consecutive_days() -> None:
    grid = RowGrid(np.array([1, 1]), np.array([10, 11]), 3600)
    values = np.ones((2, 24), dtype=np.int64)
    values[0, 18:] = 0
    values[1, :6] = 0  # 12 h across midnight
    qualities = np.zeros_like(values)
    present = np.ones_like(values, dtype=np.bool_)
    mask = val.zero_run(grid, values, qualities, present, np.array([True, True]), ZeroRunRule(min_hours=12))
    assert mask.sum() == 12
    grid2 = RowGrid(np.array([1, 2]), np.array([10, 11]), 3600)  # different channels: no run
    assert not val.zero_run(grid2, values, qualities, present, np.array([True, True]), ZeroRunRule()).any()


def test_flat_line_counts_equal_values() -> None:
    grid = RowGrid(np.array([1]), np.array([10]), 3600)
    values = np.arange(24, dtype=np.int64).reshape(1, 24) + 1
    values[0, 5:17] = 42  # 12 equal values
    present = np.ones_like(values, dtype=np.bool_)
    mask = val.flat_line(grid, values, present, FlatLineRule(min_hours=12))
    assert np.flatnonzero(mask[0]).tolist() == list(range(5, 17))
    assert not val.flat_line(grid, values, present, FlatLineRule(min_hours=13)).any()
    present[0, 10] = False  # a gap breaks the line
    assert not val.flat_line(grid, values, present, FlatLineRule(min_hours=12)).any()


def test_time_tolerance_clock_set_and_clock_error() -> None:
    v, q = rows(2)
    q[0, 8] = f.CLOCK_SET
    result = run(v, q, channels=[1, 2], days=[20_000] * 2, clock_error_seconds=np.array([0, 121]))
    items = [i for i in result.items if i.rule == "time_tolerance"]
    assert [(i.channel_id, i.intervals) for i in items] == [(1, 1), (2, 96)]
    assert result.qualities[0, 8] & f.FAILED_TIME_TOLERANCE


def test_meter_status_flags_open_items_and_mark_suspect() -> None:
    v, q = rows(1)
    q[0, 1] = f.TAMPER
    q[0, 2:4] = f.OVERFLOW
    q[0, 6] = f.POWER_FAIL  # not listed by default
    result = run(v, q)
    items = [i for i in result.items if i.rule == "meter_status"]
    assert [i.intervals for i in items] == [3]
    assert result.qualities[0, 1] & f.SUSPECT
    assert not result.qualities[0, 6] & f.SUSPECT


def test_usage_on_inactive_meter() -> None:
    v, q = rows(2)
    v[1] = 0
    v[1, 50] = 4
    result = run(v, q, channels=[1, 2], days=[20_000] * 2, active=[False, False])
    items = [i for i in result.items if i.rule == "inactive_usage"]
    assert [(i.channel_id, i.intervals) for i in items] == [(1, 96), (2, 1)]


def test_disabled_rule_does_not_run() -> None:
    v, q = rows(1, value=1000)
    v[0, 40] = 20_000
    result = run(v, q, "[rulesets.default.spike]\nenabled = false\n")
    assert result.items == ()


def test_rerun_is_idempotent() -> None:
    v, q = rows(1, value=1000)
    v[0, 40] = 20_000
    q[0, 50:54] = f.MISSING
    engine = VeeEngine(default_config())
    first = engine.run(batch(v, q))
    second = engine.run(batch(first.values, first.qualities))
    assert np.array_equal(first.values, second.values)
    assert np.array_equal(first.qualities, second.qualities)
    assert first.items == second.items


def test_zero_run_ignores_export_channels_by_default() -> None:
    v, q = rows(2, value=100)
    v[:, :] = 0  # a whole day of zeros on both channels
    result = run(v, q, channels=[1, 2], days=[20_000] * 2,
                 flows=[pb.FLOW_DIRECTION_DELIVERED, pb.FLOW_DIRECTION_RECEIVED])
    zero = [i for i in result.items if i.rule == "zero_run"]
    assert [i.channel_id for i in zero] == [1]
    assert not (result.qualities[1] & f.FAILED_ZERO_RUN).any()
