"""``meterhub demo`` fleet of DLMS meters: whole days of history, read once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from simulators.base import DemoFleet
from simulators.dlms.server import CAPTURE_OBJECTS, MeterFleet, SimulatorConfig

# Import and export channels of load profile 1.
CHANNELS = len(CAPTURE_OBJECTS) - 2


@contextlib.asynccontextmanager
async def demo_fleet(*, meters: int, start: datetime, days: int, interval_minutes: int) -> AsyncIterator[DemoFleet]:
    end = start + timedelta(days=days)
    config = SimulatorConfig(meters=meters, history_start=start, history_end=end,
                             interval_seconds=interval_minutes * 60, max_pdu_size=4096)
    async with MeterFleet(config) as fleet:
        adapter_config: dict[str, Any] = {
            "type": "dlms",
            "meters": [{"meter_id": e.meter_id, "host": e.host, "port": e.port} for e in fleet.endpoints],
            "start": start.isoformat(),
            "poll_seconds": 0,
            "max_pdu_size": 4096,
            "max_days_per_read": max(days, 1),
            "concurrency": 32,
            "retries": 2,
            "backoff_initial_seconds": 0.2,
        }
        per_day = 86400 // (interval_minutes * 60)
        yield DemoFleet(tuple(e.meter_id for e in fleet.endpoints), adapter_config,
                        expected_intervals=meters * days * per_day * CHANNELS)
