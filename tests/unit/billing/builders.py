"""Channel-day rows shaped like the store's, for billing tests."""

from __future__ import annotations

import datetime as dt

import numpy as np

from gateway.billing import ChannelDays
from meterhub.v1 import model_pb2 as pb

VALIDATED = int(pb.QUALITY_FLAG_VALIDATED)
MISSING = int(pb.QUALITY_FLAG_MISSING)
ESTIMATED = int(pb.QUALITY_FLAG_ESTIMATED)
INTERPOLATED = int(pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED)
EDITED = int(pb.QUALITY_FLAG_EDITED)
SUSPECT = int(pb.QUALITY_FLAG_SUSPECT)
APPROVED = int(pb.QUALITY_FLAG_APPROVED)
UTC = dt.UTC
EPOCH = dt.date(1970, 1, 1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def channel(first_day: dt.date, days: int, *, interval: int = 900, value: int = 0, quality: int = VALIDATED,
            power: int = 0) -> ChannelDays:
    """``days`` UTC-day rows from ``first_day``, every slot ``value`` / ``quality``."""
    slots = 86_400 // interval
    day0 = (first_day - EPOCH).days
    return ChannelDays(interval, np.arange(day0, day0 + days, dtype=np.int64),
                       np.full((days, slots), value, dtype=np.int64),
                       np.full((days, slots), quality, dtype=np.int64), power)


def starts_of(ch: ChannelDays) -> np.ndarray:  # type: ignore[type-arg]
    """[rows, slots] UTC epoch seconds of each slot's interval start."""
    return ch.days[:, None] * 86_400 + np.arange(ch.values.shape[1])[None, :] * ch.interval_seconds


def set_interval(ch: ChannelDays, end: dt.datetime, value: int, quality: int = VALIDATED) -> None:
    """Set the interval identified by its END instant."""
    start = int(end.timestamp()) - ch.interval_seconds
    row = int(np.searchsorted(ch.days, start // 86_400))
    assert ch.days[row] == start // 86_400, "no row for that interval"
    slot = (start % 86_400) // ch.interval_seconds
    ch.values[row, slot] = value
    ch.qualities[row, slot] = quality
