"""The deterministic consumption model of the DLMS meter simulator.

Every value is a pure function of (meter id, interval end, fault settings):
tests and the demo recompute what a meter served without talking to it.
Whole arrays at a time (numpy); energy is integer Wh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from adapters.dlms.cosem import ProfileStatus

Int64Array = npt.NDArray[np.int64]
UInt64Array = npt.NDArray[np.uint64]

# Registers count energy from this instant.
REGISTER_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
METER_ID_PREFIX = "DLMS-"
PPM = 1_000_000

# Relative load per UTC hour, per mille of the meter's base load.
_DAILY_SHAPE = np.array([420, 380, 350, 340, 350, 420, 650, 900, 850, 720, 680, 690,
                         720, 680, 650, 700, 850, 1150, 1350, 1300, 1150, 950, 720, 520], dtype=np.int64)
# Solar export per UTC hour, per mille of the meter's peak.
_SOLAR_SHAPE = np.array([0, 0, 0, 0, 0, 0, 20, 120, 300, 520, 720, 880,
                         950, 900, 760, 560, 330, 120, 20, 0, 0, 0, 0, 0], dtype=np.int64)

_SALT_IMPORT = np.uint64(0x1D)
_SALT_EXPORT = np.uint64(0x2E)
_SALT_FAULT = np.uint64(0x3F)


def meter_id(index: int) -> str:
    """Deterministic meter id of the index-th simulated meter (1-based)."""
    return f"{METER_ID_PREFIX}{index:06d}"


def meter_seed(meter: str) -> int:
    return int.from_bytes(hashlib.blake2b(meter.encode(), digest_size=8).digest(), "big")


def _mix(values: UInt64Array) -> UInt64Array:
    """splitmix64 finaliser over a whole array (uint64 arithmetic wraps)."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hash(seed: int, salt: np.uint64, ends: Int64Array) -> Int64Array:
    keyed = ends.astype(np.uint64) * np.uint64(0x100000001B3) ^ np.uint64(seed) ^ (salt << np.uint64(56))
    return (_mix(keyed) >> np.uint64(1)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection. Rates are probabilities per interval (per meter for drift)."""

    gap_rate: float = 0.0
    power_fail_rate: float = 0.0
    spike_rate: float = 0.0
    drift_rate: float = 0.0
    drift_seconds: int = 0
    spike_factor: int = 25

    def __post_init__(self) -> None:
        for name in ("gap_rate", "power_fail_rate", "spike_rate", "drift_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.gap_rate + self.power_fail_rate + self.spike_rate > 1.0:
            raise ValueError("gap, power-fail and spike rates add up to more than 1")


NO_FAULTS = Faults()


@dataclass(frozen=True, slots=True)
class ProfileRows:
    """Entries of a load profile: interval ends (epoch seconds), status byte, import
    and export Wh per interval."""

    ends: Int64Array
    status: Int64Array
    import_wh: Int64Array
    export_wh: Int64Array

    def __len__(self) -> int:
        return len(self.ends)

    def take(self, index: slice | Int64Array | npt.NDArray[np.bool_]) -> ProfileRows:
        return ProfileRows(self.ends[index], self.status[index], self.import_wh[index], self.export_wh[index])


@dataclass(frozen=True, slots=True)
class ConsumptionModel:
    interval_seconds: int = 900
    faults: Faults = NO_FAULTS

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or 86400 % self.interval_seconds:
            raise ValueError(f"interval_seconds {self.interval_seconds} must divide 86400")

    def true_values(self, meter: str, ends: Int64Array) -> tuple[Int64Array, Int64Array]:
        """Import and export Wh of the intervals ending at ``ends``, before faults."""
        seed = meter_seed(meter)
        scale = self.interval_seconds
        hours = (ends - 1) // 3600 % 24
        base = 40 + seed % 160  # Wh per 15 minutes at shape 1000
        noise = _hash(seed, _SALT_IMPORT, ends) % 401 - 200  # +-20 %
        import_wh = base * _DAILY_SHAPE[hours] * (1000 + noise) * scale // (1000 * 1000 * 900)
        if seed % 3 == 0:
            peak = 60 + (seed >> 8) % 240
            cloud = _hash(seed, _SALT_EXPORT, ends) % 501 + 500  # 50..100 %
            export_wh = peak * _SOLAR_SHAPE[hours] * cloud * scale // (1000 * 1000 * 900)
        else:
            export_wh = np.zeros(len(ends), dtype=np.int64)
        return import_wh.astype(np.int64), export_wh.astype(np.int64)

    def rows(self, meter: str, first_end: int, last_end: int) -> ProfileRows:
        """Entries with first_end <= end <= last_end (aligned), faults applied, gaps removed."""
        step = self.interval_seconds
        first = -(-first_end // step) * step
        ends = np.arange(first, last_end + 1, step, dtype=np.int64)
        import_wh, export_wh = self.true_values(meter, ends)
        status = np.zeros(len(ends), dtype=np.int64)
        f = self.faults
        if f.gap_rate or f.power_fail_rate or f.spike_rate:
            draw = _hash(meter_seed(meter), _SALT_FAULT, ends) % PPM
            gap_end = int(f.gap_rate * PPM)
            fail_end = gap_end + int(f.power_fail_rate * PPM)
            spike_end = fail_end + int(f.spike_rate * PPM)
            power_fail = (draw >= gap_end) & (draw < fail_end)
            spike = (draw >= fail_end) & (draw < spike_end)
            status[power_fail] = ProfileStatus.POWER_DOWN
            import_wh = np.where(power_fail, import_wh // 4, import_wh)
            import_wh = np.where(spike, import_wh * f.spike_factor, import_wh)
            keep = draw >= gap_end
            return ProfileRows(ends[keep], status[keep], import_wh[keep], export_wh[keep])
        return ProfileRows(ends, status, import_wh, export_wh)

    def registers(self, meter: str, at: datetime) -> tuple[int, int]:
        """Cumulative import and export Wh at ``at``: an offset per meter plus every
        true interval value since REGISTER_EPOCH (faults do not change energy)."""
        step = self.interval_seconds
        epoch = int(REGISTER_EPOCH.timestamp())
        last = int(at.timestamp()) // step * step
        ends = np.arange(epoch + step, last + 1, step, dtype=np.int64)
        import_wh, export_wh = self.true_values(meter, ends)
        offset = meter_seed(meter) % 5_000_000
        return offset + int(import_wh.sum()), int(export_wh.sum())

    def clock_offset(self, meter: str) -> int:
        """Seconds this meter's clock is ahead of true time (clock drift fault)."""
        f = self.faults
        if not f.drift_seconds or not f.drift_rate:
            return 0
        draw = int(_hash(meter_seed(meter), _SALT_FAULT, np.array([0], dtype=np.int64))[0]) % PPM
        return f.drift_seconds if draw < int(f.drift_rate * PPM) else 0
