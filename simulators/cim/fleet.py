"""A deterministic fleet of interval meters (ids ``CIM-000001``...).

Values are a pure function of (meter, interval end), so tests and the demo
know exactly what the hub must end up storing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from meterhub.v1 import model_pb2 as pb

KWH_15MIN_DELIVERED = "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0"
REGISTER_DELIVERED = "0.0.0.9.1.1.12.0.0.0.0.0.0.0.0.3.72.0"
_PERIOD_CODES = {5: "0.0.6.4", 10: "0.0.1.4", 15: "0.0.2.4", 30: "0.0.5.4", 60: "0.0.7.4"}


def meter_id(index: int, prefix: str = "CIM") -> str:
    return f"{prefix}-{index + 1:06d}"


@dataclass(frozen=True, slots=True)
class Fleet:
    meters: int
    start: datetime
    days: int = 1
    interval_minutes: int = 15
    prefix: str = "CIM"

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if self.interval_minutes not in _PERIOD_CODES:
            raise ValueError(f"interval_minutes must be one of {sorted(_PERIOD_CODES)}")

    @property
    def interval_seconds(self) -> int:
        return self.interval_minutes * 60

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def meter_ids(self) -> tuple[str, ...]:
        return tuple(meter_id(i, self.prefix) for i in range(self.meters))

    @property
    def reading_type_code(self) -> str:
        return _PERIOD_CODES[self.interval_minutes] + ".1.1.12.0.0.0.0.0.0.0.0.3.72.0"

    @property
    def intervals_per_meter(self) -> int:
        return int((self.end - self.start).total_seconds()) // self.interval_seconds

    def index_of(self, meter: str) -> int:
        prefix, _, number = meter.rpartition("-")
        if prefix != self.prefix or not number.isdigit() or not 1 <= int(number) <= self.meters:
            raise KeyError(meter)
        return int(number) - 1

    def values(self, meter_index: int, ends: np.ndarray) -> np.ndarray:
        """Wh per interval: a daily shape plus a per-meter offset, exact integers."""
        slot = (ends // self.interval_seconds).astype(np.int64)
        return 50 + (meter_index * 37 + slot * 13) % 400 + ((slot * self.interval_seconds) % 86400) // 3600 * 5

    def qualities(self, meter_index: int, ends: np.ndarray) -> np.ndarray:
        slot = (ends // self.interval_seconds).astype(np.int64)
        flags = np.zeros(ends.shape, dtype=np.int64)
        flags[(slot + meter_index) % 199 == 0] = pb.QUALITY_FLAG_POWER_FAIL
        flags[(slot + meter_index) % 331 == 0] = pb.QUALITY_FLAG_ESTIMATED
        return flags

    def interval_ends(self, start: datetime, end: datetime) -> np.ndarray:
        """Ends in (start, end], clipped to the fleet's period."""
        lo = max(start, self.start)
        hi = min(end, self.end)
        step = self.interval_seconds
        first = -(-int(lo.timestamp()) // step) * step
        if first == int(lo.timestamp()):
            first += step
        last = int(hi.timestamp()) // step * step
        if last < first:
            return np.zeros(0, dtype=np.int64)
        return np.arange(first, last + 1, step, dtype=np.int64)

    def reading_type(self) -> pb.ReadingType:
        return pb.ReadingType(
            commodity=pb.COMMODITY_ELECTRICITY, kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY, unit=pb.UNIT_WATT_HOUR,
            flow_direction=pb.FLOW_DIRECTION_DELIVERED, accumulation=pb.ACCUMULATION_DELTA,
            power_of_ten_multiplier=0, cim_code=self.reading_type_code)

    def blocks(self, meters: Sequence[str], start: datetime, end: datetime) -> list[pb.IntervalBlock]:
        """One block per meter per UTC day of the window (a message carries meter-days)."""
        ends = self.interval_ends(start, end)
        out: list[pb.IntervalBlock] = []
        if ends.size == 0:
            return out
        days = (ends - 1) // 86400
        cuts = np.flatnonzero(np.diff(days)) + 1
        reading_type = self.reading_type()
        for meter in meters:
            index = self.index_of(meter)
            values = self.values(index, ends)
            qualities = self.qualities(index, ends)
            for part in np.split(np.arange(ends.size), cuts):
                block = pb.IntervalBlock(meter_id=meter, reading_type=reading_type,
                                         interval_seconds=self.interval_seconds, meter_multiplier_applied=True)
                block.first_interval_end_time.seconds = int(ends[part[0]])
                block.values.extend(values[part].tolist())
                if qualities[part].any():
                    block.qualities.extend(qualities[part].tolist())
                out.append(block)
        return out

    def expected(self, meter: str) -> dict[datetime, int]:
        """Every interval value of a meter by end time (UTC)."""
        ends = self.interval_ends(self.start, self.end)
        values = self.values(self.index_of(meter), ends)
        return {datetime.fromtimestamp(int(e), UTC): int(v) for e, v in zip(ends, values, strict=True)}
