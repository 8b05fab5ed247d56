"""BillingService: determinants, bill cycles, billing-ready intervals and
critical-peak event days, computed by gateway.billing from the store."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator, Mapping
from fractions import Fraction
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from sqlalchemy import Engine

from gateway.api.pagination import InvalidArgument, decode_token, encode_token, fingerprint, page_size
from gateway.api.status import maps_errors, maps_stream_errors
from gateway.billing import (
    BillingPeriod,
    BillingPolicy,
    CycleFailure,
    Demand,
    Determinants,
    TariffCalendar,
    billing_intervals,
    whole_and_remainder,
)
from gateway.billing.config import BillingSettings, DayKind
from gateway.billing.errors import BillingError
from gateway.billing.loading import (
    CHUNK,
    UnknownServicePoint,
    all_service_points,
    compute_chunk,
    critical_peak_dates,
    load_service_points,
)
from gateway.errors import MeterhubError, StatusCode
from meterhub.v1 import billing_service_pb2 as bill
from meterhub.v1 import billing_service_pb2_grpc as bill_grpc
from meterhub.v1 import model_pb2 as pb
from store import cis as cis_store

_FLOW_DIRECTIONS = {"delivered": pb.FLOW_DIRECTION_DELIVERED, "received": pb.FLOW_DIRECTION_RECEIVED}


class UnknownTariff(BillingError):
    status = StatusCode.NOT_FOUND
    reason = "UNKNOWN_TARIFF"


def _timestamp(instant: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(instant)
    return ts


def period_from_message(message: bill.BillingPeriod, present: bool) -> BillingPeriod:
    if not present or not message.HasField("start_time") or not message.HasField("end_time"):
        raise InvalidArgument("period.start_time and period.end_time are required")
    for name, ts in (("start_time", message.start_time), ("end_time", message.end_time)):
        if ts.nanos:
            raise InvalidArgument(f"period.{name} must be a whole second")
    return BillingPeriod.from_epoch_seconds(message.start_time.seconds, message.end_time.seconds)


def _demand_message(d: Demand) -> bill.MaxDemand:
    # Watts are exact Fractions; the wire carries the nearest whole watt.
    return bill.MaxDemand(watts=round(d.watts), interval_end_time=_timestamp(d.interval_end), period=d.period,
                          method=d.method, kw=str(d.kw))


def determinants_message(d: Determinants) -> bill.BillingDeterminants:
    out = bill.BillingDeterminants(
        service_point_id=d.service_point_id, tariff=d.tariff,
        period=bill.BillingPeriod(start_time=_timestamp(d.period.start), end_time=_timestamp(d.period.end)),
        total_delivered_wh=_whole(d.total_delivered_wh), total_received_wh=_whole(d.total_received_wh),
        total_net_wh=_whole(d.total_net_wh),
        counts=bill.IntervalCounts(expected=d.counts.expected, actual=d.counts.actual, estimated=d.counts.estimated,
                                   edited=d.counts.edited, missing=d.counts.missing, suspect=d.counts.suspect),
        completeness_ppm=d.completeness_ppm, billable=d.billable,
        not_billable_reasons=list(d.not_billable_reasons), meter_ids=list(d.meter_ids),
        total_delivered_kwh=str(d.total_delivered_kwh), total_received_kwh=str(d.total_received_kwh),
        total_net_kwh=str(d.total_net_kwh), net_metered=d.net_metered)
    for b in d.buckets:
        (delivered, received), den = whole_and_remainder(b.delivered_wh, b.received_wh)
        net = b.net_wh
        out.buckets.append(bill.TouBucket(
            period=b.period, delivered_wh=delivered[0], received_wh=received[0], net_wh=_whole(net),
            delivered_remainder_num=delivered[1], received_remainder_num=received[1], remainder_den=den,
            delivered_kwh=str(b.delivered_kwh), received_kwh=str(b.received_kwh), net_kwh=str(b.net_kwh)))
    if d.max_demand is not None:
        out.max_demand.CopyFrom(_demand_message(d.max_demand))
    out.max_demand_by_period.extend(_demand_message(x) for x in d.max_demand_by_period)
    return out


def _whole(value: Fraction) -> int:
    """Totals are whole Wh unless a prorated split leaves a fraction: floor it
    (buckets carry the exact remainders)."""
    return value.numerator // value.denominator


class BillingServicer(bill_grpc.BillingServiceServicer):
    def __init__(self, engine: Engine, settings: BillingSettings) -> None:
        self._engine = engine
        self._calendars: Mapping[str, TariffCalendar] = {
            name: TariffCalendar(tariff) for name, tariff in settings.tariffs.items()}
        self._policy = BillingPolicy(estimates_billable=settings.estimates_billable)

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
        chunks = (self._requested_chunks(list(request.service_point_ids)) if request.service_point_ids
                  else self._stored_chunks(request.tariff))
        # The next chunk is loaded and computed while this one is sent.
        pending: asyncio.Future[list[Determinants | CycleFailure]] | None = None
        for ids in chunks:
            # With an explicit list the tariff overrides each point's own; without
            # one it selects the points, which then bill on that same tariff.
            task = asyncio.ensure_future(asyncio.to_thread(self._compute, ids, period, request.tariff))
            if pending is not None:
                for item in await pending:
                    yield _cycle_message(item)
            pending = task
        if pending is not None:
            for item in await pending:
                yield _cycle_message(item)

    @staticmethod
    def _requested_chunks(ids: list[str]) -> Iterator[list[str]]:
        for i in range(0, len(ids), CHUNK):
            yield ids[i:i + CHUNK]

    def _stored_chunks(self, tariff: str) -> Iterator[list[str]]:
        with self._engine.connect() as conn:
            # Ids only: a 100,000-point list is a few MB; reading it up front
            # keeps no read transaction open while the cycle streams.
            chunks = list(all_service_points(conn, tariff))
        yield from chunks

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
                meter_id=r.meter_id, interval_start_time=_timestamp(r.interval_start),
                interval_end_time=_timestamp(r.interval_end), value_wh=int(value),
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


def _cycle_message(item: Determinants | CycleFailure) -> bill.StreamBillCycleResponse:
    if isinstance(item, CycleFailure):
        return bill.StreamBillCycleResponse(service_point_id=item.service_point_id,
                                            error=f"{item.reason}: {item.message}")
    return bill.StreamBillCycleResponse(service_point_id=item.service_point_id,
                                        determinants=determinants_message(item))
