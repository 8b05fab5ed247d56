"""C12.22 benchmark: decoded interval reads/s and sessions/s of the adapter polling
the simulated fleet over loopback TCP, against a raw baseline measured in the same
run (the same ST64 load-profile bytes decoded by numpy, without the protocol), and
the ratio adapter / raw.

    python -m bench.c1222 [--meters 200] [--days 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from adapters.c1222 import create_adapter
from adapters.c1222.tables import decode_lp_blocks
from adapters.port import SubmitOutcome
from meterhub.v1 import model_pb2 as pb
from simulators.c1222.meter import MeterSpec, SimulatedMeter
from simulators.c1222.server import FleetConfig, FleetServer


class CountingPort:
    """Commits nothing, counts reads: isolates the adapter from the store."""

    def __init__(self) -> None:
        self.reads = 0

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        n = sum(len(b.values) for b in batch.interval_blocks)
        self.reads += n
        return SubmitOutcome(intervals_new=n, register_reads_new=len(batch.register_reads),
                             meter_events_new=len(batch.meter_events))

    async def watermark(self, meter_id: str, reading_type: pb.ReadingType, interval_seconds: int) -> None:
        return None

    async def dead_letter(self, payload: bytes, *, reason_code: str, reason: str,
                          content_type: str = "application/octet-stream") -> None:
        raise AssertionError(f"unexpected dead letter {reason_code}: {reason}")


async def main(meters: int, days: int) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    now = start + timedelta(days=days)
    spec = MeterSpec(lp_start=start, blocks=days + 1)
    # raw baseline: decode the same LP bytes straight from memory, for one second
    meter = SimulatedMeter(1, spec)
    raw = meter.lp_table(now, 0, spec.blocks * spec.layout().block_bytes)
    t0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() - t0 < 1.0:
        blocks = decode_lp_blocks(raw, spec.layout())
        rounds += 1
    raw_rate = rounds * blocks.values.size / (time.perf_counter() - t0)

    async with FleetServer(FleetConfig(meters, spec, lambda: now), "127.0.0.1", 0) as server:
        port = CountingPort()
        adapter = create_adapter("bench", {"type": "c1222", "fleet": {"port": server.port, "count": meters},
                                           "lookback_days": days + 1, "concurrency": 32,
                                           "read_registers": True}, port)
        adapter.clock = lambda: now
        t0 = time.perf_counter()
        outcome = await adapter.poll_once()
        elapsed = time.perf_counter() - t0
    rate = outcome.intervals / elapsed
    print(f"meters={meters} days={days} intervals={outcome.intervals:,} failed={outcome.meters_failed}")
    print(f"adapter <-> simulator (TCP, sessions, normalised): {rate:>12,.0f} reads/s "
          f"({outcome.meters_read / elapsed:,.1f} sessions/s, {elapsed:.2f} s)")
    print(f"raw baseline (numpy ST64 decode only):             {raw_rate:>12,.0f} reads/s")
    print(f"adapter / raw baseline: {rate / raw_rate:.3f}")


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.c1222", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=200, help="simulated meters (default 200)")
    parser.add_argument("--days", type=int, default=7, help="days of load profile read per meter (default 7)")
    args = parser.parse_args()
    asyncio.run(main(args.meters, args.days))


if __name__ == "__main__":
    cli()
