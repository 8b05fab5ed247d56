from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from tests.unit.vee.builders import DAY, batch, rows
from vee import History, VeeContext, VeeEngine, default_config, long_estimation_items, parse_vee_toml
from vee import flags as f


def test_rows_in_any_order_come_back_in_batch_order() -> None:
    v, q = rows(4)
    v[2, 30] = 4444  # spike on channel 9's second day
    q[1, 50:52] = f.MISSING
    b = batch(v, q, channels=[9, 3, 9, 3], days=[DAY + 1, DAY, DAY, DAY + 1])
    result = VeeEngine(default_config()).run(b)
    assert result.values[2, 30] == 4444
    assert result.qualities[2, 30] & f.FAILED_SPIKE
    assert result.qualities[1, 50] & f.ESTIMATE_INTERPOLATED
    assert [(i.rule, i.channel_id) for i in result.items] == [("spike", 9)]
    assert result.estimated_rows.tolist() == [False, True, False, False]


def test_gap_across_midnight_within_batch_interpolates() -> None:
    v, q = rows(2)
    q[0, 94:] = f.MISSING
    q[1, :2] = f.MISSING  # one hour across midnight
    result = VeeEngine(default_config()).run(batch(v, q))
    assert result.count("interpolate", "filled") == 4


def test_meter_classes_select_rule_sets() -> None:
    v, q = rows(2)
    v[:, 5] = 30_000  # above default high limit, below commercial
    b = batch(v, q, channels=[1, 2], days=[DAY, DAY], meter_classes=["residential", "industrial"])
    result = VeeEngine(default_config()).run(b)
    assert [(i.rule, i.channel_id) for i in result.items] == [("high_limit", 1), ("spike", 1)]


def test_datetime64_days_are_accepted() -> None:
    v, q = rows(1)
    b = batch(v, q)
    b2 = type(b)(**{**{k: getattr(b, k) for k in b.__slots__}, "days": np.array(["2024-10-04"], dtype="datetime64[D]")})
    assert VeeEngine(default_config()).run(b2).items == ()


def test_duplicate_rows_and_bad_shapes_are_refused() -> None:
    v, q = rows(2)
    with pytest.raises(ValueError, match="unique"):
        VeeEngine(default_config()).run(batch(v, q, days=[DAY, DAY]))
    with pytest.raises(ValueError, match=r"\[2, 96\]"):
        VeeEngine(default_config()).run(batch(v[:, :95], q[:, :95]))


def test_history_request_covers_lookback_for_channels_with_gaps() -> None:
    v, q = rows(3)
    q[1, 5] = f.MISSING
    q[2, 7] = f.ESTIMATED | f.ESTIMATE_LIKE_DAY  # re-estimable
    b = batch(v, q, channels=[1, 2, 2], days=[DAY, DAY, DAY + 1])
    req = VeeEngine(default_config()).history_request(b)
    assert req.channel_ids.tolist() == [2]
    assert req.first_days.tolist() == [DAY - 28]
    assert req.last_days.tolist() == [DAY]


def test_long_estimation_counts_history_days() -> None:
    v, q = rows(2)
    q[:, 10:40] = f.MISSING
    hv, hq = rows(7)
    hq[:, 0] = f.ESTIMATED | f.ESTIMATE_LIKE_DAY  # previous 7 days each had estimates
    hist = History(np.ones(7, dtype=np.int64), np.arange(DAY - 7, DAY, dtype=np.int64), hv, hq)
    result = VeeEngine(default_config()).run(batch(v, q), VeeContext(history=hist))
    items = [i for i in result.items if i.rule == "long_estimation"]
    # Like-day history here is unusable (estimates), so days stay missing: nothing estimated now.
    assert items == []
    hq[:, 0] = f.ESTIMATED | f.ESTIMATE_INTERPOLATED | f.APPROVED  # approved estimates are kept; count them
    hq[:, 1:] = 0
    hist2 = History(hist.channel_ids, hist.days, hv, hq)
    q2 = np.zeros_like(q)
    q2[:, 10:12] = f.MISSING
    result = VeeEngine(default_config()).run(batch(v, q2), VeeContext(history=hist2))
    items = [i for i in result.items if i.rule == "long_estimation"]
    assert len(items) == 1
    assert items[0].start_time == dt.datetime.fromtimestamp((DAY - 7) * 86400, tz=dt.UTC)
    assert items[0].end_time == dt.datetime.fromtimestamp((DAY + 2) * 86400, tz=dt.UTC)
    assert "9 consecutive days" in items[0].message


def test_long_estimation_items_function() -> None:
    items = long_estimation_items(np.array([1, 2]), np.array([DAY, DAY]), np.array([3, 5]), max_days=3)
    assert [(i.channel_id, i.intervals) for i in items] == [(2, 5 * 96)]


def test_counts_cover_rules_and_outcomes() -> None:
    v, q = rows(1, value=1000)
    v[0, 3] = 9000
    q[0, 50:53] = f.MISSING
    result = VeeEngine(parse_vee_toml("[rulesets.default.missing]\nreport_estimated = true\n")).run(batch(v, q))
    assert result.count("spike", "failed") == 1
    assert result.count("spike", "items") == 1
    assert result.count("missing", "intervals") == 3
    assert result.count("missing", "items") == 1  # the info item for the estimated gap
    assert result.count("batch", "intervals") == 96
