"""Waiting on outcomes in integration tests: poll with a deadline, never a blind sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, seconds: float) -> None:
    """Poll ``probe`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
