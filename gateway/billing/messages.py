"""Determinants as meterhub.v1 messages: the wire form of gateway.billing's
exact results (whole Wh with rational remainders, exact kWh strings)."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

from google.protobuf import timestamp_pb2

from gateway.billing.determinants import CycleFailure, Demand, Determinants, whole_and_remainder
from meterhub.v1 import billing_service_pb2 as bill


def timestamp(instant: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(instant)
    return ts


def _demand_message(d: Demand) -> bill.MaxDemand:
    # Watts are exact Fractions; the wire carries the nearest whole watt.
    return bill.MaxDemand(watts=round(d.watts), interval_end_time=timestamp(d.interval_end), period=d.period,
                          method=d.method, kw=str(d.kw))


def determinants_message(d: Determinants) -> bill.BillingDeterminants:
    out = bill.BillingDeterminants(
        service_point_id=d.service_point_id, tariff=d.tariff,
        period=bill.BillingPeriod(start_time=timestamp(d.period.start), end_time=timestamp(d.period.end)),
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


def cycle_message(item: Determinants | CycleFailure) -> bill.StreamBillCycleResponse:
    if isinstance(item, CycleFailure):
        return bill.StreamBillCycleResponse(service_point_id=item.service_point_id,
                                            error=f"{item.reason}: {item.message}")
    return bill.StreamBillCycleResponse(service_point_id=item.service_point_id,
                                        determinants=determinants_message(item))
