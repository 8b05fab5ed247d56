"""Crafted channel-day batches for VEE tests."""

from __future__ import annotations

import numpy as np

from meterhub.v1 import model_pb2 as pb
from vee import VeeBatch
from vee.runs import Int64Array

DAY = 20_000  # 2024-10-04, a Friday
SLOTS_15 = 96


def rows(n: int, value: int = 100, slots: int = SLOTS_15) -> tuple[Int64Array, Int64Array]:
    """Values that pass every default rule: a gentle daily pattern."""
    base = value + (np.arange(slots, dtype=np.int64) % 7)
    return np.tile(base, (n, 1)), np.zeros((n, slots), dtype=np.int64)


def batch(
    values: Int64Array,
    qualities: Int64Array,
    *,
    channels: list[int] | None = None,
    days: list[int] | None = None,
    interval: int = 900,
    active: list[bool] | None = None,
    flows: list[int] | None = None,
    **kw: object,
) -> VeeBatch:
    n = values.shape[0]
    return VeeBatch(
        interval_seconds=interval,
        channel_ids=np.array(channels or [1] * n, dtype=np.int64),
        days=np.array(days or [DAY + i for i in range(n)], dtype=np.int64),
        values=values,
        qualities=qualities,
        active=np.array(active or [True] * n, dtype=np.bool_),
        flow_directions=np.array(flows or [pb.FLOW_DIRECTION_DELIVERED] * n, dtype=np.int64),
        **kw,  # type: ignore[arg-type]
    )
