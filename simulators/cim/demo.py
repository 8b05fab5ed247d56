"""``simulators.cim.demo:demo_fleet`` for ``meterhub demo``: a simulated CIM
head-end on a free loopback port, read by the cim adapter with get requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from simulators.base import DemoFleet
from simulators.cim.fleet import Fleet
from simulators.cim.headend import GET_PATH, HeadEnd


@asynccontextmanager
async def demo_fleet(*, meters: int, start: datetime, days: int, interval_minutes: int) -> AsyncIterator[DemoFleet]:
    fleet = Fleet(meters, start, days, interval_minutes)
    head_end = HeadEnd(fleet)
    async with head_end.server("127.0.0.1", 0) as server:
        yield DemoFleet(
            meter_ids=fleet.meter_ids,
            adapter_config={
                "type": "cim",
                "head_end_url": f"http://127.0.0.1:{server.port}{GET_PATH}",
                "poll_from": fleet.start.isoformat(),
                "poll_interval_seconds": 3600,
                "poll_window_hours": 24,
            },
            expected_intervals=meters * fleet.intervals_per_meter,
        )
