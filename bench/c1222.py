"""C12.22 benchmark: decoded interval reads/s and sessions/s against the simulator,
with a raw baseline (ST64 block bytes decoded by numpy without the protocol) in the same run.

    python bench/c1222.py [--meters 200] [--days 7]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.c1222 import create_adapter
from adapters.c1222.tables import decode_lp_blocks
from simulators.c1222.meter import MeterSpec, SimulatedMeter
from simulators.c1222.server import FleetConfig, FleetServer
from tests.support.recording_port import RecordingPort


async def main(meters: int, days: int) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    now = start + timedelta(days=days)
    spec = MeterSpec(lp_start=start, blocks=days + 1)
    # raw baseline: decode the same LP bytes straight from memory
    meter = SimulatedMeter(1, spec)
    raw = meter.lp_table(now, 0, spec.blocks * spec.layout().block_bytes)
    t0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() - t0 < 1.0:
        blocks = decode_lp_blocks(raw, spec.layout())
        rounds += 1
    raw_rate = rounds * blocks.values.size / (time.perf_counter() - t0)

    async with FleetServer(FleetConfig(meters, spec, lambda: now), "127.0.0.1", 0) as server:
        port = RecordingPort()
        adapter = create_adapter("bench", {"type": "c1222", "fleet": {"port": server.port, "count": meters},
                                           "lookback_days": days + 1, "concurrency": 32,
                                           "read_registers": True}, port)
        adapter.clock = lambda: now
        t0 = time.perf_counter()
        outcome = await adapter.poll_once()
        elapsed = time.perf_counter() - t0
    print(f"meters={meters} days={days} intervals={outcome.intervals} failed={outcome.meters_failed}")
    print(f"decoded reads/s (adapter<->simulator, TCP, normalised): {outcome.intervals / elapsed:,.0f}")
    print(f"sessions/s: {outcome.meters_read / elapsed:,.1f}")
    print(f"raw baseline reads/s (numpy ST64 decode only): {raw_rate:,.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.meters, args.days))
