"""The change feed: committed channel-days in commit order, as canonical blocks."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Engine

from gateway.ingest import SECONDS_PER_DAY
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from store import repository as repo


def reading_type_of(info: repo.ChannelInfo) -> pb.ReadingType:
    return pb.ReadingType(
        commodity=info.commodity, kind=info.kind, unit=info.unit,  # type: ignore[arg-type]
        flow_direction=info.flow_direction, accumulation=info.accumulation,  # type: ignore[arg-type]
        power_of_ten_multiplier=info.power_of_ten_multiplier, cim_code=info.cim_code,
        device_channel=info.device_channel,
    )


def stored_block(
    info: repo.ChannelInfo, day: int, version: int, interval: int, values: bytes, qualities: bytes,
    update_us: int, start_s: int | None = None, end_s: int | None = None,
) -> rs.StoredIntervalBlock:
    """A stored channel-day as a canonical block, trimmed to the intervals inside
    [start_s, end_s], i.e. with ends in (start_s, end_s]."""
    vals = np.frombuffer(values, dtype="<i8")
    quals = np.frombuffer(qualities, dtype="<i4")
    ends = day * SECONDS_PER_DAY + interval * np.arange(1, len(vals) + 1, dtype=np.int64)
    lo = 0 if start_s is None else int(np.searchsorted(ends, start_s, side="right"))
    hi = len(vals) if end_s is None else int(np.searchsorted(ends, end_s, side="right"))
    block = pb.IntervalBlock(
        meter_id=info.meter_id, reading_type=reading_type_of(info), interval_seconds=interval,
        values=vals[lo:hi].tolist(), qualities=quals[lo:hi].tolist(), meter_multiplier_applied=True,
    )
    if hi > lo:
        block.first_interval_end_time.FromSeconds(int(ends[lo]))
    out = rs.StoredIntervalBlock(block=block, channel_id=info.id, version=version)
    out.update_time.FromMicroseconds(update_us)
    return out



def read_feed(engine: Engine, after_seq: int, limit: int) -> list[tuple[int, rs.StoredIntervalBlock]]:
    """(seq, block) of the changes after ``after_seq``; each block as stored now."""
    out: list[tuple[int, rs.StoredIntervalBlock]] = []
    with engine.connect() as conn:
        feed = repo.changes_after(conn, after_seq, limit)
        infos = repo.channel_infos(conn, sorted({c[1] for c in feed}))
        for seq, channel_id, day, _version in feed:
            row = repo.block_at(conn, channel_id, day)
            if row is None:
                continue
            version, interval, values, qualities, update_us = row
            out.append((seq, stored_block(infos[channel_id], day, version, interval, values, qualities, update_us)))
    return out
