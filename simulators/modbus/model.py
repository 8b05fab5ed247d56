"""Deterministic meter behaviour: energy, power and grid values as functions of
(meter id, time), in exact integers.

Each meter has a weekly profile of 15-minute power levels (import, and export
for meters with solar) drawn from a PRNG seeded by its id. Energy is the exact
integral of that step function since ``INSTALL_US``, in watt-microseconds, so a
counter read at any microsecond is reproducible and never goes backwards.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

SLOT_US = 900 * 1_000_000
SLOTS_PER_DAY = 96
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY
WEEK_US = SLOTS_PER_WEEK * SLOT_US
# Counters start from zero at this instant (plus a per-meter initial reading).
INSTALL_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
# One watt-hour in watt-microseconds.
WH_IN_WUS = 3600 * 1_000_000


def _seed(meter_id: str) -> int:
    return int.from_bytes(hashlib.sha256(meter_id.encode()).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class MeterModel:
    meter_id: str
    import_w: tuple[int, ...]
    export_w: tuple[int, ...]
    # Cumulative energy at the start of each slot of the week, W·µs.
    import_prefix: tuple[int, ...]
    export_prefix: tuple[int, ...]
    initial_import_wus: int
    initial_export_wus: int

    @classmethod
    def for_meter(cls, meter_id: str) -> MeterModel:
        rng = random.Random(_seed(meter_id))
        size_w = rng.randrange(800, 20_000)
        solar_w = rng.randrange(1_000, 10_000) if rng.random() < 0.3 else 0
        import_w: list[int] = []
        export_w: list[int] = []
        for slot in range(SLOTS_PER_WEEK):
            day, in_day = divmod(slot, SLOTS_PER_DAY)
            hour = in_day / 4
            weekend = day >= 5
            occupancy = 0.25 + (0.75 if 7 <= hour < 19 and not weekend else 0.15)
            noise = 0.85 + 0.3 * rng.random()
            import_w.append(int(size_w * occupancy * noise))
            sun = max(0.0, math.sin(math.pi * (hour - 6) / 13)) if 6 <= hour < 19 else 0.0
            export_w.append(int(solar_w * sun * (0.7 + 0.3 * rng.random())))
        initial_import = rng.randrange(0, 50_000) * WH_IN_WUS
        initial_export = rng.randrange(0, 5_000) * WH_IN_WUS if solar_w else 0
        return cls(meter_id, tuple(import_w), tuple(export_w),
                   tuple(accumulate((p * SLOT_US for p in import_w), initial=0)),
                   tuple(accumulate((p * SLOT_US for p in export_w), initial=0)),
                   initial_import, initial_export)

    @staticmethod
    def _energy(powers: tuple[int, ...], prefix: tuple[int, ...], initial: int, t_us: int) -> int:
        elapsed = max(0, t_us - INSTALL_US)
        weeks, in_week = divmod(elapsed, WEEK_US)
        slot, in_slot = divmod(in_week, SLOT_US)
        return initial + weeks * prefix[-1] + prefix[slot] + powers[slot] * in_slot

    def import_wus(self, t_us: int) -> int:
        """Energy delivered to the customer since install, watt-microseconds."""
        return self._energy(self.import_w, self.import_prefix, self.initial_import_wus, t_us)

    def export_wus(self, t_us: int) -> int:
        return self._energy(self.export_w, self.export_prefix, self.initial_export_wus, t_us)

    def _slot(self, t_us: int) -> int:
        return (max(0, t_us - INSTALL_US) % WEEK_US) // SLOT_US

    def power_w(self, t_us: int) -> int:
        """Net active power (import positive)."""
        slot = self._slot(t_us)
        return self.import_w[slot] - self.export_w[slot]

    def demand_w(self, t_us: int) -> int:
        """Present demand: the import power of the current 15-minute slot."""
        return self.import_w[self._slot(t_us)]

    def max_demand_w(self, t_us: int) -> int:
        """Highest slot demand of the current day so far."""
        slot = self._slot(t_us)
        day_start = slot - slot % SLOTS_PER_DAY
        return max(self.import_w[day_start:slot + 1])

    def voltage_dv(self, t_us: int, phase: int) -> int:
        """Phase voltage in decivolts: 230 V with a small deterministic wobble."""
        return 2300 + (self._slot(t_us) * 7 + phase * 13 + len(self.meter_id)) % 41 - 20

    def frequency_chz(self, t_us: int) -> int:
        """Frequency in centihertz around 50 Hz."""
        return 5000 + (self._slot(t_us) * 11) % 9 - 4


def energy_count(wus: int, exponent: int) -> int:
    """Energy as an exact count of 10^exponent Wh (floor)."""
    power: int = 10 ** abs(exponent)
    if exponent >= 0:
        return wus // (WH_IN_WUS * power)
    return wus * power // WH_IN_WUS
