"""Outbound CIM: one hub emits what it stores as IEC 61968-9 `created` events
to another hub's CIM endpoint; the second hub stores the same values."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc

from gateway.config import GrpcConfig, HubConfig, SourceConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from tests.support.batches import DAY, batch, interval_block
from tests.support.net import free_port


async def register(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as ch:
        await adm_grpc.AdminServiceStub(ch).UpsertMeters(adm.UpsertMetersRequest(meters=[adm.Meter(meter_id="OUT-1")]))


async def test_stored_blocks_flow_out_as_cim_events(tmp_path: Path) -> None:
    port = free_port()
    receiver_config = HubConfig(
        store=str(tmp_path / "b.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"),
        sources=(SourceConfig("from-hub-a", "cim", {"type": "cim", "listen": f"127.0.0.1:{port}"}),))
    sender_config = HubConfig(
        store=str(tmp_path / "a.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"),
        outbound=(SourceConfig("to-hub-b", "cim", {
            "type": "cim", "url": f"http://127.0.0.1:{port}/cim/MeterReadings"}),))
    values = [1000 + (k * 37) % 400 for k in range(96)]
    async with Hub(receiver_config) as hub_b, Hub(sender_config) as hub_a:
        await register(hub_a.grpc_target)
        await register(hub_b.grpc_target)
        async with grpc.aio.insecure_channel(hub_a.grpc_target) as ch:
            await ing_grpc.IngestServiceStub(ch).SubmitBatch(ing.SubmitBatchRequest(
                batch=batch(interval_block("OUT-1", DAY + timedelta(minutes=15), values))))
        request = rs.ListIntervalBlocksRequest(filter=rs.IntervalBlockFilter(meter_ids=["OUT-1"]))
        request.filter.start_time.FromDatetime(DAY)
        request.filter.end_time.FromDatetime(DAY + timedelta(days=1))
        async with grpc.aio.insecure_channel(hub_b.grpc_target) as ch:
            readings = rs_grpc.ReadingServiceStub(ch)
            for _ in range(100):
                blocks = (await readings.ListIntervalBlocks(request)).blocks
                if blocks:
                    break
                await asyncio.sleep(0.1)
    (block,) = blocks
    scale = 10 ** block.block.reading_type.power_of_ten_multiplier
    assert [v * scale for v in block.block.values] == values
