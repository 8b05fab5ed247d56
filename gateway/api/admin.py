"""AdminService: meters known to ingest, source counters, dead letters."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from sqlalchemy import Engine

from gateway.api.pagination import InvalidArgument, decode_token, encode_token, fingerprint, page_size
from gateway.api.status import maps_errors
from gateway.clock import Clock, system_clock
from gateway.pipeline import IngestPipeline
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from store import repository as repo


class AdminServicer(adm_grpc.AdminServiceServicer):
    def __init__(self, engine: Engine, pipeline: IngestPipeline, clock: Clock = system_clock) -> None:
        self._engine = engine
        self._pipeline = pipeline
        self._clock = clock

    @maps_errors
    async def UpsertMeters(self, request: adm.UpsertMetersRequest,
                           context: grpc.aio.ServicerContext[Any, Any]) -> adm.UpsertMetersResponse:
        rows: list[tuple[str, int, int, str]] = []
        for i, m in enumerate(request.meters):
            if not m.meter_id:
                raise InvalidArgument(f"meters[{i}].meter_id is empty")
            if m.multiplier < 0:
                raise InvalidArgument(f"meters[{i}].multiplier must not be negative")
            rows.append((m.meter_id, m.status or adm.METER_STATUS_ACTIVE, m.multiplier or 1,
                         m.meter_class or "default"))
        created, updated = await asyncio.to_thread(self._upsert, rows)
        self._pipeline.forget_meters()
        return adm.UpsertMetersResponse(created_count=created, updated_count=updated)

    def _upsert(self, rows: list[tuple[str, int, int, str]]) -> tuple[int, int]:
        with self._engine.begin() as conn:
            return repo.upsert_meters(conn, rows, self._clock())

    @maps_errors
    async def ListMeters(self, request: adm.ListMetersRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> adm.ListMetersResponse:
        size = page_size(request.page_size)
        fp = fingerprint("meters")
        key = decode_token(request.page_token, fp)
        after = str(key[0]) if key else ""

        def load() -> list[repo.MeterRow]:
            with self._engine.connect() as conn:
                return repo.list_meters(conn, after, size + 1)

        rows = await asyncio.to_thread(load)
        response = adm.ListMetersResponse()
        if len(rows) > size:
            rows = rows[:size]
            response.next_page_token = encode_token([rows[-1].meter_id], fp)
        for r in rows:
            response.meters.add(meter_id=r.meter_id, status=r.status,  # type: ignore[arg-type]
                                multiplier=r.multiplier, meter_class=r.meter_class)
        return response

    @maps_errors
    async def ListSources(self, request: adm.ListSourcesRequest,
                          context: grpc.aio.ServicerContext[Any, Any]) -> adm.ListSourcesResponse:
        def load() -> list[tuple[object, ...]]:
            with self._engine.connect() as conn:
                return repo.list_sources(conn)

        response = adm.ListSourcesResponse()
        for (head_end, adapter_type, committed, rejected, reads, dead, last_commit,
             last_end) in await asyncio.to_thread(load):
            src = response.sources.add(
                head_end=head_end, adapter_type=adapter_type, batches_committed=committed,  # type: ignore[arg-type]
                batches_rejected=rejected, reads_committed=reads, dead_letters=dead)  # type: ignore[arg-type]
            if last_commit:
                src.last_commit_time.FromMicroseconds(int(last_commit))  # type: ignore[call-overload]
            if last_end:
                src.last_interval_end_time.FromMicroseconds(int(last_end))  # type: ignore[call-overload]
        return response

    @maps_errors
    async def ListDeadLetters(self, request: adm.ListDeadLettersRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> adm.ListDeadLettersResponse:
        size = page_size(request.page_size)
        fp = fingerprint("dead_letters", request.head_end)
        key = decode_token(request.page_token, fp)
        after = int(key[0]) if key else 0  # type: ignore[call-overload]

        def load() -> list[tuple[object, ...]]:
            with self._engine.connect() as conn:
                return repo.list_dead_letters(conn, request.head_end, after, size + 1)

        rows = await asyncio.to_thread(load)
        response = adm.ListDeadLettersResponse()
        if len(rows) > size:
            rows = rows[:size]
            response.next_page_token = encode_token([rows[-1][0]], fp)
        for rid, head_end, adapter_type, t_us, code, reason, ctype, payload in rows:
            dl = response.dead_letters.add(
                id=rid, head_end=head_end, adapter_type=adapter_type, reason_code=code,  # type: ignore[arg-type]
                reason=reason, content_type=ctype, payload=payload)  # type: ignore[arg-type]
            dl.receive_time.FromMicroseconds(int(t_us))  # type: ignore[call-overload]
        return response
