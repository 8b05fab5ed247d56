"""VEE at work inside the running hub: estimates, exceptions, late actuals,
edits with re-validation, all observed through the gRPC API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from meterhub.v1 import vee_service_pb2 as vee
from meterhub.v1 import vee_service_pb2_grpc as vee_grpc
from tests.support.batches import DAY, KWH_DELIVERED, batch, interval_block

M = pb.QUALITY_FLAG_MISSING


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    config = HubConfig(store=str(tmp_path / "h.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"))
    async with Hub(config) as hub, grpc.aio.insecure_channel(hub.grpc_target) as ch:
        await adm_grpc.AdminServiceStub(ch).UpsertMeters(adm.UpsertMetersRequest(
            meters=[adm.Meter(meter_id=m) for m in ("GAP", "SPIKE", "SUM")]))
        yield ch


async def submit(channel: grpc.aio.Channel, b: pb.ReadingBatch) -> ing.IngestOutcome:
    return (await ing_grpc.IngestServiceStub(channel).SubmitBatch(ing.SubmitBatchRequest(batch=b))).outcome


async def day_block(channel: grpc.aio.Channel, meter_id: str) -> rs.StoredIntervalBlock:
    request = rs.ListIntervalBlocksRequest(filter=rs.IntervalBlockFilter(meter_ids=[meter_id]))
    request.filter.start_time.FromDatetime(DAY)
    request.filter.end_time.FromDatetime(DAY + timedelta(days=1))
    (block,) = (await rs_grpc.ReadingServiceStub(channel).ListIntervalBlocks(request)).blocks
    return block


def gap_day() -> tuple[list[int], list[int]]:
    values = [75] * 96
    quals = [0] * 96
    for k in range(40, 44):
        values[k], quals[k] = 0, M
    values[44] = 100
    values[45:] = [100] * 51
    return values, quals


async def test_short_gap_is_interpolated_and_a_late_actual_replaces_it(channel: grpc.aio.Channel) -> None:
    values, quals = gap_day()
    subscription = rs_grpc.ReadingServiceStub(channel).SubscribeIntervalBlocks(
        rs.SubscribeIntervalBlocksRequest(meter_ids=["GAP"]))
    await asyncio.sleep(0.2)
    await submit(channel, batch(interval_block("GAP", DAY + timedelta(minutes=15), values, qualities=quals)))
    block = await day_block(channel, "GAP")
    assert list(block.block.values[39:45]) == [75, 80, 85, 90, 95, 100]
    for q in block.block.qualities[40:44]:
        assert q & pb.QUALITY_FLAG_ESTIMATED
        assert q & pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED
        assert not q & M
    assert block.block.qualities[0] & pb.QUALITY_FLAG_VALIDATED
    first = await asyncio.wait_for(subscription.read(), 10)
    assert first.block.version == 1
    # The meter's real reads arrive late: they replace the estimates in a new
    # version, the estimate is kept in history and subscribers hear of it.
    await submit(channel, batch(interval_block("GAP", DAY + timedelta(hours=10, minutes=15), [81, 82, 83, 84])))
    block = await day_block(channel, "GAP")
    assert list(block.block.values[40:44]) == [81, 82, 83, 84]
    assert not any(q & pb.QUALITY_FLAG_ESTIMATED for q in block.block.qualities[40:44])
    assert block.version == 2
    update = await asyncio.wait_for(subscription.read(), 10)
    subscription.cancel()
    assert update.block.version == 2
    assert list(update.block.block.values[40:44]) == [81, 82, 83, 84]
    trail_request = vee.GetAuditTrailRequest(meter_ids=["GAP"])
    trail_request.start_time.FromDatetime(DAY)
    trail_request.end_time.FromDatetime(DAY + timedelta(days=1))
    trail = await vee_grpc.EditServiceStub(channel).GetAuditTrail(trail_request)
    estimates = [e for e in trail.entries if e.action == "ESTIMATE"]
    revisions = [e for e in trail.entries if e.action == "SOURCE_REVISION" and e.had_old_value]
    assert [e.new_value for e in estimates] == [80, 85, 90, 95]
    assert [(e.old_value, e.new_value) for e in revisions] == [(80, 81), (85, 82), (90, 83), (95, 84)]


async def test_spike_opens_an_exception_and_keeps_the_value(channel: grpc.aio.Channel) -> None:
    values = [1000] * 96
    values[50] = 20_000
    await submit(channel, batch(interval_block("SPIKE", DAY + timedelta(minutes=15), values)))
    block = await day_block(channel, "SPIKE")
    assert block.block.values[50] == 20_000
    assert block.block.qualities[50] & pb.QUALITY_FLAG_FAILED_SPIKE
    items = (await vee_grpc.ExceptionServiceStub(channel).ListExceptions(
        vee.ListExceptionsRequest(rule="spike"))).items
    assert [i.meter_id for i in items] == ["SPIKE"]
    assert items[0].state == vee.EXCEPTION_STATE_OPEN
    # Redelivery does not open the item twice.
    await submit(channel, batch(interval_block("SPIKE", DAY + timedelta(minutes=15), values)))
    again = (await vee_grpc.ExceptionServiceStub(channel).ListExceptions(vee.ListExceptionsRequest(rule="spike"))).items
    assert len(again) == 1


async def test_sum_check_against_register_delta_opens_an_exception(channel: grpc.aio.Channel) -> None:
    register = pb.ReadingType()
    register.CopyFrom(KWH_DELIVERED)
    register.accumulation = pb.ACCUMULATION_CUMULATIVE
    b = batch(interval_block("SUM", DAY + timedelta(minutes=15), [100] * 96))  # 9,600 Wh by intervals
    for at, value in ((DAY, 50_000), (DAY + timedelta(days=1), 70_000)):  # 20,000 Wh by the register
        rr = b.register_reads.add(meter_id="SUM", reading_type=register, value=value)
        rr.read_time.FromDatetime(at)
    # Registers land first so the interval day is checked against them.
    registers_only = pb.ReadingBatch(source=b.source, register_reads=b.register_reads)
    await submit(channel, registers_only)
    await submit(channel, b)
    items = (await vee_grpc.ExceptionServiceStub(channel).ListExceptions(
        vee.ListExceptionsRequest(rule="sum_check"))).items
    assert [i.meter_id for i in items] == ["SUM"]
    assert items[0].severity == vee.SEVERITY_ERROR


async def test_edit_is_revalidated(channel: grpc.aio.Channel) -> None:
    values = [1000 + (k % 7) * 10 for k in range(96)]
    values[50] = 20_000
    await submit(channel, batch(interval_block("SPIKE", DAY + timedelta(minutes=15), values)))
    request = vee.EditIntervalsRequest(reason_code="CORRECTION", channel=vee.ChannelSelector(
        meter_id="SPIKE", flow_direction=pb.FLOW_DIRECTION_DELIVERED, interval_seconds=900))
    e = request.edits.add(value=1000)
    e.interval_end_time.FromDatetime(DAY + timedelta(minutes=15 * 51))
    response = await vee_grpc.EditServiceStub(channel).EditIntervals(request)
    (block,) = response.blocks
    q = block.block.qualities[50]
    assert q & pb.QUALITY_FLAG_EDITED
    assert not q & pb.QUALITY_FLAG_FAILED_SPIKE
    assert q & pb.QUALITY_FLAG_VALIDATED


async def test_gap_item_is_resolved_when_late_data_fills_it(channel: grpc.aio.Channel) -> None:
    # A gap too long to estimate without history opens a "missing" item...
    values = [50 + k % 5 for k in range(96)]
    quals = [0] * 96
    for k in range(20, 40):
        quals[k] = M
    await submit(channel, batch(interval_block("GAP", DAY + timedelta(minutes=15), values, qualities=quals)))
    queue = vee_grpc.ExceptionServiceStub(channel)
    open_items = (await queue.ListExceptions(vee.ListExceptionsRequest(
        rule="missing", state=vee.EXCEPTION_STATE_OPEN))).items
    assert [i.meter_id for i in open_items] == ["GAP"]
    # ...and the meter's late reads close it, because re-validation no longer reports it.
    await submit(channel, batch(interval_block("GAP", DAY + timedelta(minutes=15 * 21), values[20:40])))
    still_open = (await queue.ListExceptions(vee.ListExceptionsRequest(
        rule="missing", state=vee.EXCEPTION_STATE_OPEN))).items
    assert still_open == []
    resolved = (await queue.ListExceptions(vee.ListExceptionsRequest(
        rule="missing", state=vee.EXCEPTION_STATE_RESOLVED))).items
    assert [i.resolved_by for i in resolved] == ["vee"]


async def test_outage_gap_reported_by_the_meter_is_zero_filled_not_interpolated(channel: grpc.aio.Channel) -> None:
    """A gap the meter flags as a power outage keeps its flag through ingest,
    so VEE zero-fills it instead of interpolating across it."""
    values, quals = gap_day()
    for k in range(40, 44):
        quals[k] = M | pb.QUALITY_FLAG_POWER_FAIL
    await submit(channel, batch(interval_block("GAP", DAY + timedelta(minutes=15), values, qualities=quals),
                                key="outage"))
    stored = (await day_block(channel, "GAP")).block
    gap = range(40, 44)
    assert [stored.values[k] for k in gap] == [0, 0, 0, 0]
    for k in gap:
        q = stored.qualities[k]
        assert q & pb.QUALITY_FLAG_POWER_FAIL, "the meter's outage flag is kept"
        assert q & pb.QUALITY_FLAG_ESTIMATE_ZERO_FILL and not q & pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED
    assert stored.values[39] == 75 and stored.values[44] == 100
