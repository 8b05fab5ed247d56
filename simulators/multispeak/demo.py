"""`meterhub demo`: a MultiSpeak head-end for the demo fleet, read through the multispeak adapter."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from simulators.base import DemoFleet
from simulators.multispeak.fleet import meter_ids
from simulators.multispeak.server import Faults, HeadEndSimulator

DEMO_USER = "meterhub"
BAD_BLOCK_RATE = 0.01


@asynccontextmanager
async def demo_fleet(*, meters: int, start: datetime, days: int, interval_minutes: int) -> AsyncIterator[DemoFleet]:
    end = start + timedelta(days=days)
    password = secrets.token_urlsafe(16)  # per run: the demo shows authentication, not a shared secret
    ids = meter_ids(meters)
    # A few bad blocks show the dead-letter path; everything else lands.
    faults = Faults(bad_block_rate=BAD_BLOCK_RATE)
    sim = HeadEndSimulator(ids, interval_minutes=interval_minutes, start=start, end=end, user=DEMO_USER,
                           password=password, blocks_per_page=days, faults=faults)
    data = sim.data
    # Intervals of the blocks the fault injection spoils go to the dead-letter store, not the readings.
    expected = sum(len(ends) for m in ids for lo, hi in data.day_windows(start, end)
                   if (ends := data.ends(lo, hi)) and data.chance(m, ends[0], "bad") >= BAD_BLOCK_RATE)
    async with sim:
        config = {"type": "multispeak", "url": sim.url, "meters": list(ids), "user": DEMO_USER,
                  "password": password, "start": start.isoformat(), "end": end.isoformat(),
                  "interval_minutes": interval_minutes, "request_days": days, "poll_interval_seconds": 5.0,
                  "max_concurrency": 8, "poll_registers": True}
        yield DemoFleet(meter_ids=ids, adapter_config=config,
                        expected_intervals=expected)
