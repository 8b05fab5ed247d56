"""EditService: manual edits, estimate approval and the audit trail."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from sqlalchemy import Engine

from gateway import editing
from gateway.api.exceptions import exception_message
from gateway.api.pagination import InvalidArgument
from gateway.api.status import maps_errors
from gateway.clock import Clock, system_clock
from gateway.feed import stored_block
from gateway.pipeline import IngestPipeline
from gateway.security import TokenAuthority, caller
from meterhub.v1 import vee_service_pb2 as vee
from meterhub.v1 import vee_service_pb2_grpc as vee_grpc
from store import exceptions as exc_store
from store import repository as repo

# Re-validation after an edit: VEE on the edited channel-days, inside the edit's transaction.
Revalidate = editing.Stage


def _choice(selector: vee.ChannelSelector) -> editing.ChannelChoice:
    if not selector.meter_id:
        raise InvalidArgument("channel.meter_id is required")
    return editing.ChannelChoice(selector.meter_id, selector.flow_direction, selector.kind,
                                 selector.interval_seconds)


class EditServicer(vee_grpc.EditServiceServicer):
    def __init__(self, engine: Engine, pipeline: IngestPipeline, authority: TokenAuthority | None,
                 revalidate: Revalidate | None = None, clock: Clock = system_clock) -> None:
        self._engine = engine
        self._pipeline = pipeline
        self._authority = authority
        self._revalidate = revalidate
        self._clock = clock

    @maps_errors
    async def EditIntervals(self, request: vee.EditIntervalsRequest,
                            context: grpc.aio.ServicerContext[Any, Any]) -> vee.EditIntervalsResponse:
        if not request.reason_code:
            raise InvalidArgument("reason_code is required")
        if not request.edits:
            raise InvalidArgument("edits is empty")
        editor = caller(context, self._authority).name
        choice = _choice(request.channel)
        edits = [(e.interval_end_time.seconds, e.value) for e in request.edits]
        reason = request.reason_code + (f": {request.comment}" if request.comment else "")
        response = await asyncio.to_thread(self._edit, request.request_id, choice, edits, editor, reason)
        await self._pipeline.notify_commit()
        return response

    def _edit(self, request_id: str, choice: editing.ChannelChoice, edits: list[tuple[int, int]], editor: str,
              reason: str) -> vee.EditIntervalsResponse:
        now = self._clock()
        with self._engine.begin() as conn:
            key = f"edit:{request_id}" if request_id else ""
            if key and (done := repo.batch_outcome(conn, key)) is not None:
                return vee.EditIntervalsResponse(intervals_edited=int(done["intervals_edited"]))
            channel = editing.find_channel(conn, choice)
            written, items = editing.edit_intervals(conn, channel, edits, editor=editor, reason=reason, now_us=now,
                                                    revalidate=self._revalidate)
            ids = exc_store.open_exceptions(conn, items, now)
            opened = exc_store.list_exceptions(conn, ids=ids, limit=len(ids)) if ids else []
            if key:
                repo.record_batch(conn, key, editor, {"intervals_edited": len(edits)}, now)
            response = vee.EditIntervalsResponse(intervals_edited=len(edits))
            for day in written.days:
                row = repo.block_at(conn, channel.id, int(day))
                if row is not None:
                    version, interval, values, qualities, update_us = row
                    response.blocks.append(stored_block(channel, int(day), version, interval, values, qualities,
                                                        update_us))
            response.exceptions_opened.extend(exception_message(r) for r in opened)
        return response

    @maps_errors
    async def ApproveEstimates(self, request: vee.ApproveEstimatesRequest,
                               context: grpc.aio.ServicerContext[Any, Any]) -> vee.ApproveEstimatesResponse:
        if not request.HasField("start_time") or not request.HasField("end_time"):
            raise InvalidArgument("start_time and end_time are required")
        approver = caller(context, self._authority).name
        choice = _choice(request.channel)

        def approve() -> int:
            with self._engine.begin() as conn:
                channel = editing.find_channel(conn, choice)
                return editing.approve_estimates(conn, channel, request.start_time.seconds,
                                                 request.end_time.seconds, approver=approver,
                                                 reason=request.reason_code or "APPROVED", now_us=self._clock())

        count = await asyncio.to_thread(approve)
        await self._pipeline.notify_commit()
        return vee.ApproveEstimatesResponse(intervals_approved=count)

    @maps_errors
    async def GetAuditTrail(self, request: vee.GetAuditTrailRequest,
                            context: grpc.aio.ServicerContext[Any, Any]) -> vee.GetAuditTrailResponse:
        if not request.meter_ids:
            raise InvalidArgument("meter_ids is required")
        if not request.HasField("start_time") or not request.HasField("end_time"):
            raise InvalidArgument("start_time and end_time are required")

        def load() -> list[editing.AuditRecord]:
            with self._engine.connect() as conn:
                return editing.audit_trail(conn, list(request.meter_ids), request.start_time.seconds,
                                           request.end_time.seconds)

        records = await asyncio.to_thread(load)
        fmt = "csv" if request.format == vee.AUDIT_FORMAT_CSV else "json"
        content, content_type = editing.render_audit(records, fmt)
        response = vee.GetAuditTrailResponse(content=content, content_type=content_type)
        for r in records:
            entry = response.entries.add(actor=r.actor, action=r.action, reason=r.reason, meter_id=r.meter_id,
                                         new_value=r.new_value, new_quality=r.new_quality, version=r.version,
                                         old_value=r.old_value or 0, old_quality=r.old_quality or 0,
                                         had_old_value=r.old_value is not None)
            entry.change_time.FromMicroseconds(r.change_time_us)
            entry.interval_end_time.FromSeconds(r.interval_end_s)
        return response
