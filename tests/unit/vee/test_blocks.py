from __future__ import annotations

import numpy as np

from tests.unit.vee.builders import DAY
from vee import TimingProblem, check_block_timing, compare_with_stored, conflict_items, find_duplicate_reads
from vee import flags as f
from vee.runs import RowGrid


def test_block_timing_problems() -> None:
    codes = check_block_timing(
        first_end_seconds=np.array([900, 1000, 900, 900, 3600, 900]),
        interval_seconds=np.array([900, 900, 700, 900, 3600, 0]),
        value_counts=np.array([96, 96, 10, 0, 24, 5]),
        expected_interval_seconds=np.array([900, 900, 700, 900, 900, 900]),
    )
    assert codes.tolist() == [
        TimingProblem.OK, TimingProblem.MISALIGNED, TimingProblem.BAD_INTERVAL,
        TimingProblem.EMPTY, TimingProblem.INTERVAL_MISMATCH, TimingProblem.BAD_INTERVAL,
    ]


def test_compare_with_stored_finds_duplicates_and_conflicts() -> None:
    stored_v = np.array([[1, 2, 3, 4, 5]])
    stored_q = np.array([[0, 0, f.MISSING, f.ESTIMATED | f.ESTIMATE_LIKE_DAY, 0]])
    inc_v = np.array([[1, 9, 3, 8, 5]])
    inc_q = np.array([[0, 0, 0, 0, f.MISSING]])
    cmp = compare_with_stored(stored_v, stored_q, inc_v, inc_q)
    assert cmp.duplicate.tolist() == [[True, False, False, False, False]]
    assert cmp.conflict.tolist() == [[False, True, False, False, False]]
    grid = RowGrid(np.array([4]), np.array([DAY]), 17280)
    items = conflict_items(grid, cmp.conflict)
    assert [(i.rule, i.channel_id, i.intervals) for i in items] == [("conflict", 4, 1)]


def test_duplicate_reads_first_wins() -> None:
    d = find_duplicate_reads(np.array([1, 1, 2, 1, 1]), np.array([900, 900, 900, 1800, 900]), np.array([5, 5, 5, 6, 7]))
    assert d.duplicate.tolist() == [False, True, False, False, False]
    assert d.conflict.tolist() == [False, False, False, False, True]
