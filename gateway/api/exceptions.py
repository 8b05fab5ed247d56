"""ExceptionService: the VEE exception queue."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from sqlalchemy import Engine

from gateway.api.pagination import InvalidArgument, decode_token, encode_token, fingerprint, page_size
from gateway.api.status import maps_errors
from gateway.clock import Clock, system_clock
from gateway.errors import MeterhubError, StatusCode
from gateway.security import TokenAuthority, caller
from meterhub.v1 import vee_service_pb2 as vee
from meterhub.v1 import vee_service_pb2_grpc as vee_grpc
from store import exceptions as exc_store


class ExceptionNotFound(MeterhubError):
    status = StatusCode.NOT_FOUND
    reason = "EXCEPTION_NOT_FOUND"


def exception_message(row: exc_store.ExceptionRow) -> vee.ExceptionItem:
    item = vee.ExceptionItem(
        id=row.id, rule=row.rule, meter_id=row.meter_id, channel_id=row.channel_id,
        severity=row.severity, state=row.state, message=row.message,  # type: ignore[arg-type]
        assignee=row.assignee, resolution=row.resolution, resolved_by=row.resolved_by)
    item.start_time.FromMicroseconds(row.start_time_us)
    item.end_time.FromMicroseconds(row.end_time_us)
    item.create_time.FromMicroseconds(row.create_time_us)
    item.update_time.FromMicroseconds(row.update_time_us)
    return item


class ExceptionServicer(vee_grpc.ExceptionServiceServicer):
    def __init__(self, engine: Engine, authority: TokenAuthority | None, clock: Clock = system_clock) -> None:
        self._engine = engine
        self._authority = authority
        self._clock = clock

    @maps_errors
    async def ListExceptions(self, request: vee.ListExceptionsRequest,
                             context: grpc.aio.ServicerContext[Any, Any]) -> vee.ListExceptionsResponse:
        size = page_size(request.page_size)
        fp = fingerprint("exceptions", request.state, request.rule, list(request.meter_ids), request.min_severity)
        key = decode_token(request.page_token, fp)
        before = int(key[0]) if key else 0  # type: ignore[call-overload]

        def load() -> list[exc_store.ExceptionRow]:
            with self._engine.connect() as conn:
                return exc_store.list_exceptions(conn, state=request.state, rule=request.rule,
                                                 meter_ids=list(request.meter_ids),
                                                 min_severity=request.min_severity, before_id=before,
                                                 limit=size + 1)

        rows = await asyncio.to_thread(load)
        response = vee.ListExceptionsResponse()
        if len(rows) > size:
            rows = rows[:size]
            response.next_page_token = encode_token([rows[-1].id], fp)
        response.items.extend(exception_message(r) for r in rows)
        return response

    async def _update(self, item_id: int, **values: object) -> vee.ExceptionItem:
        def write() -> exc_store.ExceptionRow | None:
            with self._engine.begin() as conn:
                return exc_store.set_state(conn, item_id, self._clock(), **values)

        row = await asyncio.to_thread(write)
        if row is None:
            raise ExceptionNotFound(f"exception {item_id} does not exist")
        return exception_message(row)

    @maps_errors
    async def AssignException(self, request: vee.AssignExceptionRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> vee.AssignExceptionResponse:
        if not request.assignee:
            raise InvalidArgument("assignee is required")
        item = await self._update(request.id, assignee=request.assignee, state=exc_store.STATE_ASSIGNED)
        return vee.AssignExceptionResponse(item=item)

    @maps_errors
    async def ResolveException(self, request: vee.ResolveExceptionRequest,
                               context: grpc.aio.ServicerContext[Any, Any]) -> vee.ResolveExceptionResponse:
        if not request.resolution:
            raise InvalidArgument("resolution is required")
        who = caller(context, self._authority).name
        item = await self._update(request.id, resolution=request.resolution, resolved_by=who,
                                  state=exc_store.STATE_RESOLVED)
        return vee.ResolveExceptionResponse(item=item)
