"""Simulator -> adapter -> the real hub (ingest pipeline and SQLite store)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from sqlalchemy import select

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.config import parse_config
from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from simulators.modbus.server import ModbusSimFleet
from store import repository as repo
from store import schema as s
from store.engine import open_engine
from tests.integration.modbus.clocks import ManualClock

I = 900_000_000  # noqa: E741
DAY_US = 86_400_000_000
T0 = 1_790_000_000_000_000 - 1_790_000_000_000_000 % DAY_US


async def test_intervals_reach_the_store_exactly(tmp_path: Path) -> None:
    store = str(tmp_path / "hub.sqlite")
    clock = ManualClock(T0)
    async with ModbusSimFleet(servers=1, units_per_server=3, map_names=("sunspec_203",), clock=clock) as fleet:
        engine = open_engine(store)
        with engine.begin() as conn:
            repo.upsert_meters(conn, [(m.meter_id, 1, 1, "ci") for m in fleet.meters], 0)
        engine.dispose()
        async with Hub(HubConfig(store=store, grpc=GrpcConfig(listen="127.0.0.1:0"))) as hub:
            config = parse_config({"type": "modbus", "meters": fleet.adapter_meters(), "batch_seconds": 3600,
                                   "timeout_seconds": 0.5})
            adapter = ModbusAdapter("plant", config, hub.port_for("plant", "modbus"), clock=clock)
            task = asyncio.create_task(adapter.run())
            for k in range(5):
                rounds = adapter.stats.rounds
                if k:
                    clock.advance(I)
                async with asyncio.timeout(10):
                    while adapter.stats.rounds <= rounds:  # a round counts once its batch is committed
                        assert not task.done()
                        await asyncio.sleep(0.005)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with hub.engine.connect() as conn:
                rows = conn.execute(
                    select(s.meters.c.meter_id, s.interval_blocks.c["values"])
                    .join(s.channels, s.channels.c.id == s.interval_blocks.c.channel_id)
                    .join(s.meters, s.meters.c.id == s.channels.c.meter_pk)
                    .where(s.channels.c.flow_direction == 1)
                ).all()
    stored = {mid: np.frombuffer(values, "<i8") for mid, values in rows}
    assert set(stored) == {m.meter_id for m in fleet.meters}
    for meter in fleet.meters:
        want = [meter.energy_raw(T0 + k * I)[0] - meter.energy_raw(T0 + (k - 1) * I)[0] for k in range(1, 5)]
        assert list(stored[meter.meter_id][:4]) == want
