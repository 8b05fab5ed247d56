"""``simulators.c1222.demo:demo_fleet`` for ``meterhub demo``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from simulators.base import DemoFleet
from simulators.c1222.meter import MeterSpec, meter_id
from simulators.c1222.server import FleetConfig, FleetServer

CHANNELS = 2


@asynccontextmanager
async def demo_fleet(*, meters: int, start: datetime, days: int, interval_minutes: int) -> AsyncIterator[DemoFleet]:
    """``meters`` meters whose load profile runs from ``start`` (a UTC day) for ``days`` days;
    the adapter reads them all (lookback covers the whole span)."""
    first_day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    now = first_day + timedelta(days=days)
    spec = MeterSpec(lp_start=first_day, interval_minutes=interval_minutes, channels=CHANNELS, blocks=days + 1)
    config = FleetConfig(meters, spec, lambda: now)
    async with FleetServer(config, "127.0.0.1", 0) as server:
        adapter_config = {
            "type": "c1222",
            "fleet": {"host": "127.0.0.1", "port": server.port, "count": meters},
            "lookback_days": days + 1,
            "poll_interval_seconds": 60,
            "concurrency": 32,
            "timeout_seconds": 10,
        }
        per_meter = days * (1440 // interval_minutes) * CHANNELS
        yield DemoFleet(tuple(meter_id(n) for n in range(1, meters + 1)), adapter_config, meters * per_meter)
