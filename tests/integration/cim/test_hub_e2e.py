"""End to end: simulated CIM head-end -> cim adapter started by the real hub
from its config -> store -> gRPC ReadingService, over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from gateway.config import GrpcConfig, HubConfig, SourceConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from simulators.cim.faults import FaultPlan
from simulators.cim.fleet import Fleet
from simulators.cim.headend import HeadEnd
from store import schema as s
from tests.support.net import free_port

START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[tuple[Hub, int]]:
    listen = free_port()
    config = HubConfig(store=str(tmp_path / "hub.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"),
                       sources=(SourceConfig("cim-north", "cim", {"type": "cim", "listen": f"127.0.0.1:{listen}"}),))
    async with Hub(config) as running:
        yield running, listen


async def wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"cim endpoint on port {port} never came up")


async def test_pushed_events_reach_the_store_and_the_api(hub: tuple[Hub, int]) -> None:
    running, listen = hub
    fleet = Fleet(12, START, 1)
    registered = fleet.meter_ids[:10]  # two meters the hub does not know
    faults = FaultPlan({"bad-code": 0.1}, seed=2)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        await adm_grpc.AdminServiceStub(channel).UpsertMeters(adm.UpsertMetersRequest(
            meters=[adm.Meter(meter_id=m) for m in registered]))
        await wait_for_port(listen)
        report = await HeadEnd(fleet, faults=faults).push(f"http://127.0.0.1:{listen}/cim/MeterReadings",
                                                          meters_per_message=6)
        assert report.results == {"PARTIAL": 2}
        request = rs.ListIntervalBlocksRequest(page_size=100)
        request.filter.start_time.FromDatetime(fleet.start)
        request.filter.end_time.FromDatetime(fleet.end)
        page = await rs_grpc.ReadingServiceStub(channel).ListIntervalBlocks(request)
    stored = {b.block.meter_id: list(b.block.values) for b in page.blocks}
    expected_meters = set(registered) - faults.log.damaged_meters
    assert set(stored) == expected_meters
    for meter in expected_meters:
        expected = fleet.expected(meter)
        assert stored[meter] == [expected[t] for t in sorted(expected)]
    with running.engine.connect() as conn:
        reasons = sorted(row.reason_code for row in conn.execute(select(s.dead_letters)))
    assert reasons == sorted(["UNKNOWN_METER"] * 2 + ["BAD_READING_TYPE"] * len(faults.log.damaged_meters))
