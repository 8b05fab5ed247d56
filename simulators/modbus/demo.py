"""``meterhub demo`` fleet: Modbus meters on an accelerated clock, so a day of
intervals arrives within seconds."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from adapters.modbus.clock import ScaledClock, wall_clock_us
from simulators.base import DemoFleet
from simulators.modbus.server import ModbusSimFleet

DEMO_MAPS = ("sunspec_201", "sunspec_202", "sunspec_203", "sunspec_204", "float_submeter")
UNITS_PER_SERVER = 100
# Wall-clock seconds one simulated day takes by default.
# Wall-clock seconds one simulated day takes: slow enough that a poll round
# of the fleet fits an interval while the other fleets of `meterhub demo`
# share the process and its cores (50 meters: a day in a minute).
MIN_SECONDS_PER_DAY = 15
SECONDS_PER_DAY_PER_METER = 1.2
# Energy channels per meter (delivered and received).
CHANNELS = 2


@asynccontextmanager
async def demo_fleet(*, meters: int, start: datetime, days: int, interval_minutes: int,
                     speedup: int | None = None, lead_seconds: float = 8.0) -> AsyncIterator[DemoFleet]:
    """Meter time stands at ``start`` until ``lead_seconds`` after entry (the adapter
    takes its first reading then), runs ``speedup`` times faster than the wall clock
    and stops at ``start + days``, so the fleet yields exactly ``expected_intervals``."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    interval_s = interval_minutes * 60
    span_s = days * 86400
    seconds_per_day = max(MIN_SECONDS_PER_DAY, int(meters * SECONDS_PER_DAY_PER_METER))
    rate = speedup or max(1, 86400 // seconds_per_day)
    start_us = int(start.timestamp()) * 1_000_000
    start_us -= start_us % (interval_s * 1_000_000)
    anchor = wall_clock_us() + int(lead_seconds * 1_000_000)
    clock = ScaledClock(start_us=start_us, anchor_wall_us=anchor, rate=rate, end_us=start_us + span_s * 1_000_000)
    servers = max(1, math.ceil(meters / UNITS_PER_SERVER))
    fleet = ModbusSimFleet(servers=servers, units_per_server=math.ceil(meters / servers), map_names=DEMO_MAPS,
                           clock=clock, meters=meters)
    async with fleet:
        config = {
            "type": "modbus",
            "interval_seconds": interval_s,
            "alignment_tolerance_seconds": interval_s // 2,
            "batch_seconds": max(interval_s, 3600 - 3600 % interval_s),
            "register_read_seconds": 86400,
            "timeout_seconds": 1.0,
            "connections_per_host": 8,
            "clock": {"start_us": clock.start_us, "anchor_wall_us": clock.anchor_wall_us, "rate": clock.rate,
                      "end_us": clock.end_us},
            "meters": fleet.adapter_meters(),
        }
        yield DemoFleet(meter_ids=tuple(m.meter_id for m in fleet.meters), adapter_config=config,
                        expected_intervals=len(fleet.meters) * CHANNELS * span_s // interval_s,
                        live_until=(clock.anchor_wall_us + span_s * 1_000_000 // clock.rate) / 1e6)
