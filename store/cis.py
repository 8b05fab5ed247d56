"""Customer information: accounts, service points, meter installs, and the
lookups billing and CIS need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, or_, select

from store import schema as s
from store.bulk import bulk_insert
from store.repository import upsert_meters

METER_ACTIVE = 1
METER_REMOVED = 3


@dataclass(frozen=True, slots=True)
class ServicePointRow:
    service_point_id: str
    account_id: str
    time_zone: str
    tariff: str
    net_metered: bool


@dataclass(frozen=True, slots=True)
class InstallRow:
    meter_id: str
    service_point_id: str
    install_time_us: int
    remove_time_us: int  # 0 while installed
    start_read_wh: int
    final_read_wh: int


def upsert_accounts(conn: Connection, rows: Sequence[tuple[str, str, bool]], now_us: int) -> None:
    if not rows:
        return
    ids = [r[0] for r in rows]
    conn.execute(delete(s.accounts).where(s.accounts.c.account_id.in_(ids)))
    bulk_insert(conn, s.accounts, ["account_id", "name", "active", "update_time_us"],
                [(a, n, int(act), now_us) for a, n, act in {r[0]: r for r in rows}.values()])


def upsert_service_points(conn: Connection, rows: Sequence[ServicePointRow], now_us: int) -> None:
    if not rows:
        return
    latest = {r.service_point_id: r for r in rows}
    conn.execute(delete(s.service_points).where(s.service_points.c.service_point_id.in_(list(latest))))
    bulk_insert(conn, s.service_points,
                ["service_point_id", "account_id", "time_zone", "tariff", "net_metered", "update_time_us"],
                [(r.service_point_id, r.account_id, r.time_zone, r.tariff, int(r.net_metered), now_us)
                 for r in latest.values()])


def upsert_installs(conn: Connection, rows: Sequence[tuple[InstallRow, int, str]], now_us: int) -> None:
    """(install, multiplier, meter_class): the install and the meter ingest looks up."""
    if not rows:
        return
    mi = s.meter_installs
    latest = {(r.meter_id, r.install_time_us): (r, mult, cls) for r, mult, cls in rows}
    for meter_id, install_us in latest:
        conn.execute(delete(mi).where(and_(mi.c.meter_id == meter_id, mi.c.install_time_us == install_us)))
    bulk_insert(conn, mi, ["meter_id", "install_time_us", "service_point_id", "remove_time_us", "start_read_wh",
                           "final_read_wh", "update_time_us"],
                [(r.meter_id, r.install_time_us, r.service_point_id, r.remove_time_us, r.start_read_wh,
                  r.final_read_wh, now_us) for r, _m, _c in latest.values()])
    # The meter's status follows its newest install: removed meters still
    # ingest late reads for their installed period, so they stay known.
    newest: dict[str, tuple[InstallRow, int, str]] = {}
    for r, mult, cls in latest.values():
        if r.meter_id not in newest or r.install_time_us > newest[r.meter_id][0].install_time_us:
            newest[r.meter_id] = (r, mult, cls)
    upsert_meters(conn, [(m, METER_REMOVED if r.remove_time_us else METER_ACTIVE, max(mult, 1), cls or "default")
                         for m, (r, mult, cls) in newest.items()], now_us)


def service_point(conn: Connection, service_point_id: str) -> ServicePointRow | None:
    sp = s.service_points
    row = conn.execute(select(sp).where(sp.c.service_point_id == service_point_id)).first()
    if row is None:
        return None
    return ServicePointRow(row.service_point_id, row.account_id, row.time_zone, row.tariff, bool(row.net_metered))


def list_service_points(conn: Connection, account_id: str, after: str, limit: int) -> list[ServicePointRow]:
    sp = s.service_points
    q = select(sp).where(sp.c.service_point_id > after)
    if account_id:
        q = q.where(sp.c.account_id == account_id)
    return [ServicePointRow(r.service_point_id, r.account_id, r.time_zone, r.tariff, bool(r.net_metered))
            for r in conn.execute(q.order_by(sp.c.service_point_id).limit(limit))]


def installs_for(conn: Connection, service_point_id: str, start_us: int = 0,
                 end_us: int = 2**62) -> list[InstallRow]:
    """Installs of a service point overlapping [start_us, end_us), oldest first."""
    mi = s.meter_installs
    rows = conn.execute(
        select(mi).where(mi.c.service_point_id == service_point_id, mi.c.install_time_us < end_us,
                         or_(mi.c.remove_time_us == 0, mi.c.remove_time_us > start_us))
        .order_by(mi.c.install_time_us)
    )
    return [InstallRow(r.meter_id, r.service_point_id, r.install_time_us, r.remove_time_us, r.start_read_wh,
                       r.final_read_wh) for r in rows]


def set_critical_peak_days(conn: Connection, tariff: str, dates: Sequence[str]) -> None:
    cpe = s.critical_peak_events
    conn.execute(delete(cpe).where(cpe.c.tariff == tariff))
    bulk_insert(conn, cpe, ["tariff", "event_date"], [(tariff, d) for d in sorted(set(dates))])


def critical_peak_days(conn: Connection, tariff: str) -> list[str]:
    cpe = s.critical_peak_events
    return [r[0] for r in conn.execute(select(cpe.c.event_date).where(cpe.c.tariff == tariff))]
