"""BillingService: determinants, bill cycles, billing-ready intervals and
critical-peak event days, computed by gateway.billing from the store."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
from sqlalchemy import Engine

from gateway.api.pagination import InvalidArgument, decode_token, encode_token, fingerprint, page_size
from gateway.api.status import maps_errors, maps_stream_errors
from gateway.billing import (
    BillingPeriod,
    BillingPolicy,
    CycleFailure,
    Determinants,
    TariffCalendar,
    billing_intervals,
)
from gateway.billing.config import BillingSettings, DayKind
from gateway.billing.errors import BillingError
from gateway.billing.loading import (
    UnknownServicePoint,
    compute_chunk,
    critical_peak_dates,
    cycle_chunks,
    load_service_points,
)
from gateway.billing.messages import cycle_message, determinants_message, timestamp
from gateway.billing.workers import CyclePool
from gateway.errors import MeterhubError, StatusCode
from meterhub.v1 import billing_service_pb2 as bill
from meterhub.v1 import billing_service_pb2_grpc as bill_grpc
from meterhub.v1 import model_pb2 as pb
from store import cis as cis_store

_FLOW_DIRECTIONS = {"delivered": pb.FLOW_DIRECTION_DELIVERED, "received": pb.FLOW_DIRECTION_RECEIVED}


class UnknownTariff(BillingError):
    status = StatusCode.NOT_FOUND
    reason = "UNKNOWN_TARIFF"


def period_from_message(message: bill.BillingPeriod, present: bool) -> BillingPeriod:
    if not present or not message.HasField("start_time") or not message.HasField("end_time"):
        raise InvalidArgument("period.start_time and period.end_time are required")
    for name, ts in (("start_time", message.start_time), ("end_time", message.end_time)):
        if ts.nanos:
            raise InvalidArgument(f"period.{name} must be a whole second")
    return BillingPeriod.from_epoch_seconds(message.start_time.seconds, message.end_time.seconds)


class BillingServicer(bill_grpc.BillingServiceServicer):
    def __init__(self, engine: Engine, settings: BillingSettings) -> None:
        self._engine = engine
        self._calendars: Mapping[str, TariffCalendar] = {
            name: TariffCalendar(tariff) for name, tariff in settings.tariffs.items()}
        self._policy = BillingPolicy(estimates_billable=settings.estimates_billable)
        self._cycles = (CyclePool(engine.url.render_as_string(hide_password=False), settings.tariffs,
                                  settings.estimates_billable, settings.cycle_workers)
                        if settings.cycle_workers > 0 else None)

    def close(self) -> None:
        if self._cycles is not None:
            self._cycles.close()

    def _tariff(self, name: str) -> TariffCalendar:
        calendar = self._calendars.get(name)
        if calendar is None:
            raise UnknownTariff(f"tariff {name!r} is not configured (known: {', '.join(sorted(self._calendars))})",
                                metadata={"tariff": name})
        return calendar

    def _compute(self, ids: list[str], period: BillingPeriod,
                 tariff: str) -> list[Determinants | CycleFailure]:
        """Load and compute one chunk (runs in a worker thread)."""
        with self._engine.connect() as conn:
            return compute_chunk(conn, ids, period, self._calendars, self._policy, tariff)

    @maps_errors
    async def GetBillingDeterminants(self, request: bill.GetBillingDeterminantsRequest,
                                     context: grpc.aio.ServicerContext[Any, Any]
                                     ) -> bill.GetBillingDeterminantsResponse:
        if not request.service_point_id:
            raise InvalidArgument("service_point_id is required")
        period = period_from_message(request.period, request.HasField("period"))
        if request.tariff:
            self._tariff(request.tariff)
        (result,) = await asyncio.to_thread(self._compute, [request.service_point_id], period, request.tariff)
        if isinstance(result, CycleFailure):
            raise _failure_error(result)
        return bill.GetBillingDeterminantsResponse(determinants=determinants_message(result))

    @maps_stream_errors
    async def StreamBillCycle(self, request: bill.StreamBillCycleRequest,
                              context: grpc.aio.ServicerContext[Any, Any]
                              ) -> AsyncIterator[bill.StreamBillCycleResponse]:
        period = period_from_message(request.period, request.HasField("period"))
        if request.tariff:
            self._tariff(request.tariff)
        chunks = await asyncio.to_thread(cycle_chunks, self._engine, list(request.service_point_ids),
                                         request.tariff)
        if self._cycles is not None:
            async for serialized in self._cycles.cycle(chunks, period, request.tariff):
                for data in serialized:
                    yield bill.StreamBillCycleResponse.FromString(data)
            return
        # In process: the next chunk is loaded and computed while this one is sent.
        pending: asyncio.Future[list[Determinants | CycleFailure]] | None = None
        for ids in chunks:
            # With an explicit list the tariff overrides each point's own; without
            # one it selects the points, which then bill on that same tariff.
            task = asyncio.ensure_future(asyncio.to_thread(self._compute, ids, period, request.tariff))
            if pending is not None:
                for item in await pending:
                    yield cycle_message(item)
            pending = task
        if pending is not None:
            for item in await pending:
                yield cycle_message(item)

    @maps_errors
    async def ListBillingIntervals(self, request: bill.ListBillingIntervalsRequest,
                                   context: grpc.aio.ServicerContext[Any, Any]) -> bill.ListBillingIntervalsResponse:
        if not request.service_point_id:
            raise InvalidArgument("service_point_id is required")
        period = period_from_message(request.period, request.HasField("period"))
        size = page_size(request.page_size)
        fp = fingerprint("billing_intervals", request.service_point_id, period.start_s, period.end_s,
                         request.tariff)
        key = decode_token(request.page_token, fp)
        offset = int(key[0]) if key and isinstance(key[0], int) else 0
        return await asyncio.to_thread(self._intervals, request.service_point_id, period, request.tariff, offset,
                                       size, fp)

    def _intervals(self, sp_id: str, period: BillingPeriod, tariff: str, offset: int, size: int,
                   fp: str) -> bill.ListBillingIntervalsResponse:
        with self._engine.connect() as conn:
            (data,) = load_service_points(conn, [sp_id], period, tariff_override=tariff)
            if isinstance(data, UnknownServicePoint):
                raise data
            calendar = self._tariff(data.tariff)
            cpp = critical_peak_dates(conn, data.tariff)
        response = bill.ListBillingIntervalsResponse()
        records = billing_intervals(period, data.segments, calendar, net_metered=data.net_metered,
                                    critical_peak_days=cpp)
        for index, r in enumerate(records):
            if index < offset:
                continue
            if index >= offset + size:
                response.next_page_token = encode_token([index], fp)
                break
            value = r.value_wh.to_integral_value()
            response.intervals.append(bill.BillingInterval(
                meter_id=r.meter_id, interval_start_time=timestamp(r.interval_start),
                interval_end_time=timestamp(r.interval_end), value_wh=int(value),
                flow_direction=_FLOW_DIRECTIONS[r.flow], vee_status=r.vee_status.value, rate_period=r.rate_period,
                quality=r.quality))
        return response

    @maps_errors
    async def SetCriticalPeakEvents(self, request: bill.SetCriticalPeakEventsRequest,
                                    context: grpc.aio.ServicerContext[Any, Any]
                                    ) -> bill.SetCriticalPeakEventsResponse:
        calendar = self._tariff(request.tariff)
        if not any(DayKind.CRITICAL_PEAK in rule.day_kinds for rule in calendar.tariff.rules):
            raise InvalidArgument(f"tariff {request.tariff!r} has no critical_peak day type rule")
        dates = []
        for text in request.event_dates:
            try:
                dates.append(dt.date.fromisoformat(text).isoformat())
            except ValueError:
                raise InvalidArgument(f"event date {text!r} is not YYYY-MM-DD") from None

        def write() -> None:
            with self._engine.begin() as conn:
                cis_store.set_critical_peak_days(conn, request.tariff, dates)

        await asyncio.to_thread(write)
        return bill.SetCriticalPeakEventsResponse(event_days=len(set(dates)))


def _failure_error(failure: CycleFailure) -> MeterhubError:
    error = MeterhubError(failure.message, reason=failure.reason,
                          metadata={"service_point_id": failure.service_point_id})
    error.status = {"UNKNOWN_SERVICE_POINT": StatusCode.NOT_FOUND, "UNKNOWN_TARIFF": StatusCode.NOT_FOUND,
                    "INVALID_BILLING_PERIOD": StatusCode.INVALID_ARGUMENT}.get(
        failure.reason, StatusCode.FAILED_PRECONDITION)
    return error
