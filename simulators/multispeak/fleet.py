"""Deterministic meter data: every value is a pure function of (meter id, interval end)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
# Register growth per interval is BASE_WH plus a meter- and time-dependent part within +-JITTER_WH
# (JITTER_WH < BASE_WH, so the register only grows).
BASE_WH = 300
JITTER_WH = 250


def meter_ids(count: int, prefix: str = "MSP") -> tuple[str, ...]:
    return tuple(f"{prefix}-{i:06d}" for i in range(1, count + 1))


def _hash(meter_id: str, index: int, salt: bytes = b"") -> int:
    digest = hashlib.blake2b(f"{meter_id}|{index}".encode() + salt, digest_size=8).digest()
    return int.from_bytes(digest, "big")


def wh_text(wh: int) -> str:
    """Watt-hours as an exact kWh decimal string ("1.234")."""
    sign = "-" if wh < 0 else ""
    return f"{sign}{abs(wh) // 1000}.{abs(wh) % 1000:03d}"


@dataclass(frozen=True, slots=True)
class FleetData:
    interval_seconds: int = 900

    def index(self, end: datetime) -> int:
        return int((end - EPOCH).total_seconds()) // self.interval_seconds

    def register_wh(self, meter_id: str, end: datetime) -> int:
        """Cumulative kWh register (in Wh) at an interval end; only ever grows."""
        k = self.index(end)
        return BASE_WH * k + _hash(meter_id, k) % JITTER_WH

    def interval_wh(self, meter_id: str, end: datetime) -> int:
        """Energy of the interval that ends at ``end``: the register's growth over it."""
        k = self.index(end)
        return BASE_WH + _hash(meter_id, k) % JITTER_WH - _hash(meter_id, k - 1) % JITTER_WH

    def ends(self, start: datetime, stop: datetime) -> list[datetime]:
        """Interval ends in (start, stop], aligned."""
        step = self.interval_seconds
        first = (int(start.timestamp()) // step + 1) * step
        last = int(stop.timestamp()) // step * step
        return [datetime.fromtimestamp(t, UTC) for t in range(first, last + 1, step)]

    def chance(self, meter_id: str, end: datetime, salt: str) -> float:
        """A deterministic number in [0, 1) for fault injection."""
        return _hash(meter_id, self.index(end), salt.encode()) / 2**64

    @staticmethod
    def day_start(when: datetime) -> datetime:
        return when.replace(hour=0, minute=0, second=0, microsecond=0)

    def day_windows(self, start: datetime, stop: datetime) -> list[tuple[datetime, datetime]]:
        """(start, stop] cut at UTC midnights, one window per meter-day block."""
        out = []
        cursor = start
        while cursor < stop:
            nxt = min(self.day_start(cursor) + timedelta(days=1), stop)
            out.append((cursor, nxt))
            cursor = nxt
        return out
