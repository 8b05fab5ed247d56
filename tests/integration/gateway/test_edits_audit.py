"""Edits, approvals and the audit trail over gRPC, with the editor's identity
taken from the authenticated caller."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from gateway.security import TokenAuthority, hash_token
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import vee_service_pb2 as vee
from meterhub.v1 import vee_service_pb2_grpc as vee_grpc
from tests.support.batches import DAY, batch, interval_block

OPERATOR = (("authorization", "Bearer op-token"),)


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    authority = TokenAuthority.from_entries(
        [{"name": "alice", "roles": ["operator"], "sha256": hash_token("op-token")}], "t")
    config = HubConfig(store=str(tmp_path / "h.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0", authority=authority))
    async with Hub(config) as hub, grpc.aio.insecure_channel(hub.grpc_target) as ch:
        with hub.engine.begin() as conn:
            from store.repository import upsert_meters

            upsert_meters(conn, [("M1", 1, 1, "res")], 0)
        quals = [0] * 96
        quals[10] = quals[11] = pb.QUALITY_FLAG_ESTIMATED  # head-end estimates
        await ing_grpc.IngestServiceStub(ch).SubmitBatch(ing.SubmitBatchRequest(batch=batch(
            interval_block("M1", DAY + timedelta(minutes=15), list(range(100, 196)), qualities=quals))),
            metadata=OPERATOR)
        yield ch


def selector() -> vee.ChannelSelector:
    return vee.ChannelSelector(meter_id="M1", flow_direction=pb.FLOW_DIRECTION_DELIVERED,
                               kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY, interval_seconds=900)


def edit_request(request_id: str = "") -> vee.EditIntervalsRequest:
    request = vee.EditIntervalsRequest(request_id=request_id, channel=selector(), reason_code="CORRECTION",
                                       comment="customer read")
    for slot, value in ((0, 7), (1, 8)):
        e = request.edits.add(value=value)
        e.interval_end_time.FromDatetime(DAY + timedelta(minutes=15 * (slot + 1)))
    return request


async def test_edit_makes_a_new_version_with_editor_and_reason(channel: grpc.aio.Channel) -> None:
    edits = vee_grpc.EditServiceStub(channel)
    response = await edits.EditIntervals(edit_request("r-1"), metadata=OPERATOR)
    assert response.intervals_edited == 2
    (block,) = response.blocks
    assert block.version == 2
    assert list(block.block.values[:3]) == [7, 8, 102]
    assert block.block.qualities[0] & pb.QUALITY_FLAG_EDITED
    # Retrying with the same request_id changes nothing.
    again = await edits.EditIntervals(edit_request("r-1"), metadata=OPERATOR)
    assert again.intervals_edited == 2
    assert not again.blocks
    trail_request = vee.GetAuditTrailRequest(meter_ids=["M1"])
    trail_request.start_time.FromDatetime(DAY)
    trail_request.end_time.FromDatetime(DAY + timedelta(days=1))
    trail = await edits.GetAuditTrail(trail_request, metadata=OPERATOR)
    edited = [e for e in trail.entries if e.action == "EDIT"]
    assert [(e.actor, e.old_value, e.new_value, e.had_old_value) for e in edited] == [
        ("alice", 100, 7, True), ("alice", 101, 8, True)]
    assert edited[0].reason == "CORRECTION: customer read"
    assert json.loads(trail.content)[0]["actor"] == "alice"


async def test_approve_estimates_and_export_csv(channel: grpc.aio.Channel) -> None:
    edits = vee_grpc.EditServiceStub(channel)
    request = vee.ApproveEstimatesRequest(channel=selector(), reason_code="REVIEWED")
    request.start_time.FromDatetime(DAY)
    request.end_time.FromDatetime(DAY + timedelta(days=1))
    assert (await edits.ApproveEstimates(request, metadata=OPERATOR)).intervals_approved == 2
    assert (await edits.ApproveEstimates(request, metadata=OPERATOR)).intervals_approved == 0
    trail_request = vee.GetAuditTrailRequest(meter_ids=["M1"], format=vee.AUDIT_FORMAT_CSV)
    trail_request.start_time.FromDatetime(DAY)
    trail_request.end_time.FromDatetime(DAY + timedelta(days=1))
    trail = await edits.GetAuditTrail(trail_request, metadata=OPERATOR)
    assert trail.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(trail.content.decode())))
    approved = [r for r in rows if r["action"] == "APPROVE"]
    assert [int(r["interval_end_s"]) for r in approved] == [int((DAY + timedelta(minutes=15 * k)).timestamp()) for k in (11, 12)]
    assert all(int(r["new_quality"]) & pb.QUALITY_FLAG_APPROVED for r in approved)


async def test_edit_needs_operator_role_and_a_reason(channel: grpc.aio.Channel) -> None:
    edits = vee_grpc.EditServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edits.EditIntervals(edit_request())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    request = edit_request()
    request.reason_code = ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edits.EditIntervals(request, metadata=OPERATOR)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = edit_request()
    request.channel.meter_id = "NOPE"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await edits.EditIntervals(request, metadata=OPERATOR)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Reads of the admin service are refused without a token too.
    with pytest.raises(grpc.aio.AioRpcError):
        await adm_grpc.AdminServiceStub(channel).ListMeters(adm.ListMetersRequest())
