"""The demo fleet on its accelerated clock, read by the adapter built from its config."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from adapters.modbus import create_adapter
from meterhub.v1 import model_pb2 as pb
from simulators.modbus.demo import demo_fleet
from tests.support.recording_port import RecordingPort


async def test_demo_fleet_delivers_expected_intervals() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    async with demo_fleet(meters=20, start=start, days=1, interval_minutes=60, speedup=86400 // 3,
                          lead_seconds=0.5) as fleet:
        assert fleet.adapter_config["type"] == "modbus"
        assert fleet.expected_intervals == 20 * 2 * 24
        port = RecordingPort()
        adapter = create_adapter("demo-modbus", fleet.adapter_config, port)
        task = asyncio.create_task(adapter.run())
        try:
            async with asyncio.timeout(20):
                while sum(len(b.values) for batch in port.batches for b in batch.interval_blocks) \
                        < fleet.expected_intervals:
                    assert not task.done()
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    blocks = [b for batch in port.batches for b in batch.interval_blocks]
    assert sum(len(b.values) for b in blocks) == fleet.expected_intervals
    assert {b.meter_id for b in blocks} == set(fleet.meter_ids)
    ends = {b.first_interval_end_time.ToDatetime(tzinfo=UTC) for b in blocks}
    assert min(ends) == datetime(2026, 11, 1, 1, tzinfo=UTC)
    flags = [q for b in blocks for q in (b.qualities or [0] * len(b.values))]
    assert sum(1 for q in flags if q & pb.QUALITY_FLAG_MISSING) <= len(flags) // 10
