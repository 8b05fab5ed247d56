"""CisService: accounts, service points and meter installs from the CIS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
import numpy as np
from sqlalchemy import Engine

from gateway.api.exceptions import exception_message
from gateway.api.pagination import InvalidArgument, decode_token, encode_token, fingerprint, page_size
from gateway.api.status import maps_errors
from gateway.clock import Clock, system_clock
from gateway.errors import MeterhubError, StatusCode
from gateway.pipeline import IngestPipeline
from gateway.quality import ESTIMATED, MISSING
from meterhub.v1 import cis_service_pb2 as cis
from meterhub.v1 import cis_service_pb2_grpc as cis_grpc
from meterhub.v1 import model_pb2 as pb
from store import cis as cis_store
from store import exceptions as exc_store
from store import repository as repo

# Records are committed in groups so a long stream shows up in ingest lookups as it goes.
SYNC_COMMIT_EVERY = 500
FLAGGED = pb.QUALITY_FLAG_SUSPECT | pb.QUALITY_FLAG_FAILED_CONFLICT


class NotFound(MeterhubError):
    status = StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


def _us(ts: Any) -> int:
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


class CisServicer(cis_grpc.CisServiceServicer):
    def __init__(self, engine: Engine, pipeline: IngestPipeline, clock: Clock = system_clock) -> None:
        self._engine = engine
        self._pipeline = pipeline
        self._clock = clock

    @maps_errors
    async def SyncRecords(self, request_iterator: AsyncIterator[cis.SyncRecordsRequest],
                          context: grpc.aio.ServicerContext[Any, Any]) -> cis.SyncRecordsResponse:
        counts = cis.SyncRecordsResponse()
        pending: list[cis.SyncRecordsRequest] = []
        index = 0
        async for request in request_iterator:
            _validate(request, index)
            index += 1
            pending.append(request)
            if len(pending) >= SYNC_COMMIT_EVERY:
                await self._commit(pending, counts)
                pending = []
        await self._commit(pending, counts)
        return counts

    async def _commit(self, records: list[cis.SyncRecordsRequest], counts: cis.SyncRecordsResponse) -> None:
        if not records:
            return
        accounts = [(r.account.account_id, r.account.name, r.account.active)
                    for r in records if r.WhichOneof("record") == "account"]
        points = [cis_store.ServicePointRow(p.service_point_id, p.account_id, p.time_zone, p.tariff, p.net_metered)
                  for r in records if r.WhichOneof("record") == "service_point" for p in [r.service_point]]
        installs = [(cis_store.InstallRow(m.meter_id, m.service_point_id, _us(m.install_time),
                                          _us(m.remove_time) if m.HasField("remove_time") else 0,
                                          m.start_read_wh, m.final_read_wh), m.multiplier, m.meter_class)
                    for r in records if r.WhichOneof("record") == "meter_install" for m in [r.meter_install]]
        now = self._clock()

        def write() -> None:
            with self._engine.begin() as conn:
                cis_store.upsert_accounts(conn, accounts, now)
                cis_store.upsert_service_points(conn, points, now)
                cis_store.upsert_installs(conn, installs, now)

        await asyncio.to_thread(write)
        # Installs change meter status and multipliers: ingest must see them now.
        self._pipeline.forget_meters()
        counts.accounts += len(accounts)
        counts.service_points += len(points)
        counts.meter_installs += len(installs)

    @maps_errors
    async def ListServicePoints(self, request: cis.ListServicePointsRequest,
                                context: grpc.aio.ServicerContext[Any, Any]) -> cis.ListServicePointsResponse:
        size = page_size(request.page_size)
        fp = fingerprint("service_points", request.account_id)
        key = decode_token(request.page_token, fp)
        after = str(key[0]) if key else ""

        def load() -> list[cis_store.ServicePointRow]:
            with self._engine.connect() as conn:
                return cis_store.list_service_points(conn, request.account_id, after, size + 1)

        rows = await asyncio.to_thread(load)
        response = cis.ListServicePointsResponse()
        if len(rows) > size:
            rows = rows[:size]
            response.next_page_token = encode_token([rows[-1].service_point_id], fp)
        response.service_points.extend(_point_message(r) for r in rows)
        return response

    @maps_errors
    async def GetServicePointStatus(self, request: cis.GetServicePointStatusRequest,
                                    context: grpc.aio.ServicerContext[Any, Any]) -> cis.GetServicePointStatusResponse:
        if not request.HasField("start_time") or not request.HasField("end_time"):
            raise InvalidArgument("start_time and end_time are required")
        start_s, end_s = request.start_time.seconds, request.end_time.seconds
        return await asyncio.to_thread(self._status, request.service_point_id, start_s, end_s)

    def _status(self, service_point_id: str, start_s: int, end_s: int) -> cis.GetServicePointStatusResponse:
        with self._engine.connect() as conn:
            point = cis_store.service_point(conn, service_point_id)
            if point is None:
                raise NotFound(f"service point {service_point_id!r} does not exist")
            installs = cis_store.installs_for(conn, service_point_id, start_s * 1_000_000, end_s * 1_000_000)
            response = cis.GetServicePointStatusResponse(service_point=_point_message(point))
            for inst in installs:
                m = response.installs.add(meter_id=inst.meter_id, service_point_id=inst.service_point_id,
                                          start_read_wh=inst.start_read_wh, final_read_wh=inst.final_read_wh)
                m.install_time.FromMicroseconds(inst.install_time_us)
                if inst.remove_time_us:
                    m.remove_time.FromMicroseconds(inst.remove_time_us)
            meter_ids = sorted({i.meter_id for i in installs})
            if meter_ids:
                channel_ids = repo.find_channels(conn, meter_ids, 0, 0)
                rows = repo.query_blocks(conn, channel_ids, start_s // 86400, (end_s - 1) // 86400, None, 1 << 30)
                for _cid, day, _v, interval, _values, qualities, _u in rows:
                    q = np.frombuffer(qualities, dtype="<i4")
                    ends = day * 86400 + interval * np.arange(1, len(q) + 1)
                    q = q[(ends > start_s) & (ends <= end_s)]
                    response.flagged_intervals += int(np.count_nonzero(q & FLAGGED))
                    response.estimated_intervals += int(np.count_nonzero(q & ESTIMATED))
                    response.missing_intervals += int(np.count_nonzero(q & MISSING))
                for item in exc_store.list_exceptions(conn, state=-1, meter_ids=meter_ids, limit=1000):
                    response.open_exceptions.append(exception_message(item))
        return response


def _point_message(r: cis_store.ServicePointRow) -> cis.ServicePoint:
    return cis.ServicePoint(service_point_id=r.service_point_id, account_id=r.account_id, time_zone=r.time_zone,
                            tariff=r.tariff, net_metered=r.net_metered)


def _validate(request: cis.SyncRecordsRequest, index: int) -> None:
    kind = request.WhichOneof("record")
    where = f"record {index}"
    if kind is None:
        raise InvalidArgument(f"{where}: no record set")
    if kind == "account" and not request.account.account_id:
        raise InvalidArgument(f"{where}: account.account_id is empty")
    if kind == "service_point":
        p = request.service_point
        if not p.service_point_id:
            raise InvalidArgument(f"{where}: service_point.service_point_id is empty")
        try:
            ZoneInfo(p.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(f"{where}: service_point.time_zone {p.time_zone!r} is not an IANA zone") from None
    if kind == "meter_install":
        m = request.meter_install
        if not m.meter_id or not m.service_point_id:
            raise InvalidArgument(f"{where}: meter_install needs meter_id and service_point_id")
        if not m.HasField("install_time"):
            raise InvalidArgument(f"{where}: meter_install.install_time is required")
        if m.HasField("remove_time") and _us(m.remove_time) <= _us(m.install_time):
            raise InvalidArgument(f"{where}: meter_install.remove_time must be after install_time")
