"""CIS sync and the exception queue over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from gateway.api.status import error_info
from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import cis_service_pb2 as cis
from meterhub.v1 import cis_service_pb2_grpc as cis_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import vee_service_pb2 as vee
from meterhub.v1 import vee_service_pb2_grpc as vee_grpc
from store import exceptions as exc_store
from tests.support.batches import DAY, batch, interval_block


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with Hub(HubConfig(store=str(tmp_path / "h.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"))) as running:
        yield running


def exchange_records() -> list[cis.SyncRecordsRequest]:
    old = cis.MeterInstall(meter_id="OLD-1", service_point_id="SP-1", final_read_wh=1_234_000, multiplier=1)
    old.install_time.FromDatetime(DAY - timedelta(days=400))
    old.remove_time.FromDatetime(DAY + timedelta(hours=12))
    new = cis.MeterInstall(meter_id="NEW-1", service_point_id="SP-1", start_read_wh=0, multiplier=1)
    new.install_time.FromDatetime(DAY + timedelta(hours=12))
    return [
        cis.SyncRecordsRequest(account=cis.Account(account_id="A-1", name="Jones", active=True)),
        cis.SyncRecordsRequest(service_point=cis.ServicePoint(
            service_point_id="SP-1", account_id="A-1", time_zone="America/New_York", tariff="res-tou")),
        cis.SyncRecordsRequest(meter_install=old),
        cis.SyncRecordsRequest(meter_install=new),
    ]


async def test_sync_makes_meters_known_to_ingest_at_once(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        ingest = ing_grpc.IngestServiceStub(channel)
        reads = batch(interval_block("NEW-1", DAY + timedelta(hours=12, minutes=15), [5] * 48))
        with pytest.raises(grpc.aio.AioRpcError):
            await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=reads))

        async def records() -> AsyncIterator[cis.SyncRecordsRequest]:
            for r in exchange_records():
                yield r

        counts = await cis_grpc.CisServiceStub(channel).SyncRecords(records())
        assert (counts.accounts, counts.service_points, counts.meter_installs) == (1, 1, 2)
        assert (await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=reads))).outcome.intervals_new == 48
        partial = [5] * 40 + [0] * 8
        await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=batch(interval_block(
            "OLD-1", DAY + timedelta(minutes=15), partial,
            qualities=[0] * 40 + [pb.QUALITY_FLAG_MISSING] * 8))))
        status_request = cis.GetServicePointStatusRequest(service_point_id="SP-1")
        status_request.start_time.FromDatetime(DAY)
        status_request.end_time.FromDatetime(DAY + timedelta(days=1))
        status = await cis_grpc.CisServiceStub(channel).GetServicePointStatus(status_request)
    assert [i.meter_id for i in status.installs] == ["OLD-1", "NEW-1"]
    assert status.installs[0].final_read_wh == 1_234_000
    # OLD-1 has a full day row: 48 missing after 12:00 (removed) + 8 missing before; NEW-1: 48 missing before 12:00.
    assert status.missing_intervals == 56 + 48
    assert status.service_point.time_zone == "America/New_York"


async def test_sync_rejects_bad_records_with_their_position(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        async def records() -> AsyncIterator[cis.SyncRecordsRequest]:
            yield cis.SyncRecordsRequest(service_point=cis.ServicePoint(service_point_id="SP", time_zone="Mars/Base"))

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await cis_grpc.CisServiceStub(channel).SyncRecords(records())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "record 0" in (err.value.details() or "")
    assert "IANA" in (err.value.details() or "")


async def test_exception_queue_lists_assigns_and_resolves(hub: Hub) -> None:
    with hub.engine.begin() as conn:
        ids = exc_store.open_exceptions(conn, [
            exc_store.NewException("spike", 1, "M1", 0, 900_000_000, 2, "spike 900% over third-highest"),
            exc_store.NewException("sum_check", 1, "M1", 0, 86_400_000_000, 3, "intervals 10% below register"),
            exc_store.NewException("spike", 1, "M1", 0, 900_000_000, 2, "the same item again"),
        ], 1)
    assert len(ids) == 2
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        queue = vee_grpc.ExceptionServiceStub(channel)
        page = await queue.ListExceptions(vee.ListExceptionsRequest(page_size=1))
        assert [i.rule for i in page.items] == ["sum_check"]
        page2 = await queue.ListExceptions(vee.ListExceptionsRequest(page_size=1, page_token=page.next_page_token))
        assert [i.rule for i in page2.items] == ["spike"]
        assigned = await queue.AssignException(vee.AssignExceptionRequest(id=ids[0], assignee="ops-team"))
        assert assigned.item.state == vee.EXCEPTION_STATE_ASSIGNED
        resolved = await queue.ResolveException(vee.ResolveExceptionRequest(id=ids[0], resolution="meter replaced"))
        assert resolved.item.state == vee.EXCEPTION_STATE_RESOLVED
        assert resolved.item.resolved_by == "anonymous"
        open_items = await queue.ListExceptions(vee.ListExceptionsRequest(state=vee.EXCEPTION_STATE_OPEN))
        assert [i.id for i in open_items.items] == [ids[1]]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await queue.ResolveException(vee.ResolveExceptionRequest(id=999, resolution="x"))
        assert error_info(err.value).reason == "EXCEPTION_NOT_FOUND"  # type: ignore[union-attr]
