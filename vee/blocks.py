"""Checks on incoming blocks before they join the channel-day matrix:
interval size and alignment, duplicates and conflicting values."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from vee import flags as f
from vee.items import ExceptionItem, Severity, items_from_runs, utc
from vee.runs import SECONDS_PER_DAY, BoolArray, Int64Array, RowGrid


class TimingProblem(enum.IntEnum):
    OK = 0
    # The interval length does not divide a day (or is not positive).
    BAD_INTERVAL = 1
    # The block's interval length differs from the channel's.
    INTERVAL_MISMATCH = 2
    # The first interval end is not on an interval boundary (UTC).
    MISALIGNED = 3
    EMPTY = 4


def check_block_timing(
    first_end_seconds: Int64Array,
    interval_seconds: Int64Array,
    value_counts: Int64Array,
    expected_interval_seconds: Int64Array | None = None,
) -> Int64Array:
    """One TimingProblem code per block (vectorised over many blocks).

    A block is fine when its interval length is positive and divides 86400,
    matches the channel's (when given), its first interval END is a multiple of
    the length since the epoch, and it carries at least one value.
    """
    interval = np.asarray(interval_seconds, dtype=np.int64)
    safe = np.where(interval > 0, interval, 1)
    out = np.zeros(len(interval), dtype=np.int64)
    out[np.asarray(value_counts) <= 0] = TimingProblem.EMPTY
    out[(np.asarray(first_end_seconds) % safe) != 0] = TimingProblem.MISALIGNED
    if expected_interval_seconds is not None:
        out[interval != np.asarray(expected_interval_seconds)] = TimingProblem.INTERVAL_MISMATCH
    out[(interval <= 0) | (SECONDS_PER_DAY % safe != 0)] = TimingProblem.BAD_INTERVAL
    return out


@dataclass(frozen=True, slots=True)
class DayComparison:
    """Incoming channel-days against the stored ones (same shape)."""

    duplicate: BoolArray  # both actual, same value: a redelivery
    conflict: BoolArray  # both actual, different values


def compare_with_stored(
    stored_values: Int64Array,
    stored_qualities: Int64Array,
    incoming_values: Int64Array,
    incoming_qualities: Int64Array,
) -> DayComparison:
    """Duplicates and conflicts between incoming and stored actual reads."""
    actual_bits = f.MISSING | f.ESTIMATED | f.HUB_ESTIMATE_METHODS
    both = ((stored_qualities & actual_bits) == 0) & ((incoming_qualities & actual_bits) == 0)
    same = stored_values == incoming_values
    return DayComparison(duplicate=both & same, conflict=both & ~same)


def conflict_items(
    grid: RowGrid, conflict: BoolArray, severity: Severity = Severity.WARNING
) -> list[ExceptionItem]:
    """One 'conflict' item per run of conflicting intervals."""
    return items_from_runs(
        grid, conflict, rule="conflict", severity=severity,
        message="{n} intervals differ from the stored actual values",
    )


@dataclass(frozen=True, slots=True)
class ReadDuplicates:
    """Over flat reads: later reads of an already seen (channel, end time)."""

    duplicate: BoolArray  # same value as the first read of that interval
    conflict: BoolArray  # a different value


def find_duplicate_reads(channel_ids: Int64Array, end_seconds: Int64Array, values: Int64Array) -> ReadDuplicates:
    """Flag repeated intervals within one batch of flat reads (first read wins)."""
    order = np.lexsort((np.arange(len(channel_ids)), end_seconds, channel_ids))
    ch, t, v = channel_ids[order], end_seconds[order], values[order]
    repeat = np.zeros(len(order), dtype=np.bool_)
    if len(order) > 1:
        repeat[1:] = (ch[1:] == ch[:-1]) & (t[1:] == t[:-1])
    # The first read of each interval, broadcast to its repeats.
    group_first = np.maximum.accumulate(np.where(~repeat, np.arange(len(order)), 0))
    differs = v != v[group_first]
    dup = np.zeros(len(order), dtype=np.bool_)
    con = np.zeros(len(order), dtype=np.bool_)
    dup[order] = repeat & ~differs
    con[order] = repeat & differs
    return ReadDuplicates(dup, con)


def timing_item(channel_id: int, first_end_seconds: int, interval_seconds: int, count: int,
                problem: TimingProblem, severity: Severity = Severity.ERROR) -> ExceptionItem:
    """An item for a block refused by :func:`check_block_timing`."""
    length = max(interval_seconds, 1)
    start = first_end_seconds - length
    return ExceptionItem(
        "interval_timing", channel_id, utc(start), utc(start + length * max(count, 1)), severity,
        f"block timing: {problem.name.lower()} (first end {utc(first_end_seconds).isoformat()}, "
        f"interval {interval_seconds} s)", max(count, 0),
    )
