"""The billing-ready interval record: what TOU billing needs per interval."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from gateway.billing.calendar import TariffCalendar
from gateway.billing.determinants import (
    DELIVERED,
    EDITED,
    ESTIMATE_BITS,
    MISSING,
    RECEIVED,
    SUSPECT,
    BillingPeriod,
    Int64Array,
    MeterSegment,
    gather_channel,
    segment_flow,
    stitch,
    utc_datetime,
)


class VeeStatus(enum.StrEnum):
    """One word per interval, by precedence: missing, suspect, edited, estimated, actual."""

    ACTUAL = "actual"
    ESTIMATED = "estimated"
    EDITED = "edited"
    MISSING = "missing"
    SUSPECT = "suspect"


def vee_status(quality: int) -> VeeStatus:
    if quality & MISSING:
        return VeeStatus.MISSING
    if quality & SUSPECT:
        return VeeStatus.SUSPECT
    if quality & EDITED:
        return VeeStatus.EDITED
    if quality & ESTIMATE_BITS:
        return VeeStatus.ESTIMATED
    return VeeStatus.ACTUAL


@dataclass(frozen=True, slots=True)
class BillingIntervalRecord:
    """One channel-interval as billing receives it.

    ``value_wh`` is the validated (or estimated / edited) value in Wh, exact;
    0 when missing. ``rate_period`` is the tariff period by its assign rule
    (``boundary.assign_by``), also under ``prorate``, where the determinants
    split the energy but a record still names one period. ``meter_id`` is ""
    for an interval no meter covered.
    """

    meter_id: str
    interval_start: dt.datetime
    interval_end: dt.datetime
    value_wh: Decimal
    vee_status: VeeStatus
    rate_period: str
    flow: str  # "delivered" | "received"
    quality: int


def _wh(count: int, exponent: int) -> Decimal:
    return Decimal(f"{count}E{exponent}") if exponent else Decimal(count)


def billing_intervals(
    period: BillingPeriod,
    segments: Sequence[MeterSegment],
    calendar: TariffCalendar,
    *,
    net_metered: bool = False,
    critical_peak_days: Collection[dt.date] = (),
) -> Iterator[BillingIntervalRecord]:
    """The records of a service point's period, by interval end, delivered
    before received. An interval split by a mid-interval meter exchange
    yields one record per meter (their values add up to the interval)."""
    stitched = stitch(period, segments, net_metered=net_metered)
    interval = stitched.interval_seconds
    weights = calendar.weights(stitched.start, stitched.end, interval, critical_peak_days)
    periods = calendar.periods
    flows = [DELIVERED, RECEIVED] if net_metered else [DELIVERED]
    parts: list[tuple[Int64Array, Int64Array, Int64Array, Int64Array, Int64Array]] = []
    meter_ids = ["", *(p.segment.meter_id for p in stitched.pieces)]
    for flow_ix, flow in enumerate(flows):
        for piece_ix, piece in enumerate(stitched.pieces, start=1):
            channel, sign = segment_flow(piece.segment, flow)
            k = np.arange(piece.lo, piece.hi, dtype=np.int64)
            if channel is None:
                v, q = np.zeros(len(k), dtype=np.int64), np.full(len(k), MISSING, dtype=np.int64)
            else:
                v, q = gather_channel(channel, stitched.start, piece.lo, piece.hi, interval,
                               10 ** (channel.power_of_ten_multiplier - stitched.exponent))
                if sign:
                    v = np.maximum(sign * v, 0)
            parts.append((k, np.full(len(k), flow_ix), np.full(len(k), piece_ix), v, q))
        gaps = np.flatnonzero(stitched.covered == 0)
        parts.append((gaps, np.full(len(gaps), flow_ix), np.zeros(len(gaps), dtype=np.int64),
                      np.zeros(len(gaps), dtype=np.int64), np.full(len(gaps), MISSING, dtype=np.int64)))
    k, flow_ixs, piece_ixs, values, qualities = (np.concatenate(cols) for cols in zip(*parts, strict=True))
    order = np.lexsort((piece_ixs, flow_ixs, k))
    for i in order.tolist():
        ki = int(k[i])
        start = stitched.start + ki * interval
        yield BillingIntervalRecord(
            meter_id=meter_ids[int(piece_ixs[i])],
            interval_start=utc_datetime(start),
            interval_end=utc_datetime(start + interval),
            value_wh=_wh(int(values[i]), stitched.exponent),
            vee_status=vee_status(int(qualities[i])),
            rate_period=periods[int(weights.designation[ki])],
            flow=flows[int(flow_ixs[i])],
            quality=int(qualities[i]),
        )
