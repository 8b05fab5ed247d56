"""Wall-clock access in one place, so tests and simulators can pass time in."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

# A clock returns microseconds since the Unix epoch.
Clock = Callable[[], int]


def system_clock() -> int:
    return time.time_ns() // 1000


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC) if us % 1_000_000 else datetime.fromtimestamp(
        us // 1_000_000, UTC)
