from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.vee.builders import DAY, batch, rows
from vee import (
    DayTypeCalendar,
    History,
    RegisterSpans,
    VeeContext,
    VeeEngine,
    default_config,
    interpolate_gap,
    late_actual_replaces,
    parse_vee_toml,
)
from vee import flags as f
from vee.estimation import _scale_to


@given(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12), st.integers(1, 200))
def test_interpolation_sum_is_exact_and_each_estimate_within_one(a: int, b: int, n: int) -> None:
    est = interpolate_gap(a, b, n)
    # Exact total n(a+b)/2 rounded half up.
    assert sum(est) == (n * (a + b) + 1) // 2
    for k, y in enumerate(est, start=1):
        exact_times = a * (n + 1) + (b - a) * k  # x_k * (n + 1)
        assert abs(y * (n + 1) - exact_times) <= n + 1


def test_vectorised_interpolation_matches_reference() -> None:
    rng = np.random.default_rng(3)
    v = rng.integers(0, 10**9, (50, 96)).astype(np.int64)
    q = np.zeros_like(v)
    lengths = rng.integers(1, 9, 50)
    for r, n in enumerate(lengths.tolist()):
        q[r, 20 : 20 + n] = f.MISSING
    result = VeeEngine(parse_vee_toml("[rulesets.default]\n")).run(
        batch(v, q, channels=list(range(50)), days=[DAY] * 50)
    )
    for r, n in enumerate(lengths.tolist()):
        expected = interpolate_gap(int(v[r, 19]), int(v[r, 20 + n]), n)
        assert result.values[r, 20 : 20 + n].tolist() == expected


def test_large_values_interpolate_exactly() -> None:
    v, q = rows(1)
    v[0, 9], v[0, 12] = 2**61, 2**61 + 7
    q[0, 10:12] = f.MISSING
    result = VeeEngine(parse_vee_toml("[rulesets.default.high_limit]\nenabled = false\n")).run(batch(v, q))
    assert result.values[0, 10:12].tolist() == interpolate_gap(2**61, 2**61 + 7, 2)


def test_zero_fill_only_for_flagged_outages() -> None:
    v, q = rows(1)
    q[0, 30:50] = f.MISSING | f.POWER_FAIL
    q[0, 60:80] = f.MISSING  # not an outage, too long to interpolate, no history
    result = VeeEngine(default_config()).run(batch(v, q))
    assert result.values[0, 30:50].tolist() == [0] * 20
    assert all(x & f.ESTIMATE_ZERO_FILL and x & f.POWER_FAIL for x in result.qualities[0, 30:50].tolist())
    assert all(x & f.MISSING for x in result.qualities[0, 60:80].tolist())
    assert result.count("zero_fill", "filled") == 20


def test_midnight_gap_uses_history_endpoint() -> None:
    v, q = rows(1)
    v[0, 2] = 100
    q[0, :2] = f.MISSING
    hv, hq = rows(1)
    hv[0, -1] = 70
    ctx = VeeContext(history=History(np.array([1]), np.array([DAY - 1]), hv, hq))
    result = VeeEngine(default_config()).run(batch(v, q), ctx)
    assert result.values[0, :2].tolist() == interpolate_gap(70, 100, 2) == [80, 90]


def test_like_day_uses_same_day_type_excludes_dirty_days_and_holidays() -> None:
    cal = DayTypeCalendar("America/New_York", holidays=[])
    # DAY is a Friday; history: 28 days, weekdays 100, weekends 900.
    days = np.arange(DAY - 28, DAY, dtype=np.int64)
    types = cal(days)
    hv = np.where((types == 0)[:, None], 100, 900) * np.ones((28, 96), dtype=np.int64)
    hq = np.zeros_like(hv)
    hv[-1] = 5000  # the most recent weekday (Thursday) had an outage: excluded
    hq[-1, 3] = f.POWER_FAIL
    hist = History(np.ones(28, dtype=np.int64), days, hv, hq)
    v, q = rows(1)
    q[0, 40:60] = f.MISSING
    result = VeeEngine(default_config()).run(batch(v, q), VeeContext(history=hist, day_types=cal))
    assert result.values[0, 40:60].tolist() == [100] * 20
    # The same day declared a holiday: no holiday in history, nothing to copy.
    holiday = cal.local_date(DAY)
    cal_h = DayTypeCalendar("America/New_York", holidays=[holiday])
    result = VeeEngine(default_config()).run(batch(v, q), VeeContext(history=hist, day_types=cal_h))
    assert result.count("like_day", "filled") == 0


def test_like_day_average_of_n_days_rounds_half_up() -> None:
    days = np.array([DAY - 14, DAY - 7], dtype=np.int64)
    hv = np.array([[10] * 96, [11] * 96], dtype=np.int64)
    hist = History(np.ones(2, dtype=np.int64), days, hv, np.zeros_like(hv))
    v, q = rows(1)
    q[0, 0:20] = f.MISSING
    result = VeeEngine(default_config()).run(batch(v, q), VeeContext(history=hist))
    assert result.values[0, 0:20].tolist() == [11] * 20  # 10.5 -> 11


def test_estimates_scale_to_register_delta() -> None:
    v, q = rows(1)
    q[0, 40:44] = f.MISSING
    actual = int(v[0].sum() - v[0, 40:44].sum())
    start = DAY * 86400
    spans = RegisterSpans(np.array([1]), np.array([start]), np.array([start + 86400]), np.array([actual + 1001]))
    result = VeeEngine(default_config()).run(batch(v, q), VeeContext(registers=spans))
    assert int(result.values[0].sum()) == actual + 1001
    assert all(x & f.ESTIMATE_SCALED and x & f.ESTIMATE_INTERPOLATED for x in result.qualities[0, 40:44].tolist())
    assert result.count("scale_to_register", "scaled") == 4
    assert not [i for i in result.items if i.rule == "sum_check"]


def test_scaling_impossible_opens_sum_check_item() -> None:
    v, q = rows(1)
    q[0, 40:44] = f.MISSING
    start = DAY * 86400
    spans = RegisterSpans(np.array([1]), np.array([start]), np.array([start + 86400]), np.array([10]))
    result = VeeEngine(default_config()).run(batch(v, q), VeeContext(registers=spans))
    assert [i.rule for i in result.items] == ["sum_check"]


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=30), st.integers(0, 10**8))
def test_scale_to_meets_target_exactly(est: list[int], target: int) -> None:
    out = _scale_to(est, target)
    assert sum(out) == target
    assert all(x >= 0 for x in out)


def test_late_actual_merge_rule() -> None:
    stored = np.array([f.MISSING, f.ESTIMATED | f.ESTIMATE_LIKE_DAY, f.ESTIMATED | f.ESTIMATE_INTERPOLATED | f.EDITED,
                       f.VALIDATED, f.ESTIMATED | f.ESTIMATE_ZERO_FILL | f.APPROVED, f.MISSING])
    incoming = np.array([0, 0, 0, 0, 0, f.ESTIMATED])
    assert late_actual_replaces(stored, incoming).tolist() == [True, True, False, False, True, True]
    assert not late_actual_replaces(np.array([f.ESTIMATED]), np.array([f.ESTIMATED])).any()


def test_hub_estimates_are_redone_when_an_actual_arrives() -> None:
    engine = VeeEngine(default_config())
    v, q = rows(1)
    v[0, 9], v[0, 14] = 100, 200
    q[0, 10:14] = f.MISSING
    first = engine.run(batch(v, q))
    v2, q2 = first.values.copy(), first.qualities.copy()
    v2[0, 11], q2[0, 11] = 300, 0  # a late actual in the middle
    second = engine.run(batch(v2, q2))
    assert second.values[0, 10] == interpolate_gap(100, 300, 1)[0]
    assert second.values[0, 12:14].tolist() == interpolate_gap(300, 200, 2)
    assert second.qualities[0, 11] & f.VALIDATED


def test_edited_and_approved_values_are_kept() -> None:
    v, q = rows(1)
    q[0, 10] = f.ESTIMATED | f.ESTIMATE_LIKE_DAY | f.APPROVED
    v[0, 10] = 12345
    q[0, 11] = f.EDITED
    v[0, 11] = 777
    result = VeeEngine(parse_vee_toml("[rulesets.default.spike]\nenabled = false\n")).run(batch(v, q))
    assert result.values[0, 10:12].tolist() == [12345, 777]


@pytest.mark.parametrize("hours", [1.0, 3.0])
def test_max_gap_hours_is_configurable(hours: float) -> None:
    v, q = rows(1)
    q[0, 10:22] = f.MISSING  # 3 h
    config = parse_vee_toml(f"[rulesets.default.interpolate]\nmax_gap_hours = {hours}\n")
    result = VeeEngine(config).run(batch(v, q))
    assert result.count("interpolate", "filled") == (12 if hours >= 3 else 0)
