"""VEE inside ingest: loads what a run needs from the store, runs the engine
on whole channel-day arrays, and hands back the arrays to write and the
exception items to open, all within the batch's transaction."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, select

from gateway.errors import ConfigError
from gateway.ingest import SECONDS_PER_DAY, ChannelDays, StageOutcome
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import model_pb2 as pb
from store import repository as repo
from store import schema as s
from store.exceptions import NewException
from vee import (
    DayTypeCalendar,
    History,
    RegisterSpans,
    Severity,
    VeeBatch,
    VeeContext,
    VeeEngine,
    default_config,
    parse_vee_config,
)

logger = logging.getLogger(__name__)

SEVERITY_CODES = {Severity.INFO: 1, Severity.WARNING: 2, Severity.ERROR: 3, Severity.CRITICAL: 4}


def build_vee_stage(table: Mapping[str, Any] | None) -> VeeStage:
    """From hub.toml's [vee] table: rulesets, time_zone and holidays."""
    table = dict(table or {})
    time_zone = table.pop("time_zone", "UTC")
    holidays_raw = table.pop("holidays", [])
    if not isinstance(time_zone, str):
        raise ConfigError("vee.time_zone must be an IANA zone name")
    if not isinstance(holidays_raw, list):
        raise ConfigError("vee.holidays must be a list of dates")
    holidays = []
    for h in holidays_raw:
        try:
            holidays.append(h if isinstance(h, date) else date.fromisoformat(str(h)))
        except ValueError:
            raise ConfigError(f"vee.holidays: {h!r} is not a date (YYYY-MM-DD)") from None
    config = parse_vee_config(table) if table else default_config()
    return VeeStage(VeeEngine(config), DayTypeCalendar(time_zone, holidays))


class VeeStage:
    def __init__(self, engine: VeeEngine, day_types: DayTypeCalendar) -> None:
        self._engine = engine
        self._day_types = day_types

    def __call__(self, conn: Connection, days: ChannelDays, now_us: int) -> StageOutcome:
        if len(days) == 0:
            return StageOutcome(days.values, days.qualities)
        infos = repo.channel_infos(conn, sorted({int(c) for c in days.channel_ids}))
        rows = [infos[int(c)] for c in days.channel_ids]
        batch = VeeBatch(
            interval_seconds=days.interval_seconds,
            channel_ids=days.channel_ids,
            days=days.days,
            values=days.values,
            qualities=days.qualities,
            active=self._active(conn, days, rows),
            flow_directions=np.array([i.flow_direction for i in rows], dtype=np.int64),
            meter_classes=[i.meter_class for i in rows],
            as_of_seconds=now_us // 1_000_000,
        )
        context = VeeContext(history=self._history(conn, batch), registers=self._registers(conn, days, rows),
                             day_types=self._day_types)
        result = self._engine.run(batch, context)
        exceptions = [
            NewException(rule=item.rule, channel_id=item.channel_id, meter_id=infos[item.channel_id].meter_id,
                         start_time_us=int(item.start_time.timestamp()) * 1_000_000,
                         end_time_us=int(item.end_time.timestamp()) * 1_000_000,
                         severity=SEVERITY_CODES[item.severity], message=item.message)
            for item in result.items
        ]
        return StageOutcome(result.values, result.qualities, exceptions, dict(result.counts))

    @staticmethod
    def _active(conn: Connection, days: ChannelDays, rows: list[repo.ChannelInfo]) -> npt.NDArray[np.bool_]:
        """Per channel-day: was the meter in service? A removed meter was, on
        the days its CIS installs cover: its reads from before the exchange
        are real usage, not usage on an inactive meter."""
        active = np.array([i.meter_status == adm.METER_STATUS_ACTIVE for i in rows], dtype=np.bool_)
        if active.all():
            return active
        mi = s.meter_installs
        idle = sorted({rows[i].meter_id for i in np.flatnonzero(~active).tolist()})
        windows: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for meter_id, install_us, remove_us in conn.execute(
                select(mi.c.meter_id, mi.c.install_time_us, mi.c.remove_time_us).where(mi.c.meter_id.in_(idle))):
            windows[meter_id].append((install_us // 1_000_000, remove_us // 1_000_000 if remove_us else 2**62))
        for i in np.flatnonzero(~active).tolist():
            lo = int(days.days[i]) * SECONDS_PER_DAY
            hi = lo + SECONDS_PER_DAY
            active[i] = any(start < hi and end > lo for start, end in windows.get(rows[i].meter_id, ()))
        return active

    def _history(self, conn: Connection, batch: VeeBatch) -> History:
        request = self._engine.history_request(batch)
        slots = batch.slots
        keys_c: list[int] = []
        keys_d: list[int] = []
        for cid, first, last in zip(request.channel_ids, request.first_days, request.last_days, strict=True):
            span = np.arange(int(first), int(last) + 1, dtype=np.int64)
            keys_c.extend([int(cid)] * len(span))
            keys_d.extend(span.tolist())
        if not keys_c:
            return History.empty(slots)
        stored = repo.load_blocks(conn, np.array(keys_c, dtype=np.int64), np.array(keys_d, dtype=np.int64), slots)
        have = stored.version > 0
        return History(np.array(keys_c, dtype=np.int64)[have], np.array(keys_d, dtype=np.int64)[have],
                       stored.values[have], stored.qualities[have])

    def _registers(self, conn: Connection, days: ChannelDays,
                   rows: list[repo.ChannelInfo]) -> RegisterSpans | None:
        """Register deltas over each channel-day, from the meter's cumulative
        register of the same quantity and direction (for sum checks and scaling)."""
        c, m, r = s.channels, s.meters, s.register_reads
        meter_ids = sorted({i.meter_id for i in rows})
        registers = conn.execute(
            select(c.c.id, m.c.meter_id, c.c.kind, c.c.flow_direction, c.c.power_of_ten_multiplier)
            .join(m, m.c.id == c.c.meter_pk)
            .where(repo.one_of(conn, m.c.meter_id, meter_ids), c.c.accumulation == pb.ACCUMULATION_CUMULATIVE,
                   c.c.interval_seconds == 0)
        ).all()
        if not registers:
            return None
        by_key = {(mid, kind, flow): (rid, exp) for rid, mid, kind, flow, exp in registers}
        start_us = int(days.days.min()) * SECONDS_PER_DAY * 1_000_000
        end_us = (int(days.days.max()) + 1) * SECONDS_PER_DAY * 1_000_000
        reads: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for rid, t_us, value in conn.execute(
                select(r.c.channel_id, r.c.read_time_us, r.c.value).where(
                    r.c.channel_id.in_([x[0] for x in registers]), r.c.read_time_us >= start_us,
                    r.c.read_time_us <= end_us).order_by(r.c.channel_id, r.c.read_time_us)):
            reads[rid].append((t_us // 1_000_000, value))
        out_c, out_s, out_e, out_d = [], [], [], []
        interval = days.interval_seconds
        for cid, day, info in zip(days.channel_ids, days.days, rows, strict=True):
            found = by_key.get((info.meter_id, info.kind, info.flow_direction))
            if found is None:
                continue
            rid, exponent = found
            lo, hi = int(day) * SECONDS_PER_DAY, (int(day) + 1) * SECONDS_PER_DAY
            inside = [(t, v) for t, v in reads.get(rid, []) if lo <= t <= hi and t % interval == 0]
            diff = exponent - info.power_of_ten_multiplier
            if len(inside) < 2 or diff < 0:
                continue
            (t0, v0), (t1, v1) = inside[0], inside[-1]
            if t1 > t0:
                out_c.append(int(cid))
                out_s.append(t0)
                out_e.append(t1)
                out_d.append((v1 - v0) * 10**diff)
        if not out_c:
            return None
        return RegisterSpans(np.array(out_c, dtype=np.int64), np.array(out_s, dtype=np.int64),
                             np.array(out_e, dtype=np.int64), np.array(out_d, dtype=np.int64))
