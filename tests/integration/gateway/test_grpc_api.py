"""The gRPC API over real loopback connections to a running hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.api.status import error_info
from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from tests.support.batches import DAY, batch, interval_block


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    config = HubConfig(store=str(tmp_path / "hub.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"))
    async with Hub(config) as running:
        yield running


@pytest.fixture
async def channel(hub: Hub) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(hub.grpc_target) as ch:
        await adm_grpc.AdminServiceStub(ch).UpsertMeters(adm.UpsertMetersRequest(
            meters=[adm.Meter(meter_id=f"M{i}") for i in range(5)]))
        yield ch


def day_range(days: int = 1) -> rs.IntervalBlockFilter:
    f = rs.IntervalBlockFilter()
    f.start_time.FromDatetime(DAY)
    f.end_time.FromDatetime(DAY + timedelta(days=days))
    return f


async def test_submit_then_list_with_pagination(channel: grpc.aio.Channel) -> None:
    ingest = ing_grpc.IngestServiceStub(channel)
    blocks = [interval_block(f"M{i}", DAY + timedelta(minutes=15), [i * 100 + k for k in range(96)]) for i in range(5)]
    response = await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=batch(*blocks)))
    assert response.outcome.intervals_new == 480
    readings = rs_grpc.ReadingServiceStub(channel)
    seen: list[pb.IntervalBlock] = []
    token = ""
    pages = 0
    while True:
        page = await readings.ListIntervalBlocks(rs.ListIntervalBlocksRequest(
            filter=day_range(), page_size=2, page_token=token))
        seen.extend(b.block for b in page.blocks)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert {b.meter_id: list(b.values) for b in seen} == {
        f"M{i}": [i * 100 + k for k in range(96)] for i in range(5)}
    assert all(b.first_interval_end_time.ToDatetime().replace(tzinfo=DAY.tzinfo) == DAY + timedelta(minutes=15)
               for b in seen)


async def test_list_trims_to_the_requested_range(channel: grpc.aio.Channel) -> None:
    await ing_grpc.IngestServiceStub(channel).SubmitBatch(ing.SubmitBatchRequest(
        batch=batch(interval_block("M1", DAY + timedelta(minutes=15), list(range(96))))))
    f = rs.IntervalBlockFilter(meter_ids=["M1"])
    f.start_time.FromDatetime(DAY + timedelta(hours=1))
    f.end_time.FromDatetime(DAY + timedelta(hours=2))
    page = await rs_grpc.ReadingServiceStub(channel).ListIntervalBlocks(rs.ListIntervalBlocksRequest(filter=f))
    (block,) = page.blocks
    # The intervals inside 01:00-02:00 end at 01:15 .. 02:00: slots 4..7.
    assert list(block.block.values) == [4, 5, 6, 7]


async def test_client_streaming_ingest_and_server_streaming_export(channel: grpc.aio.Channel) -> None:
    async def requests() -> AsyncIterator[ing.StreamBatchesRequest]:
        for i in range(5):
            yield ing.StreamBatchesRequest(batch=batch(interval_block(f"M{i}", DAY + timedelta(minutes=15), [i] * 96)))

    response = await ing_grpc.IngestServiceStub(channel).StreamBatches(requests())
    assert response.batches_committed == 5
    assert response.outcome.intervals_new == 480
    exported = [b async for r in rs_grpc.ReadingServiceStub(channel).ExportIntervalBlocks(
        rs.ExportIntervalBlocksRequest(filter=day_range())) for b in r.blocks]
    assert sorted(b.block.meter_id for b in exported) == [f"M{i}" for i in range(5)]


async def test_rejections_carry_status_and_reason(channel: grpc.aio.Channel) -> None:
    ingest = ing_grpc.IngestServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=batch(interval_block("GHOST", DAY + timedelta(minutes=15), [1]))))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err.value)
    assert info is not None and info.reason == "UNKNOWN_METER" and info.domain == "meterhub.io"
    assert "GHOST" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=batch(interval_block("M1", DAY + timedelta(minutes=5), [1]))))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err.value)
    assert info is not None and info.reason == "MISALIGNED_INTERVAL"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await rs_grpc.ReadingServiceStub(channel).ListIntervalBlocks(rs.ListIntervalBlocksRequest(
            filter=day_range(), page_token="garbage"))
    assert error_info(err.value).reason == "INVALID_PAGE_TOKEN"  # type: ignore[union-attr]


async def test_subscribe_pushes_commits_and_resumes_from_cursor(channel: grpc.aio.Channel) -> None:
    readings = rs_grpc.ReadingServiceStub(channel)
    ingest = ing_grpc.IngestServiceStub(channel)
    call = readings.SubscribeIntervalBlocks(rs.SubscribeIntervalBlocksRequest())
    await asyncio.sleep(0.2)  # let the subscription take its starting cursor
    await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 96))))
    first = await asyncio.wait_for(call.read(), 10)
    assert first.block.block.meter_id == "M1"
    call.cancel()
    # Commits while disconnected are delivered after resuming from the cursor.
    await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=batch(interval_block("M2", DAY + timedelta(minutes=15), [2] * 96))))
    await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=batch(interval_block("M1", DAY + timedelta(minutes=15), [3]))))
    resumed = readings.SubscribeIntervalBlocks(rs.SubscribeIntervalBlocksRequest(cursor=first.cursor))
    second = await asyncio.wait_for(resumed.read(), 10)
    third = await asyncio.wait_for(resumed.read(), 10)
    resumed.cancel()
    assert second.block.block.meter_id == "M2"
    assert third.block.block.meter_id == "M1" and third.block.version == 2
    assert third.block.block.values[0] == 3


async def test_admin_counts_sources_and_meters(channel: grpc.aio.Channel) -> None:
    await ing_grpc.IngestServiceStub(channel).SubmitBatch(ing.SubmitBatchRequest(
        batch=batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 96), head_end="itron-north")))
    admin = adm_grpc.AdminServiceStub(channel)
    sources = await admin.ListSources(adm.ListSourcesRequest())
    (src,) = sources.sources
    assert src.head_end == "itron-north"
    assert src.reads_committed == 96
    assert src.last_interval_end_time.ToDatetime().replace(tzinfo=DAY.tzinfo) == DAY + timedelta(days=1)
    meters = await admin.ListMeters(adm.ListMetersRequest(page_size=3))
    assert len(meters.meters) == 3 and meters.next_page_token


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    status = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="meterhub.v1.IngestService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for response in stub.ServerReflectionInfo(ask()):
        names.update(s.name for s in response.list_services_response.service)
    assert {"meterhub.v1.IngestService", "meterhub.v1.ReadingService", "meterhub.v1.AdminService"} <= names
