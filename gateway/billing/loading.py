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
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, select

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
    return frozenset(dt.date.fromisoformat(r[0]) for r in _fetch(conn, _CRITICAL_PEAK, tariff))


_ENERGY = (int(pb.MEASUREMENT_KIND_ACTIVE_ENERGY), int(pb.UNIT_WATT_HOUR), int(pb.ACCUMULATION_DELTA), list(_FLOWS))
# Plain SQL on the driver's cursor: on a one-point request, composing and
# compiling statements costs more than running them. "?" marks a parameter;
# a list parameter stands for "(?, ?, ...)" inside IN (?).
_POINTS = "SELECT service_point_id, tariff, net_metered FROM service_points WHERE service_point_id IN (?)"
_INSTALLS = (
    "SELECT mi.service_point_id, mi.meter_id, mi.install_time_us, mi.remove_time_us, mi.start_read_wh, "
    "mi.final_read_wh, c.id, c.flow_direction, c.interval_seconds, c.power_of_ten_multiplier "
    "FROM meter_installs mi LEFT JOIN meters m ON m.meter_id = mi.meter_id "
    "LEFT JOIN channels c ON c.meter_pk = m.id AND c.kind = ? AND c.unit = ? "
    "AND c.accumulation = ? AND c.interval_seconds > 0 AND c.flow_direction IN (?) "
    "WHERE mi.service_point_id IN (?) AND mi.install_time_us < ? "
    "AND (mi.remove_time_us = 0 OR mi.remove_time_us > ?) "
    "ORDER BY mi.service_point_id, mi.install_time_us, c.flow_direction, c.interval_seconds, c.id")
_BLOCKS = ('SELECT channel_id, day, "values", qualities FROM interval_blocks '
           "WHERE channel_id IN (?) AND day >= ? AND day <= ? ORDER BY channel_id, day")
_CRITICAL_PEAK = "SELECT event_date FROM critical_peak_events WHERE tariff = ?"


def _fetch(conn: Connection, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run on the connection's own DBAPI cursor (same transaction)."""
    pieces = sql.split("?")
    if len(pieces) != len(params) + 1:
        raise ValueError(f"{len(pieces) - 1} placeholders for {len(params)} parameters")
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    text_parts = [pieces[0]]
    flat: list[object] = []
    for value, tail in zip(params, pieces[1:], strict=True):
        if isinstance(value, list):
            text_parts.append(", ".join([mark] * len(value)))
            flat.extend(value)
        else:
            text_parts.append(mark)
            flat.append(value)
        text_parts.append(tail)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("".join(text_parts), flat)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def load_service_points(conn: Connection, ids: Sequence[str], period: BillingPeriod, *,
                        tariff_override: str = "") -> list[ServicePointData | UnknownServicePoint]:
    """One entry per id, in order: the data of the service point, or why there is none."""
    points = {r[0]: r for r in _fetch(conn, _POINTS, list(ids))} if ids else {}
    start_us, end_us = period.start_s * 1_000_000, period.end_s * 1_000_000
    installs: dict[tuple[str, str, int], tuple[int, int, int]] = {}  # (sp, meter, install) -> remove, reads
    channels: dict[tuple[str, str, int], list[_Channel]] = defaultdict(list)
    seen: set[tuple[str, str, int, int]] = set()
    if points:
        for (sp_id, meter_id, install_us, remove_us, start_read, final_read, cid, flow, interval,
             exponent) in _fetch(conn, _INSTALLS, *_ENERGY, list(points), end_us, start_us):
            key = (sp_id, meter_id, install_us)
            installs[key] = (remove_us, start_read, final_read)
            # One channel per flow: the finest interval where a meter has several.
            if cid is not None and (*key, flow) not in seen:
                seen.add((*key, flow))
                channels[key].append(_Channel(cid, meter_id, _FLOWS[flow], interval, exponent))
    first_day, last_day = period.start_s // SECONDS_PER_DAY, (period.end_s - 1) // SECONDS_PER_DAY
    unique = list({c.channel_id: c for cs in channels.values() for c in cs}.values())
    days = _channel_days(conn, unique, first_day, last_day)

    segments: dict[str, list[MeterSegment]] = defaultdict(list)
    for (sp_id, meter_id, install_us), (remove_us, start_read, final_read) in installs.items():
        by_flow = {c.flow: days[c.channel_id] for c in channels.get((sp_id, meter_id, install_us), ())}
        segments[sp_id].append(MeterSegment(
            meter_id=meter_id,
            install_time=utc_datetime(install_us // 1_000_000),
            remove_time=utc_datetime(remove_us // 1_000_000) if remove_us else None,
            delivered=by_flow.get("delivered"), received=by_flow.get("received"), net=by_flow.get("net"),
            start_read_wh=start_read or None, final_read_wh=final_read or None))
    out: list[ServicePointData | UnknownServicePoint] = []
    for sp_id in ids:
        point = points.get(sp_id)
        if point is None:
            out.append(UnknownServicePoint(f"service point {sp_id!r} does not exist",
                                           metadata={"service_point_id": sp_id}))
            continue
        out.append(ServicePointData(sp_id, tariff_override or point[1], tuple(segments.get(sp_id, ())),
                                    bool(point[2])))
    return out


def _channel_days(conn: Connection, channels: Sequence[_Channel], first_day: int,
                  last_day: int) -> dict[int, ChannelDays]:
    """The stored rows of each channel over [first_day, last_day], as arrays."""
    if not channels:
        return {}
    rows: dict[int, tuple[list[int], list[bytes], list[bytes]]] = {c.channel_id: ([], [], []) for c in channels}
    for cid, day, values, qualities in _fetch(conn, _BLOCKS, list(rows), first_day, last_day):
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


def cycle_chunks(engine: Engine, ids: Sequence[str], tariff: str) -> list[list[str]]:
    """The service point ids of a cycle in chunks: the named ones, or every
    point (of ``tariff``, when set) in id order. Ids only: a 100,000-point
    list is a few MB, and reading it up front keeps no read transaction open
    while the cycle streams."""
    if ids:
        return [list(ids[i:i + CHUNK]) for i in range(0, len(ids), CHUNK)]
    with engine.connect() as conn:
        return list(all_service_points(conn, tariff))


def stream_cycle(engine: Engine, period: BillingPeriod, calendars: Mapping[str, TariffCalendar],
                 policy: BillingPolicy, *, ids: Sequence[str] = (),
                 tariff: str = "") -> Iterator[Determinants | CycleFailure]:
    """A whole bill cycle, chunk by chunk: the named points, or every point
    (of ``tariff``, when set) in id order."""
    for chunk in cycle_chunks(engine, ids, tariff):
        with engine.connect() as conn:
            results = compute_chunk(conn, chunk, period, calendars, policy, tariff)
        yield from results
