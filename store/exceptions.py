"""The VEE exception queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select, tuple_, update

from store import schema as s
from store.repository import chunks, one_of

STATE_OPEN = 1
STATE_ASSIGNED = 2
STATE_RESOLVED = 3


@dataclass(frozen=True, slots=True)
class NewException:
    rule: str
    channel_id: int
    meter_id: str
    start_time_us: int
    end_time_us: int
    severity: int
    message: str


@dataclass(frozen=True, slots=True)
class ExceptionRow:
    id: int
    rule: str
    channel_id: int
    meter_id: str
    start_time_us: int
    end_time_us: int
    severity: int
    state: int
    message: str
    assignee: str
    resolution: str
    resolved_by: str
    create_time_us: int
    update_time_us: int


def open_exceptions(conn: Connection, items: Sequence[NewException], now_us: int) -> list[int]:
    """Open items not already recorded for the same rule, channel and range;
    returns the ids of the new ones."""
    if not items:
        return []
    e = s.vee_exceptions
    keys = list({(i.rule, i.channel_id, i.start_time_us, i.end_time_us): i for i in items}.items())
    existing: set[tuple[object, ...]] = set()
    for start in range(0, len(keys), 2000):
        part = [k for k, _ in keys[start:start + 2000]]
        existing.update(tuple(r) for r in conn.execute(
            select(e.c.rule, e.c.channel_id, e.c.start_time_us, e.c.end_time_us).where(
                tuple_(e.c.rule, e.c.channel_id, e.c.start_time_us, e.c.end_time_us).in_(part))))
    new = [i for k, i in keys if k not in existing]
    ids = []
    for item in new:
        result = conn.execute(e.insert().values(
            rule=item.rule, channel_id=item.channel_id, meter_id=item.meter_id, start_time_us=item.start_time_us,
            end_time_us=item.end_time_us, severity=item.severity, state=STATE_OPEN, message=item.message,
            create_time_us=now_us, update_time_us=now_us))
        ids.append(int(result.inserted_primary_key[0]))  # type: ignore[index]
    return ids


def _row(r: object) -> ExceptionRow:
    return ExceptionRow(*tuple(r))  # type: ignore[arg-type]


def list_exceptions(conn: Connection, *, state: int = 0, rule: str = "", meter_ids: Sequence[str] = (),
                    min_severity: int = 0, before_id: int = 0, limit: int = 100,
                    ids: Sequence[int] = ()) -> list[ExceptionRow]:
    """Newest first; ``before_id`` pages backwards; state 0 = any, -1 = not resolved."""
    e = s.vee_exceptions
    q = select(e.c.id, e.c.rule, e.c.channel_id, e.c.meter_id, e.c.start_time_us, e.c.end_time_us, e.c.severity,
               e.c.state, e.c.message, e.c.assignee, e.c.resolution, e.c.resolved_by, e.c.create_time_us,
               e.c.update_time_us)
    if state == -1:
        q = q.where(e.c.state != STATE_RESOLVED)
    elif state:
        q = q.where(e.c.state == state)
    if rule:
        q = q.where(e.c.rule == rule)
    if meter_ids:
        q = q.where(e.c.meter_id.in_(list(meter_ids)))
    if min_severity:
        q = q.where(e.c.severity >= min_severity)
    if before_id:
        q = q.where(e.c.id < before_id)
    if ids:
        q = q.where(e.c.id.in_(list(ids)))
    return [_row(r) for r in conn.execute(q.order_by(e.c.id.desc()).limit(limit))]


def set_state(conn: Connection, item_id: int, now_us: int, **values: object) -> ExceptionRow | None:
    e = s.vee_exceptions
    conn.execute(update(e).where(e.c.id == item_id).values(update_time_us=now_us, **values))
    rows = list_exceptions(conn, ids=[item_id], limit=1)
    return rows[0] if rows else None


def resolve_cleared(conn: Connection, channel_days: Sequence[tuple[int, int]],
                    still_failing: set[tuple[str, int, int, int]], now_us: int) -> int:
    """Resolve open (unassigned) items inside re-validated channel-days that
    the new run no longer reports, e.g. a gap the late data filled. Returns how many."""
    if not channel_days:
        return 0
    e = s.vee_exceptions
    wanted = set(channel_days)
    lo = min(day for _c, day in channel_days) * 86_400_000_000
    hi = (max(day for _c, day in channel_days) + 1) * 86_400_000_000
    channels = sorted({cid for cid, _d in channel_days})
    cleared = []
    # One query per chunk of channels (not per channel-day): this runs for every batch.
    for part in chunks(channels):
        for rid, rule, cid, start, end in conn.execute(
                select(e.c.id, e.c.rule, e.c.channel_id, e.c.start_time_us, e.c.end_time_us).where(
                    one_of(conn, e.c.channel_id, part), e.c.state == STATE_OPEN, e.c.start_time_us >= lo,
                    e.c.end_time_us <= hi)):
            if (cid, start // 86_400_000_000) in wanted and (rule, cid, start, end) not in still_failing:
                cleared.append(rid)
    if cleared:
        conn.execute(update(e).where(e.c.id.in_(cleared)).values(
            state=STATE_RESOLVED, resolution="cleared: re-validation no longer reports it", resolved_by="vee",
            update_time_us=now_us))
    return len(cleared)
