"""A clock the test moves by hand, shared by simulator and adapter."""

from __future__ import annotations

import asyncio


class ManualClock:
    def __init__(self, t_us: int) -> None:
        self.t_us = t_us
        self._moved = asyncio.Event()

    def now_us(self) -> int:
        return self.t_us

    async def sleep_until(self, t_us: int) -> None:
        while self.t_us < t_us:
            self._moved.clear()
            await self._moved.wait()

    def advance(self, us: int) -> None:
        self.t_us += us
        self._moved.set()
