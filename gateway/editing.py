"""Manual edits, estimate approvals and the audit trail.

Every change writes a new version of the channel-day; the superseded version
goes to history with the editor, the time and the reason, so nothing is ever
overwritten. The audit trail is derived from those versions and the change
feed, so it cannot disagree with the data.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import Connection, and_, select

from gateway.errors import IngestRejected, MeterhubError, StatusCode
from gateway.ingest import SECONDS_PER_DAY, ChannelDays, StageOutcome
from gateway.quality import EDITED, ESTIMATED, HUB_ESTIMATE_BITS, MISSING
from meterhub.v1 import model_pb2 as pb
from store import repository as repo
from store import schema as s
from store.exceptions import NewException, resolve_cleared

Stage = Callable[[Connection, ChannelDays, int], StageOutcome]

# Flags an edit clears: the value is now a person's, not a source's or VEE's.
_CLEARED_BY_EDIT = (MISSING | ESTIMATED | HUB_ESTIMATE_BITS | pb.QUALITY_FLAG_SUSPECT | pb.QUALITY_FLAG_APPROVED
                    | pb.QUALITY_FLAG_ESTIMATE_SCALED | pb.QUALITY_FLAG_VALIDATED)
_FAILED_BITS = sum(v for k, v in pb.QualityFlag.items() if k.startswith("QUALITY_FLAG_FAILED_"))


class ChannelNotFound(MeterhubError):
    status = StatusCode.NOT_FOUND
    reason = "CHANNEL_NOT_FOUND"


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    meter_id: str
    flow_direction: int
    kind: int
    interval_seconds: int


def find_channel(conn: Connection, choice: ChannelChoice) -> repo.ChannelInfo:
    c, m = s.channels, s.meters
    q = select(c.c.id).join(m, m.c.id == c.c.meter_pk).where(m.c.meter_id == choice.meter_id)
    if choice.flow_direction:
        q = q.where(c.c.flow_direction == choice.flow_direction)
    if choice.kind:
        q = q.where(c.c.kind == choice.kind)
    if choice.interval_seconds:
        q = q.where(c.c.interval_seconds == choice.interval_seconds)
    ids = [r[0] for r in conn.execute(q)]
    if len(ids) != 1:
        what = "no channel" if not ids else f"{len(ids)} channels"
        raise ChannelNotFound(f"{what} of meter {choice.meter_id!r} match the selector; "
                              "give flow_direction, kind and interval_seconds")
    return repo.channel_infos(conn, ids)[ids[0]]


def _days_and_slots(ends_s: Sequence[int], interval: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    ends = np.asarray(ends_s, dtype=np.int64)
    if np.any(ends % interval):
        raise IngestRejected(f"interval end times must be aligned to {interval} s", reason="MISALIGNED_INTERVAL")
    starts = ends - interval
    return starts // SECONDS_PER_DAY, (starts % SECONDS_PER_DAY) // interval


def edit_intervals(conn: Connection, channel: repo.ChannelInfo, edits: Sequence[tuple[int, int]], *,
                   editor: str, reason: str, now_us: int,
                   revalidate: Stage | None = None) -> tuple[ChannelDays, list[NewException]]:
    """Apply (interval_end_s, value) edits, re-validate the edited days, write
    them as new versions; returns what was written and the items VEE opened."""
    if not edits:
        raise IngestRejected("no edits given")
    interval = channel.interval_seconds
    days, slots = _days_and_slots([e[0] for e in edits], interval)
    values = np.array([e[1] for e in edits], dtype=np.int64)
    uniq_days = np.unique(days)
    ids = np.full(len(uniq_days), channel.id, dtype=np.int64)
    stored = repo.load_blocks(conn, ids, uniq_days, SECONDS_PER_DAY // interval)
    new_values, new_q = stored.values.copy(), stored.qualities.copy()
    new_q[stored.version == 0] = MISSING
    row = np.searchsorted(uniq_days, days)
    new_values[row, slots] = values
    new_q[row, slots] = (new_q[row, slots] & ~(_CLEARED_BY_EDIT | _FAILED_BITS)) | EDITED
    items: list[NewException] = []
    if revalidate is not None:
        outcome = revalidate(conn, ChannelDays(interval, ids, uniq_days, new_values, new_q, (new_q & MISSING) == 0),
                             now_us)
        new_values, new_q, items = outcome.values, outcome.qualities, list(outcome.exceptions)
        resolve_cleared(conn, [(channel.id, int(d)) for d in uniq_days],
                        {(e.rule, e.channel_id, e.start_time_us, e.end_time_us) for e in items}, now_us)
    repo.write_blocks(conn, interval_seconds=interval, channel_ids=ids, days=uniq_days, values=new_values,
                      qualities=new_q, stored=stored, history_rows=stored.version > 0, superseded_by=editor,
                      reason=reason, now_us=now_us, action="EDIT")
    return ChannelDays(interval, ids, uniq_days, new_values, new_q, (new_q & MISSING) == 0), items


def approve_estimates(conn: Connection, channel: repo.ChannelInfo, start_s: int, end_s: int, *,
                      approver: str, reason: str, now_us: int) -> int:
    """Mark estimates with interval ends in (start_s, end_s] approved; returns how many."""
    interval = channel.interval_seconds
    first_day, last_day = start_s // SECONDS_PER_DAY, (end_s - 1) // SECONDS_PER_DAY
    day_list = np.arange(first_day, last_day + 1, dtype=np.int64)
    ids = np.full(len(day_list), channel.id, dtype=np.int64)
    stored = repo.load_blocks(conn, ids, day_list, SECONDS_PER_DAY // interval)
    ends = day_list[:, None] * SECONDS_PER_DAY + interval * np.arange(1, SECONDS_PER_DAY // interval + 1)
    target = ((stored.qualities & ESTIMATED) != 0) & ((stored.qualities & pb.QUALITY_FLAG_APPROVED) == 0)
    target &= (ends > start_s) & (ends <= end_s) & (stored.version[:, None] > 0)
    rows = target.any(axis=1)
    if not rows.any():
        return 0
    new_q = stored.qualities | np.where(target, pb.QUALITY_FLAG_APPROVED, 0)
    idx = np.flatnonzero(rows)
    repo.write_blocks(conn, interval_seconds=interval, channel_ids=ids[idx], days=day_list[idx],
                      values=stored.values[idx], qualities=new_q[idx],
                      stored=repo.StoredBlocks(stored.version[idx], stored.values[idx], stored.qualities[idx],
                                               [stored.head_end[i] for i in idx], stored.update_time_us[idx]),
                      history_rows=np.ones(len(idx), dtype=np.bool_), superseded_by=approver, reason=reason,
                      now_us=now_us, action="APPROVE")
    return int(target.sum())


@dataclass(frozen=True, slots=True)
class AuditRecord:
    change_time_us: int
    actor: str
    action: str
    reason: str
    meter_id: str
    interval_end_s: int
    old_value: int | None
    new_value: int
    old_quality: int | None
    new_quality: int
    version: int


def audit_trail(conn: Connection, meter_ids: Sequence[str], start_s: int, end_s: int) -> list[AuditRecord]:
    """Every recorded change of the meters' intervals ending in (start_s, end_s],
    plus their meter exchanges, in time order."""
    channel_ids = repo.find_channels(conn, list(meter_ids), 0, 0)
    infos = repo.channel_infos(conn, channel_ids)
    first_day, last_day = start_s // SECONDS_PER_DAY, (end_s - 1) // SECONDS_PER_DAY
    bc, h, b = s.block_changes, s.interval_block_history, s.interval_blocks
    out: list[AuditRecord] = []
    if channel_ids:
        changes = conn.execute(select(bc.c.channel_id, bc.c.day, bc.c.version, bc.c.commit_time_us, bc.c.actor,
                                      bc.c.action, bc.c.reason).where(
            bc.c.channel_id.in_(channel_ids), bc.c.day >= first_day, bc.c.day <= last_day)).all()
        versions: dict[tuple[int, int], dict[int, tuple[bytes, bytes]]] = defaultdict(dict)
        for cid, day, ver, vals, quals in conn.execute(select(h.c.channel_id, h.c.day, h.c.version, h.c["values"],
                                                              h.c.qualities).where(
                h.c.channel_id.in_(channel_ids), h.c.day >= first_day, h.c.day <= last_day)):
            versions[(cid, day)][ver] = (vals, quals)
        for cid, day, ver, vals, quals in conn.execute(select(b.c.channel_id, b.c.day, b.c.version, b.c["values"],
                                                              b.c.qualities).where(
                and_(b.c.channel_id.in_(channel_ids), b.c.day >= first_day, b.c.day <= last_day))):
            versions[(cid, day)][ver] = (vals, quals)
        for cid, day, ver, when, actor, action, reason in changes:
            info = infos[cid]
            new = versions[(cid, day)].get(ver)
            if new is None:
                continue
            nv, nq = np.frombuffer(new[0], "<i8"), np.frombuffer(new[1], "<i4").astype(np.int64)
            ends = day * SECONDS_PER_DAY + info.interval_seconds * np.arange(1, len(nv) + 1)
            in_range = (ends > start_s) & (ends <= end_s)
            old = versions[(cid, day)].get(ver - 1)
            if old is not None:
                ov, oq = np.frombuffer(old[0], "<i8"), np.frombuffer(old[1], "<i4").astype(np.int64)
                changed = ((ov != nv) | (oq != nq)) & in_range
                had_old = (oq & MISSING) == 0
            else:
                # No earlier version kept (first delivery or a gap filled by the
                # source): only estimates VEE made are changes worth auditing.
                ov, oq = np.zeros_like(nv), np.full_like(nq, MISSING)
                changed = ((nq & HUB_ESTIMATE_BITS) != 0) & in_range
                had_old = np.zeros(len(nv), dtype=np.bool_)
            for k in np.flatnonzero(changed):
                estimate = bool(nq[k] & HUB_ESTIMATE_BITS) and action.startswith("SOURCE")
                out.append(AuditRecord(
                    change_time_us=int(when), actor="vee" if estimate else actor,
                    action="ESTIMATE" if estimate else action, reason=reason, meter_id=info.meter_id,
                    interval_end_s=int(ends[k]), old_value=int(ov[k]) if had_old[k] else None,
                    new_value=int(nv[k]), old_quality=int(oq[k]) if had_old[k] else None,
                    new_quality=int(nq[k]), version=int(ver)))
    mi = s.meter_installs
    for meter_id, install_us, remove_us, start_wh, final_wh, upd in conn.execute(
            select(mi.c.meter_id, mi.c.install_time_us, mi.c.remove_time_us, mi.c.start_read_wh, mi.c.final_read_wh,
                   mi.c.update_time_us).where(mi.c.meter_id.in_(list(meter_ids)))):
        for at_us, value, what in ((install_us, start_wh, "installed"), (remove_us, final_wh, "removed")):
            if at_us and start_s * 1_000_000 <= at_us <= end_s * 1_000_000:
                out.append(AuditRecord(int(upd), "cis", "METER_EXCHANGE", f"meter {what}; register read (Wh)",
                                       meter_id, at_us // 1_000_000, None, int(value), None, 0, 0))
    out.sort(key=lambda r: (r.change_time_us, r.meter_id, r.interval_end_s))
    return out


def render_audit(records: Sequence[AuditRecord], fmt: str) -> tuple[bytes, str]:
    rows = [asdict(r) for r in records]
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(AuditRecord.__slots__)
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode(), "text/csv"
    return json.dumps(rows, indent=1).encode(), "application/json"
