"""Reads what billing needs from the store, a chunk of service points at a time.

The engine modules of this package are pure; this one is the bridge: service
points, their meter installs overlapping the period, each meter's energy
channels (active energy in Wh, per interval) and their channel-day rows, in a
handful of set-based queries per chunk, so a 100,000-point cycle costs a few
hundred queries, not a few hundred thousand.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, Engine, and_, or_, select

from gateway.billing.calendar import TariffCalendar
from gateway.billing.config import SECONDS_PER_DAY
from gateway.billing.determinants import (
    BillingPeriod,
    BillingPolicy,
    ChannelDays,
    CycleFailure,
    Determinants,
    MeterSegment,
    ServicePointData,
    compute_cycle,
    utc_datetime,
)
from gateway.billing.errors import BillingError
from gateway.errors import StatusCode
from meterhub.v1 import model_pb2 as pb
from store import schema as s

# Service points per set of queries: keeps IN lists well inside SQLite's limits.
CHUNK = 400
_FLOWS = {
    int(pb.FLOW_DIRECTION_DELIVERED): "delivered",
    int(pb.FLOW_DIRECTION_RECEIVED): "received",
    int(pb.FLOW_DIRECTION_NET): "net",
}


class UnknownServicePoint(BillingError):
    status = StatusCode.NOT_FOUND
    reason = "UNKNOWN_SERVICE_POINT"


@dataclass(frozen=True, slots=True)
class _Channel:
    channel_id: int
    meter_id: str
    flow: str
    interval_seconds: int
    exponent: int


def service_point_ids(conn: Connection, tariff: str, after: str, limit: int) -> list[str]:
    """Service point ids in id order after ``after``, of one tariff ("" for all)."""
    sp = s.service_points
    q = select(sp.c.service_point_id).where(sp.c.service_point_id > after)
    if tariff:
        q = q.where(sp.c.tariff == tariff)
    return [r[0] for r in conn.execute(q.order_by(sp.c.service_point_id).limit(limit))]


def all_service_points(conn: Connection, tariff: str, chunk: int = CHUNK) -> Iterator[list[str]]:
    after = ""
    while True:
        ids = service_point_ids(conn, tariff, after, chunk)
        if not ids:
            return
        yield ids
        after = ids[-1]


def critical_peak_dates(conn: Connection, tariff: str) -> frozenset[dt.date]:
    cpe = s.critical_peak_events
    return frozenset(dt.date.fromisoformat(r[0])
                     for r in conn.execute(select(cpe.c.event_date).where(cpe.c.tariff == tariff)))


def load_service_points(conn: Connection, ids: Sequence[str], period: BillingPeriod, *,
                        tariff_override: str = "") -> list[ServicePointData | UnknownServicePoint]:
    """One entry per id, in order: the data of the service point, or why there is none."""
    sp = s.service_points
    points = {r.service_point_id: r for r in conn.execute(
        select(sp.c.service_point_id, sp.c.tariff, sp.c.net_metered).where(sp.c.service_point_id.in_(list(ids))))}
    start_us, end_us = period.start_s * 1_000_000, period.end_s * 1_000_000
    mi = s.meter_installs
    installs = conn.execute(
        select(mi.c.service_point_id, mi.c.meter_id, mi.c.install_time_us, mi.c.remove_time_us,
               mi.c.start_read_wh, mi.c.final_read_wh)
        .where(mi.c.service_point_id.in_(list(points)), mi.c.install_time_us < end_us,
               or_(mi.c.remove_time_us == 0, mi.c.remove_time_us > start_us))
        .order_by(mi.c.service_point_id, mi.c.install_time_us)).all()
    meter_ids = sorted({r.meter_id for r in installs})
    channels = _energy_channels(conn, meter_ids)
    first_day, last_day = period.start_s // SECONDS_PER_DAY, (period.end_s - 1) // SECONDS_PER_DAY
    days = _channel_days(conn, [c for cs in channels.values() for c in cs], first_day, last_day)

    segments: dict[str, list[MeterSegment]] = defaultdict(list)
    for r in installs:
        by_flow = {c.flow: days[c.channel_id] for c in channels.get(r.meter_id, ())}
        segments[r.service_point_id].append(MeterSegment(
            meter_id=r.meter_id,
            install_time=utc_datetime(r.install_time_us // 1_000_000),
            remove_time=utc_datetime(r.remove_time_us // 1_000_000) if r.remove_time_us else None,
            delivered=by_flow.get("delivered"), received=by_flow.get("received"), net=by_flow.get("net"),
            start_read_wh=r.start_read_wh or None, final_read_wh=r.final_read_wh or None))
    out: list[ServicePointData | UnknownServicePoint] = []
    for sp_id in ids:
        point = points.get(sp_id)
        if point is None:
            out.append(UnknownServicePoint(f"service point {sp_id!r} does not exist",
                                           metadata={"service_point_id": sp_id}))
            continue
        out.append(ServicePointData(sp_id, tariff_override or point.tariff, tuple(segments.get(sp_id, ())),
                                    bool(point.net_metered)))
    return out


def _energy_channels(conn: Connection, meter_ids: Sequence[str]) -> dict[str, list[_Channel]]:
    """Per meter, one interval channel of active energy in Wh per flow: the
    finest interval where a meter has several."""
    if not meter_ids:
        return {}
    c, m = s.channels, s.meters
    rows = conn.execute(
        select(c.c.id, m.c.meter_id, c.c.flow_direction, c.c.interval_seconds, c.c.power_of_ten_multiplier)
        .join(m, m.c.id == c.c.meter_pk)
        .where(m.c.meter_id.in_(list(meter_ids)),
               and_(c.c.kind == pb.MEASUREMENT_KIND_ACTIVE_ENERGY, c.c.unit == pb.UNIT_WATT_HOUR,
                    c.c.accumulation == pb.ACCUMULATION_DELTA, c.c.interval_seconds > 0,
                    c.c.flow_direction.in_(list(_FLOWS))))
        .order_by(m.c.meter_id, c.c.flow_direction, c.c.interval_seconds, c.c.id)).all()
    out: dict[str, list[_Channel]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for r in rows:
        if (r.meter_id, r.flow_direction) in seen:
            continue
        seen.add((r.meter_id, r.flow_direction))
        out[r.meter_id].append(_Channel(r.id, r.meter_id, _FLOWS[r.flow_direction], r.interval_seconds,
                                        r.power_of_ten_multiplier))
    return out


def _channel_days(conn: Connection, channels: Sequence[_Channel], first_day: int,
                  last_day: int) -> dict[int, ChannelDays]:
    """The stored rows of each channel over [first_day, last_day], as arrays."""
    if not channels:
        return {}
    b = s.interval_blocks
    rows: dict[int, tuple[list[int], list[bytes], list[bytes]]] = {c.channel_id: ([], [], []) for c in channels}
    for cid, day, values, qualities in conn.execute(
            select(b.c.channel_id, b.c.day, b.c["values"], b.c.qualities)
            .where(b.c.channel_id.in_(list(rows)), b.c.day >= first_day, b.c.day <= last_day)
            .order_by(b.c.channel_id, b.c.day)):
        d, v, q = rows[cid]
        d.append(day)
        v.append(values)
        q.append(qualities)
    out = {}
    for ch in channels:
        d, v, q = rows[ch.channel_id]
        slots = SECONDS_PER_DAY // ch.interval_seconds
        # One join and one frombuffer per channel, not per row.
        values = np.frombuffer(b"".join(v), dtype="<i8").astype(np.int64).reshape(len(d), slots)
        quals = np.frombuffer(b"".join(q), dtype="<i4").astype(np.int64).reshape(len(d), slots)
        out[ch.channel_id] = ChannelDays(ch.interval_seconds, np.asarray(d, dtype=np.int64), values, quals,
                                         ch.exponent)
    return out


def compute_chunk(conn: Connection, ids: Sequence[str], period: BillingPeriod,
                  calendars: Mapping[str, TariffCalendar], policy: BillingPolicy,
                  tariff: str = "") -> list[Determinants | CycleFailure]:
    """Determinants of one chunk of service points, in ``ids`` order;
    ``tariff`` overrides each point's own when set."""
    loaded = load_service_points(conn, ids, period, tariff_override=tariff)
    found = [x for x in loaded if isinstance(x, ServicePointData)]
    cpp = {name: critical_peak_dates(conn, name) for name in {x.tariff for x in found}}
    results = iter(compute_cycle(found, period, calendars, critical_peak_days=cpp, policy=policy))
    return [CycleFailure(ids[i], x.reason, x.message) if isinstance(x, UnknownServicePoint) else next(results)
            for i, x in enumerate(loaded)]


def stream_cycle(engine: Engine, period: BillingPeriod, calendars: Mapping[str, TariffCalendar],
                 policy: BillingPolicy, *, ids: Sequence[str] = (),
                 tariff: str = "") -> Iterator[Determinants | CycleFailure]:
    """A whole bill cycle, chunk by chunk: the named points, or every point
    (of ``tariff``, when set) in id order."""
    if ids:
        chunks: list[list[str]] = [list(ids[i:i + CHUNK]) for i in range(0, len(ids), CHUNK)]
    else:
        with engine.connect() as conn:
            chunks = list(all_service_points(conn, tariff))
    for chunk in chunks:
        with engine.connect() as conn:
            results = compute_chunk(conn, chunk, period, calendars, policy, tariff)
        yield from results
