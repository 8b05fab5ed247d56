"""What the caller hands to a VEE run: the batch and the context it loaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vee.localtime import DayTypeFunction
from vee.runs import SECONDS_PER_DAY, BoolArray, Int64Array


@dataclass(frozen=True, slots=True)
class VeeBatch:
    """Channel-days of one interval length: ``values``/``qualities`` are
    [rows, 86400 // interval_seconds] int64, one row per (channel, UTC day).

    Slot i of day d is the interval [d*86400 + i*I, d*86400 + (i+1)*I) (UTC);
    MISSING in ``qualities`` means no value (its ``values`` entry is ignored).
    Rows may come in any order but (channel, day) must be unique.

    Per row: ``channel_ids``; ``days`` (days since 1970-01-01 UTC, int64 or
    datetime64[D]); ``active`` (meter status active); ``flow_directions``
    (meterhub.v1 FlowDirection numbers); ``meter_classes`` (selects the rule
    set; one string for the whole batch or one per row).
    Optional per row: ``high_limit_per_hour`` (overrides the rule's limit where
    > 0, e.g. from a service's rated capacity), ``clock_error_seconds``
    (meter clock offset seen at the read, for time_tolerance).
    ``as_of_seconds``: epoch seconds of "now"; intervals ending later are not
    due yet, so they are neither missing nor estimated (today's row).
    """

    interval_seconds: int
    channel_ids: Int64Array
    days: Int64Array | npt.NDArray[np.datetime64]
    values: Int64Array
    qualities: Int64Array
    active: BoolArray
    flow_directions: Int64Array
    meter_classes: str | Sequence[str] = "default"
    high_limit_per_hour: Int64Array | None = None
    clock_error_seconds: Int64Array | None = None
    as_of_seconds: int | None = None

    @property
    def slots(self) -> int:
        return SECONDS_PER_DAY // self.interval_seconds

    def __len__(self) -> int:
        return len(self.channel_ids)


@dataclass(frozen=True, slots=True)
class History:
    """Stored channel-days before the batch, for like-day estimation, for
    interpolation endpoints at midnight and for counting estimated days.
    Same layout as the batch (rows, slots); rows that the batch also holds are
    ignored. Load it for the rows :meth:`VeeEngine.history_request` names."""

    channel_ids: Int64Array
    days: Int64Array
    values: Int64Array
    qualities: Int64Array

    @classmethod
    def empty(cls, slots: int) -> History:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, np.zeros((0, slots), dtype=np.int64), np.zeros((0, slots), dtype=np.int64))


@dataclass(frozen=True, slots=True)
class RegisterSpans:
    """Register deltas: for channel c, the register grew by ``deltas`` counts
    (in the interval channel's resolution, multiplier applied) between
    ``start_seconds`` and ``end_seconds`` (epoch, UTC). The span covers the
    intervals ending in (start, end]; both must be interval boundaries."""

    channel_ids: Int64Array
    start_seconds: Int64Array
    end_seconds: Int64Array
    deltas: Int64Array

    def __len__(self) -> int:
        return len(self.channel_ids)


@dataclass(frozen=True, slots=True)
class VeeContext:
    """Optional context the caller loads from the store for one run."""

    history: History | None = None
    registers: RegisterSpans | None = None
    day_types: DayTypeFunction | None = None
