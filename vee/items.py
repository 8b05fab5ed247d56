"""Exception items: what a failed rule hands to the exception queue."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from vee.runs import RowGrid

SECONDS_PER_DAY = 86_400


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class ExceptionItem:
    """One finding: a rule failed on a channel over [start_time, end_time).

    ``start_time`` is the start of the first interval concerned and ``end_time``
    the end of the last one (UTC). Items are idempotent by (rule, channel_id,
    start_time, end_time): re-running VEE on the same data yields the same items.
    """

    rule: str
    channel_id: int
    start_time: datetime
    end_time: datetime
    severity: Severity
    message: str
    intervals: int


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def items_from_runs(
    grid: RowGrid,
    mask: npt.NDArray[np.bool_],
    *,
    rule: str,
    severity: Severity,
    message: str,
    min_intervals: int = 1,
) -> list[ExceptionItem]:
    """One item per run of flagged slots (runs continue across consecutive days
    of a channel). ``message`` may use {n} (intervals in the run)."""
    starts, ends = grid.runs(mask)
    lengths = ends - starts + 1
    keep = lengths >= min_intervals
    starts, ends, lengths = starts[keep], ends[keep], lengths[keep]
    if len(starts) == 0:
        return []
    start_sec = grid.slot_start_seconds(starts)
    end_sec = grid.slot_start_seconds(ends) + grid.interval_seconds
    channels = grid.channel_ids[starts // grid.slots]
    return [
        ExceptionItem(rule, int(ch), utc(int(s)), utc(int(e)), severity, message.format(n=int(n)), int(n))
        for ch, s, e, n in zip(channels.tolist(), start_sec.tolist(), end_sec.tolist(), lengths.tolist(), strict=True)
    ]
