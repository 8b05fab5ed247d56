"""Row layout of a batch and vectorised run detection over it.

A batch is a [rows, slots] matrix of channel-days sorted by (channel, day).
Row r *continues* row r-1 when it is the next day of the same channel, so a
run of flagged slots (a gap, a zero run, a flat line) may cross midnight.
Everything here works on the flattened matrix with numpy; no per-read Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SECONDS_PER_DAY = 86_400
# Row keys pack (channel, day) into one int64: days since 1970 stay below 2**21.
DAY_BITS = 21


def row_keys(channel_ids: Int64Array, days: Int64Array) -> Int64Array:
    return (channel_ids.astype(np.int64) << DAY_BITS) | days.astype(np.int64)


@dataclass(slots=True)
class RowGrid:
    """Rows sorted by (channel, day), all of one interval length."""

    channel_ids: Int64Array
    days: Int64Array
    interval_seconds: int
    continues: BoolArray = field(init=False)
    # Flat indices where a run must break: starts of rows that do not continue.
    breaks: Int64Array = field(init=False)
    keys: Int64Array = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.channel_ids)
        cont = np.zeros(n, dtype=np.bool_)
        if n > 1:
            cont[1:] = (self.channel_ids[1:] == self.channel_ids[:-1]) & (self.days[1:] == self.days[:-1] + 1)
        self.continues = cont
        brk_rows = np.flatnonzero(~cont)
        self.breaks = (brk_rows[brk_rows > 0] * self.slots).astype(np.int64)
        self.keys = row_keys(self.channel_ids, self.days)

    @property
    def slots(self) -> int:
        return SECONDS_PER_DAY // self.interval_seconds

    @property
    def size(self) -> int:
        return len(self.channel_ids) * self.slots

    def find_rows(self, channel_ids: Int64Array, days: Int64Array) -> Int64Array:
        """Row index of each (channel, day), or -1 when the batch lacks it."""
        keys = row_keys(channel_ids, days)
        pos = np.searchsorted(self.keys, keys)
        pos_c = np.minimum(pos, max(len(self.keys) - 1, 0))
        found = (pos < len(self.keys)) & (self.keys[pos_c] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        return np.where(found, pos_c, -1).astype(np.int64)

    def slot_start_seconds(self, flat: Int64Array) -> Int64Array:
        """Epoch seconds (UTC) at which the interval at each flat index starts."""
        s = self.slots
        return self.days[flat // s] * SECONDS_PER_DAY + (flat % s) * self.interval_seconds

    def runs(self, mask: BoolArray) -> tuple[Int64Array, Int64Array]:
        """Inclusive (start, end) flat indices of the maximal runs of True."""
        x = mask.reshape(-1)
        n = x.size
        if n == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        change = np.flatnonzero(x[1:] != x[:-1]) + 1
        seg_start = np.concatenate((np.zeros(1, dtype=np.int64), change))
        seg_end = np.concatenate((change, np.array([n], dtype=np.int64))) - 1
        on = x[seg_start]
        starts, ends = seg_start[on], seg_end[on]
        if len(self.breaks):
            split = self.breaks[x[self.breaks] & x[self.breaks - 1]]
            if len(split):
                starts = np.sort(np.concatenate((starts, split)))
                ends = np.sort(np.concatenate((ends, split - 1)))
        return starts.astype(np.int64), ends.astype(np.int64)

    def mark(self, starts: Int64Array, ends: Int64Array) -> BoolArray:
        """A [rows, slots] mask with the given inclusive runs set."""
        out = np.zeros(self.size, dtype=np.bool_)
        out[expand_runs(starts, ends)] = True
        return out.reshape(len(self.channel_ids), self.slots)

    def previous_defined(self) -> BoolArray:
        """Flat mask: the element has a predecessor in the same channel's time line."""
        prev = np.ones(self.size, dtype=np.bool_)
        if self.size:
            prev[0] = False
            prev[self.breaks] = False
        return prev


def expand_runs(starts: Int64Array, ends: Int64Array) -> Int64Array:
    """All indices covered by inclusive runs, in run order."""
    lengths = ends - starts + 1
    total = int(lengths.sum()) if len(lengths) else 0
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    out: Int64Array = np.arange(total, dtype=np.int64) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    return out


def positions_in_runs(starts: Int64Array, ends: Int64Array) -> Int64Array:
    """1-based position of every expanded index within its run."""
    lengths = ends - starts + 1
    total = int(lengths.sum()) if len(lengths) else 0
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    out: Int64Array = np.arange(total, dtype=np.int64) - np.repeat(offsets, lengths) + 1
    return out
