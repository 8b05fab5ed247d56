"""Reads and writes of the store. Every function takes an open Connection, so
the caller owns the transaction (one per ingested batch)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ARRAY, Connection, and_, any_, bindparam, func, select, text, tuple_, update

from store import schema as s
from store.bulk import bulk_insert

Int64Array = npt.NDArray[np.int64]
# SQLite allows 32766 bound parameters; stay well below for tuple IN lists.
_KEY_CHUNK = 4000
DEAD_LETTER_CONTENT_TYPE_CHARS = 128  # dead_letters.content_type


@dataclass(frozen=True, slots=True)
class MeterRow:
    pk: int
    meter_id: str
    status: int
    multiplier: int
    meter_class: str


@dataclass(frozen=True, slots=True)
class ChannelRow:
    id: int
    meter_pk: int
    reading_type_key: str
    interval_seconds: int
    power_of_ten_multiplier: int


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A channel with its meter and full reading type, for the read API."""

    id: int
    meter_id: str
    interval_seconds: int
    commodity: int
    kind: int
    unit: int
    flow_direction: int
    accumulation: int
    power_of_ten_multiplier: int
    cim_code: str
    device_channel: str
    meter_status: int = 1
    meter_class: str = "default"


def one_of(conn: Connection, column: Any, values: Sequence[object]) -> Any:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``: one
    parameter instead of thousands, which the driver would parse every time."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type), unique=True))
    return column.in_(list(values))


def chunks(items: Sequence[object], size: int = _KEY_CHUNK) -> Iterable[Sequence[object]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- meters ---------------------------------------------------------------


def load_meters(conn: Connection, meter_ids: Sequence[str]) -> dict[str, MeterRow]:
    out: dict[str, MeterRow] = {}
    m = s.meters
    for part in chunks(meter_ids):
        for row in conn.execute(
            select(m.c.id, m.c.meter_id, m.c.status, m.c.multiplier, m.c.meter_class).where(
                one_of(conn, m.c.meter_id, part)
            )
        ):
            out[row.meter_id] = MeterRow(row.id, row.meter_id, row.status, row.multiplier, row.meter_class)
    return out


def upsert_meters(conn: Connection, rows: Sequence[tuple[str, int, int, str]], now_us: int) -> tuple[int, int]:
    """Create or update (meter_id, status, multiplier, meter_class) rows."""
    existing = load_meters(conn, [r[0] for r in rows])
    new = [(mid, st, mul, cls, now_us) for mid, st, mul, cls in rows if mid not in existing]
    bulk_insert(conn, s.meters, ["meter_id", "status", "multiplier", "meter_class", "update_time_us"], new)
    changed = [
        {"b_id": existing[mid].pk, "status": st, "multiplier": mul, "meter_class": cls, "update_time_us": now_us}
        for mid, st, mul, cls in rows
        if mid in existing
        and (existing[mid].status, existing[mid].multiplier, existing[mid].meter_class) != (st, mul, cls)
    ]
    if changed:
        conn.execute(
            update(s.meters).where(s.meters.c.id == bindparam("b_id")).values(
                status=bindparam("status"), multiplier=bindparam("multiplier"),
                meter_class=bindparam("meter_class"), update_time_us=bindparam("update_time_us"),
            ),
            changed,
        )
    return len(new), len(changed)


def list_meters(conn: Connection, after_id: str, limit: int) -> list[MeterRow]:
    m = s.meters
    rows = conn.execute(
        select(m.c.id, m.c.meter_id, m.c.status, m.c.multiplier, m.c.meter_class)
        .where(m.c.meter_id > after_id).order_by(m.c.meter_id).limit(limit)
    )
    return [MeterRow(r.id, r.meter_id, r.status, r.multiplier, r.meter_class) for r in rows]


# -- channels -------------------------------------------------------------


def load_channels(conn: Connection, meter_pks: Sequence[int]) -> dict[tuple[int, str, int], ChannelRow]:
    c = s.channels
    out: dict[tuple[int, str, int], ChannelRow] = {}
    for part in chunks(sorted(set(meter_pks))):
        for r in conn.execute(
            select(c.c.id, c.c.meter_pk, c.c.reading_type_key, c.c.interval_seconds,
                   c.c.power_of_ten_multiplier).where(one_of(conn, c.c.meter_pk, part))
        ):
            out[(r.meter_pk, r.reading_type_key, r.interval_seconds)] = ChannelRow(
                r.id, r.meter_pk, r.reading_type_key, r.interval_seconds, r.power_of_ten_multiplier
            )
    return out


def create_channels(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    """Insert channel rows (dicts of the channels table's columns, without id)."""
    if rows:
        columns = list(rows[0])
        bulk_insert(conn, s.channels, columns, [tuple(r[c] for c in columns) for r in rows])


def channel_infos(conn: Connection, channel_ids: Sequence[int]) -> dict[int, ChannelInfo]:
    c, m = s.channels, s.meters
    out: dict[int, ChannelInfo] = {}
    for part in chunks(sorted(set(channel_ids))):
        for r in conn.execute(
            select(c, m.c.meter_id, m.c.status, m.c.meter_class).join(m, m.c.id == c.c.meter_pk)
            .where(one_of(conn, c.c.id, part))
        ):
            out[r.id] = ChannelInfo(r.id, r.meter_id, r.interval_seconds, r.commodity, r.kind, r.unit,
                                    r.flow_direction, r.accumulation, r.power_of_ten_multiplier,
                                    r.cim_code, r.device_channel, r.status, r.meter_class)
    return out


def find_channels(conn: Connection, meter_ids: Sequence[str], flow_direction: int, kind: int) -> list[int]:
    c, m = s.channels, s.meters
    q = select(c.c.id).join(m, m.c.id == c.c.meter_pk)
    if meter_ids:
        q = q.where(m.c.meter_id.in_(list(meter_ids)))
    if flow_direction:
        q = q.where(c.c.flow_direction == flow_direction)
    if kind:
        q = q.where(c.c.kind == kind)
    return [r.id for r in conn.execute(q.order_by(c.c.id))]


# -- interval blocks ------------------------------------------------------


@dataclass(slots=True)
class StoredBlocks:
    """Stored rows aligned with requested (channel, day) keys; version 0 where
    nothing is stored."""

    version: Int64Array
    values: Int64Array
    qualities: Int64Array
    head_end: list[str]
    update_time_us: Int64Array


def load_blocks(conn: Connection, channel_ids: Int64Array, days: Int64Array, slots: int) -> StoredBlocks:
    n = len(channel_ids)
    stored = StoredBlocks(
        version=np.zeros(n, dtype=np.int64),
        values=np.zeros((n, slots), dtype=np.int64),
        qualities=np.zeros((n, slots), dtype=np.int64),
        head_end=[""] * n,
        update_time_us=np.zeros(n, dtype=np.int64),
    )
    if n == 0:
        return stored
    index = {(int(c), int(d)): i for i, (c, d) in enumerate(zip(channel_ids, days, strict=True))}
    for cid, day, version, values, qualities, head_end, update_us in _stored_rows(conn, list(index)):
        i = index[(cid, day)]
        stored.version[i] = version
        stored.values[i] = np.frombuffer(values, dtype="<i8")
        stored.qualities[i] = np.frombuffer(qualities, dtype="<i4")
        stored.head_end[i] = head_end
        stored.update_time_us[i] = update_us
    return stored


def _stored_rows(conn: Connection, keys: list[tuple[int, int]]) -> Iterable[tuple[Any, ...]]:
    """Stored block rows for (channel_id, day) keys."""
    b = s.interval_blocks
    if conn.dialect.name == "postgresql":
        # A join against unnest() keeps the primary-key index in use for
        # thousands of keys, where a row-value IN list falls back to a scan.
        query = text(
            'SELECT b.channel_id, b.day, b.version, b."values", b.qualities, b.head_end, b.update_time_us '
            "FROM interval_blocks b JOIN unnest(CAST(:c AS bigint[]), CAST(:d AS integer[])) AS k(c, d) "
            "ON b.channel_id = k.c AND b.day = k.d"
        )
        yield from conn.execute(query, {"c": [k[0] for k in keys], "d": [k[1] for k in keys]})
        return
    for part in chunks(keys):
        yield from conn.execute(
            select(b.c.channel_id, b.c.day, b.c.version, b.c["values"], b.c.qualities, b.c.head_end,
                   b.c.update_time_us).where(tuple_(b.c.channel_id, b.c.day).in_(part))
        )


BLOCK_COLUMNS = ["channel_id", "day", "version", "interval_seconds", "values", "qualities",
                 "head_end", "update_time_us"]
HISTORY_COLUMNS = ["channel_id", "day", "version", "interval_seconds", "values", "qualities", "head_end",
                   "update_time_us", "superseded_time_us", "superseded_by", "reason"]


class ConcurrentUpdate(Exception):
    """Another writer changed a block between our read and our write; retry the batch."""


def write_blocks(
    conn: Connection,
    *,
    interval_seconds: int,
    channel_ids: Int64Array,
    days: Int64Array,
    values: Int64Array,
    qualities: Int64Array,
    stored: StoredBlocks,
    history_rows: npt.NDArray[np.bool_],
    superseded_by: str,
    reason: str,
    now_us: int,
    action: str = "SOURCE",
) -> None:
    """Write changed channel-day rows: insert new ones, bump the version of
    stored ones (optimistically: the stored version must still be current),
    move revised old versions to history, and append every change to the
    subscription feed. ``superseded_by`` is the head-end or editor."""
    vals_le = values.astype("<i8", copy=False)
    quals_le = qualities.astype("<i4")
    new_rows = []
    upd_rows = []
    hist_rows = []
    changes = []
    for i in range(len(channel_ids)):
        cid, day, ver = int(channel_ids[i]), int(days[i]), int(stored.version[i])
        if ver == 0:
            new_rows.append((cid, day, 1, interval_seconds, vals_le[i].tobytes(), quals_le[i].tobytes(),
                             superseded_by, now_us))
        else:
            upd_rows.append({"b_cid": cid, "b_day": day, "b_ver": ver, "version": ver + 1,
                             "values": vals_le[i].tobytes(), "qualities": quals_le[i].tobytes(),
                             "head_end": superseded_by, "update_time_us": now_us})
            if history_rows[i]:
                hist_rows.append((cid, day, ver, interval_seconds,
                                  stored.values[i].astype("<i8").tobytes(),
                                  stored.qualities[i].astype("<i4").tobytes(),
                                  stored.head_end[i], int(stored.update_time_us[i]), now_us,
                                  superseded_by, reason))
        row_action = "SOURCE_REVISION" if action == "SOURCE" and ver and history_rows[i] else action
        changes.append((cid, day, ver + 1, now_us, superseded_by, row_action, reason))
    bulk_insert(conn, s.interval_blocks, BLOCK_COLUMNS, new_rows)
    if upd_rows:
        b = s.interval_blocks
        result = conn.execute(
            update(b)
            .where(and_(b.c.channel_id == bindparam("b_cid"), b.c.day == bindparam("b_day"),
                        b.c.version == bindparam("b_ver")))
            .values(version=bindparam("version"), values=bindparam("values"),
                    qualities=bindparam("qualities"), head_end=bindparam("head_end"),
                    update_time_us=bindparam("update_time_us")),
            upd_rows,
        )
        if result.rowcount != len(upd_rows):
            raise ConcurrentUpdate(f"{len(upd_rows) - result.rowcount} blocks changed underneath")
    bulk_insert(conn, s.interval_block_history, HISTORY_COLUMNS, hist_rows)
    bulk_insert(conn, s.block_changes,
                ["channel_id", "day", "version", "commit_time_us", "actor", "action", "reason"], changes)


def query_blocks(
    conn: Connection, channel_ids: Sequence[int], first_day: int, last_day: int,
    after: tuple[int, int] | None, limit: int,
) -> list[tuple[int, int, int, int, bytes, bytes, int]]:
    """Rows (channel_id, day, version, interval_seconds, values, qualities,
    update_time_us) of the channels in [first_day, last_day], ordered by
    (channel_id, day), after the given key."""
    b = s.interval_blocks
    q = select(b.c.channel_id, b.c.day, b.c.version, b.c.interval_seconds, b.c["values"], b.c.qualities,
               b.c.update_time_us).where(b.c.channel_id.in_(list(channel_ids)),
                                         b.c.day >= first_day, b.c.day <= last_day)
    if after is not None:
        q = q.where(tuple_(b.c.channel_id, b.c.day) > tuple_(*after))
    q = q.order_by(b.c.channel_id, b.c.day).limit(limit)
    return [tuple(r) for r in conn.execute(q)]  # type: ignore[misc]


def block_at(conn: Connection, channel_id: int, day: int) -> tuple[int, int, bytes, bytes, int] | None:
    b = s.interval_blocks
    row = conn.execute(
        select(b.c.version, b.c.interval_seconds, b.c["values"], b.c.qualities, b.c.update_time_us).where(
            b.c.channel_id == channel_id, b.c.day == day)
    ).first()
    return None if row is None else tuple(row)  # type: ignore[return-value]


def last_interval_end(conn: Connection, channel_id: int) -> int | None:
    """End (epoch seconds) of the last non-missing interval of a channel."""
    b = s.interval_blocks
    row = conn.execute(
        select(b.c.day, b.c.interval_seconds, b.c.qualities).where(b.c.channel_id == channel_id)
        .order_by(b.c.day.desc()).limit(1)
    ).first()
    if row is None:
        return None
    day, interval, quals = row
    q = np.frombuffer(quals, dtype="<i4")
    present = np.flatnonzero((q & 1) == 0)
    if len(present) == 0:
        return None
    return int(day) * 86_400 + (int(present[-1]) + 1) * int(interval)


def changes_after(conn: Connection, seq: int, limit: int) -> list[tuple[int, int, int, int]]:
    """(seq, channel_id, day, version) of the change feed after seq."""
    b = s.block_changes
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        select(b.c.seq, b.c.channel_id, b.c.day, b.c.version).where(b.c.seq > seq).order_by(b.c.seq).limit(limit)
    )]


def last_change_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(s.block_changes.c.seq), 0))).scalar_one())


# -- register reads -------------------------------------------------------


def load_register_reads(
    conn: Connection, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(channel_id, read_time_us) -> (value, quality, version)."""
    r = s.register_reads
    out: dict[tuple[int, int], tuple[int, int, int]] = {}
    for part in chunks(list(keys)):
        for row in conn.execute(
            select(r.c.channel_id, r.c.read_time_us, r.c.value, r.c.quality, r.c.version).where(
                tuple_(r.c.channel_id, r.c.read_time_us).in_(part))
        ):
            out[(row.channel_id, row.read_time_us)] = (row.value, row.quality, row.version)
    return out


REGISTER_COLUMNS = ["channel_id", "read_time_us", "value", "quality", "version", "head_end", "update_time_us"]


def write_register_reads(
    conn: Connection, new: Sequence[tuple[int, int, int, int]],
    revised: Sequence[tuple[int, int, int, int, tuple[int, int, int]]], head_end: str, now_us: int,
) -> None:
    """new: (channel_id, read_time_us, value, quality); revised additionally the stored triple."""
    bulk_insert(conn, s.register_reads, REGISTER_COLUMNS,
                [(c, t, v, q, 1, head_end, now_us) for c, t, v, q in new])
    if revised:
        r = s.register_reads
        conn.execute(
            update(r).where(and_(r.c.channel_id == bindparam("b_cid"), r.c.read_time_us == bindparam("b_t")))
            .values(value=bindparam("value"), quality=bindparam("quality"), version=bindparam("version"),
                    head_end=bindparam("head_end"), update_time_us=bindparam("update_time_us")),
            [{"b_cid": c, "b_t": t, "value": v, "quality": q, "version": old[2] + 1, "head_end": head_end,
              "update_time_us": now_us} for c, t, v, q, old in revised],
        )
        bulk_insert(conn, s.register_read_history,
                    ["channel_id", "read_time_us", "value", "quality", "version", "superseded_time_us",
                     "superseded_by"],
                    [(c, t, old[0], old[1], old[2], now_us, head_end) for c, t, _v, _q, old in revised])


def query_register_reads(
    conn: Connection, meter_ids: Sequence[str], start_us: int, end_us: int,
    after: tuple[int, int] | None, limit: int,
) -> list[tuple[int, int, int, int, int]]:
    """(channel_id, read_time_us, value, quality, version) ordered by key."""
    r, c, m = s.register_reads, s.channels, s.meters
    q = select(r.c.channel_id, r.c.read_time_us, r.c.value, r.c.quality, r.c.version).where(
        r.c.read_time_us >= start_us, r.c.read_time_us < end_us)
    if meter_ids:
        q = q.where(r.c.channel_id.in_(select(c.c.id).join(m, m.c.id == c.c.meter_pk)
                                       .where(m.c.meter_id.in_(list(meter_ids)))))
    if after is not None:
        q = q.where(tuple_(r.c.channel_id, r.c.read_time_us) > tuple_(*after))
    return [tuple(x) for x in conn.execute(q.order_by(r.c.channel_id, r.c.read_time_us).limit(limit))]  # type: ignore[misc]


# -- meter events ---------------------------------------------------------


def insert_new_events(conn: Connection, rows: Sequence[tuple[int, int, int, str, str, str]]) -> int:
    """Insert (meter_pk, event_time_us, event_type, cim_code, details_json, head_end)
    rows that are not stored yet; returns how many were new."""
    if not rows:
        return 0
    e = s.meter_events
    keys = list({(r[0], r[1], r[2]) for r in rows})
    stored: set[tuple[int, int, int]] = set()
    for part in chunks(keys):
        stored.update(
            (x.meter_pk, x.event_time_us, x.event_type) for x in conn.execute(
                select(e.c.meter_pk, e.c.event_time_us, e.c.event_type).where(
                    tuple_(e.c.meter_pk, e.c.event_time_us, e.c.event_type).in_(part)))
        )
    new: dict[tuple[int, int, int], tuple[int, int, int, str, str, str]] = {}
    for row in rows:
        key = (row[0], row[1], row[2])
        if key not in stored:
            new.setdefault(key, row)
    bulk_insert(conn, e, ["meter_pk", "event_time_us", "event_type", "cim_code", "details", "head_end"],
                list(new.values()))
    return len(new)


def query_events(
    conn: Connection, meter_ids: Sequence[str], start_us: int, end_us: int, after_id: int, limit: int,
) -> list[tuple[int, str, int, int, str, str]]:
    """(id, meter_id, event_time_us, event_type, cim_code, details_json)."""
    e, m = s.meter_events, s.meters
    q = select(e.c.id, m.c.meter_id, e.c.event_time_us, e.c.event_type, e.c.cim_code, e.c.details).join(
        m, m.c.id == e.c.meter_pk).where(e.c.event_time_us >= start_us, e.c.event_time_us < end_us,
                                         e.c.id > after_id)
    if meter_ids:
        q = q.where(m.c.meter_id.in_(list(meter_ids)))
    return [tuple(x) for x in conn.execute(q.order_by(e.c.id).limit(limit))]  # type: ignore[misc]


# -- idempotency, dead letters, source counters ------------------------------


def batch_outcome(conn: Connection, key: str) -> dict[str, int] | None:
    row = conn.execute(select(s.ingested_batches.c.outcome).where(
        s.ingested_batches.c.idempotency_key == key)).scalar()
    return None if row is None else dict(json.loads(row))


def record_batch(conn: Connection, key: str, head_end: str, outcome: dict[str, int], now_us: int) -> None:
    conn.execute(s.ingested_batches.insert().values(
        idempotency_key=key, head_end=head_end, commit_time_us=now_us, outcome=json.dumps(outcome)))


def add_dead_letter(conn: Connection, *, head_end: str, adapter_type: str, receive_time_us: int,
                    reason_code: str, reason: str, content_type: str, payload: bytes) -> int:
    # The content type may come from the sender (an MQTT 5 property, an HTTP header): clip it
    # to its column, since a dead letter must not fail for its label (PostgreSQL would refuse it).
    result = conn.execute(s.dead_letters.insert().values(
        head_end=head_end, adapter_type=adapter_type, receive_time_us=receive_time_us,
        reason_code=reason_code, reason=reason, content_type=content_type[:DEAD_LETTER_CONTENT_TYPE_CHARS],
        payload=payload))
    bump_source(conn, head_end, adapter_type, dead_letters=1)
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def list_dead_letters(conn: Connection, head_end: str, after_id: int, limit: int) -> list[tuple[object, ...]]:
    d = s.dead_letters
    q = select(d.c.id, d.c.head_end, d.c.adapter_type, d.c.receive_time_us, d.c.reason_code, d.c.reason,
               d.c.content_type, d.c.payload).where(d.c.id > after_id)
    if head_end:
        q = q.where(d.c.head_end == head_end)
    return [tuple(r) for r in conn.execute(q.order_by(d.c.id).limit(limit))]


def bump_source(
    conn: Connection, head_end: str, adapter_type: str, *, batches_committed: int = 0,
    batches_rejected: int = 0, reads_committed: int = 0, dead_letters: int = 0,
    commit_time_us: int = 0, last_interval_end_us: int = 0,
) -> None:
    st = s.source_stats
    row = conn.execute(select(st.c.head_end).where(st.c.head_end == head_end)).first()
    if row is None:
        conn.execute(st.insert().values(
            head_end=head_end, adapter_type=adapter_type, batches_committed=batches_committed,
            batches_rejected=batches_rejected, reads_committed=reads_committed, dead_letters=dead_letters,
            last_commit_time_us=commit_time_us, last_interval_end_us=last_interval_end_us))
        return
    conn.execute(update(st).where(st.c.head_end == head_end).values(
        batches_committed=st.c.batches_committed + batches_committed,
        batches_rejected=st.c.batches_rejected + batches_rejected,
        reads_committed=st.c.reads_committed + reads_committed,
        dead_letters=st.c.dead_letters + dead_letters,
        last_commit_time_us=func.max(st.c.last_commit_time_us, commit_time_us)
        if conn.dialect.name == "sqlite" else func.greatest(st.c.last_commit_time_us, commit_time_us),
        last_interval_end_us=func.max(st.c.last_interval_end_us, last_interval_end_us)
        if conn.dialect.name == "sqlite" else func.greatest(st.c.last_interval_end_us, last_interval_end_us),
    ))


def list_sources(conn: Connection) -> list[tuple[object, ...]]:
    st = s.source_stats
    return [tuple(r) for r in conn.execute(select(st).order_by(st.c.head_end))]
