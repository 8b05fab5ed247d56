"""The poller's clock, injected so tests and the demo can run meter time.

A clock tells the time in microseconds since the Unix epoch and sleeps until a
given time. ``ScaledClock`` runs meter time ``rate`` times faster than the wall
clock from a shared wall-clock anchor, so a simulator and an adapter holding two
copies of it (built from the same config) agree on the time: that is how the
demo shows a day of 15-minute intervals within seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# Sleep in slices, so a clock that stopped (demo end) never parks a task for ever in one call.
_MAX_SLEEP_SECONDS = 3600.0


class PollClock(Protocol):
    def now_us(self) -> int:
        """Microseconds since the Unix epoch (meter time)."""
        ...

    async def sleep_until(self, t_us: int) -> None:
        """Return once ``now_us() >= t_us``."""
        ...


def wall_clock_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class SystemClock:
    wall: Callable[[], int] = wall_clock_us

    def now_us(self) -> int:
        return self.wall()

    async def sleep_until(self, t_us: int) -> None:
        left = t_us - self.wall()
        while left > 0:
            await asyncio.sleep(min(left / 1e6, _MAX_SLEEP_SECONDS))
            left = t_us - self.wall()


@dataclass(frozen=True, slots=True)
class ScaledClock:
    """Meter time = ``start_us + (wall - anchor_wall_us) * rate``, held at ``start_us``
    before the anchor and at ``end_us`` (if given) after it is reached."""

    start_us: int
    anchor_wall_us: int
    rate: int
    end_us: int | None = None
    wall: Callable[[], int] = field(default=wall_clock_us, compare=False)

    def __post_init__(self) -> None:
        if self.rate < 1:
            raise ValueError("rate must be a positive integer")
        if self.end_us is not None and self.end_us < self.start_us:
            raise ValueError("end must not be before start")

    def now_us(self) -> int:
        t = self.start_us + max(0, self.wall() - self.anchor_wall_us) * self.rate
        return t if self.end_us is None else min(t, self.end_us)

    async def sleep_until(self, t_us: int) -> None:
        while self.now_us() < t_us:
            if self.end_us is not None and t_us > self.end_us:
                # Meter time stopped before t: wait until cancelled.
                await asyncio.sleep(_MAX_SLEEP_SECONDS)
                continue
            wall_target = self.anchor_wall_us + -(-(t_us - self.start_us) // self.rate)
            left = (wall_target - self.wall()) / 1e6
            await asyncio.sleep(min(max(left, 0.0005), _MAX_SLEEP_SECONDS))
