"""Items for channels estimated on too many consecutive days."""

from __future__ import annotations

from vee.items import ExceptionItem, Severity, utc
from vee.runs import SECONDS_PER_DAY, Int64Array


def long_estimation_items(
    channel_ids: Int64Array,
    last_days: Int64Array,
    consecutive_days: Int64Array,
    max_days: int,
    severity: Severity = Severity.WARNING,
    slots_per_day: int = 96,
) -> list[ExceptionItem]:
    """One item per channel whose run of consecutive estimated days (ending on
    ``last_days``, days since 1970) is longer than ``max_days``. The run is the
    item's time range, so the queue can merge items of one ongoing run."""
    out: list[ExceptionItem] = []
    for ch, last, n in zip(channel_ids.tolist(), last_days.tolist(), consecutive_days.tolist(), strict=True):
        if n <= max_days:
            continue
        out.append(ExceptionItem(
            "long_estimation", int(ch), utc((last - n + 1) * SECONDS_PER_DAY), utc((last + 1) * SECONDS_PER_DAY),
            severity, f"channel estimated on {n} consecutive days (limit {max_days})", n * slots_per_day,
        ))
    return out
