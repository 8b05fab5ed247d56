"""What a simulated MQTT head-end publishes. Pure: no I/O.

A fleet is meters x days of interval data. Values are reproducible from
(meter id, interval end) alone (``expected_values``), so a test can check what
the hub stored without keeping what was sent. Messages carry several
meter-day IntervalBlocks (never single reads). Faults are drawn from one
seeded generator, so a (spec, faults) pair always yields the same messages:

- gaps: a meter-day loses a run of 1-8 intervals (the block is split around it);
- spikes: an interval value is multiplied by SPIKE_FACTOR;
- duplicates: a message is published a second time, right after the next one;
- malformed: an undecodable payload is published before a good message
  (garbage bytes, truncated protobuf, broken JSON, or JSON breaking the schema).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from adapters.mqtt.normalize import JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, batch_to_json
from meterhub.v1 import model_pb2 as pb

METER_PREFIX = "MQTT-"
SPIKE_FACTOR = 25
MAX_GAP_INTERVALS = 8
# Percent of the meter's base load per hour of the UTC day: a residential shape.
HOURLY_SHAPE = np.array([60, 55, 50, 50, 55, 70, 100, 120, 110, 95, 90, 90,
                         95, 90, 90, 95, 110, 140, 160, 150, 130, 110, 90, 70], dtype=np.int64)
READING_TYPE = pb.ReadingType(
    commodity=pb.COMMODITY_ELECTRICITY, kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY, unit=pb.UNIT_WATT_HOUR,
    flow_direction=pb.FLOW_DIRECTION_DELIVERED, accumulation=pb.ACCUMULATION_DELTA, power_of_ten_multiplier=0,
    cim_code="0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.0.72.0",
)
MALFORMED_KINDS = ("garbage", "truncated_protobuf", "broken_json", "json_schema")

Int64Array = npt.NDArray[np.int64]
PayloadFormat = Literal["protobuf", "json"]


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probabilities: gaps per meter-day, spikes per interval, duplicates and
    malformed payloads per message."""

    gaps: float = 0.0
    spikes: float = 0.0
    duplicates: float = 0.0
    malformed: float = 0.0
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("gaps", "spikes", "duplicates", "malformed"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {name}={rate} must be between 0 and 1")

    @classmethod
    def parse(cls, text: str) -> FaultRates:
        """``"gaps=0.01,spikes=0.001,duplicates=0.02,malformed=0.01,seed=7"``; empty means none."""
        values: dict[str, float] = {}
        seed = 1
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in {"gaps", "spikes", "duplicates", "malformed", "seed"}:
                raise ValueError(f"fault {part!r}: expected gaps=, spikes=, duplicates=, malformed= or seed=")
            try:
                if key == "seed":
                    seed = int(raw)
                else:
                    values[key] = float(raw)
            except ValueError as exc:
                raise ValueError(f"fault {part!r}: {raw!r} is not a number") from exc
        return cls(seed=seed, **values)

    @property
    def any(self) -> bool:
        return bool(self.gaps or self.spikes or self.duplicates or self.malformed)


@dataclass(frozen=True, slots=True)
class FleetSpec:
    meters: int
    start: datetime
    days: int
    interval_minutes: int = 15
    meters_per_message: int = 10
    payload_format: PayloadFormat = "protobuf"
    faults: FaultRates = field(default_factory=FaultRates)
    first_meter: int = 1

    def __post_init__(self) -> None:
        if self.meters < 1 or self.days < 1 or self.meters_per_message < 1:
            raise ValueError("meters, days and meters_per_message must be at least 1")
        if self.interval_minutes < 1 or 1440 % self.interval_minutes:
            raise ValueError(f"interval_minutes {self.interval_minutes} must divide 1440")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if self.start.astimezone(UTC).timestamp() % 86_400:
            raise ValueError("start must be a UTC midnight")

    @property
    def interval_seconds(self) -> int:
        return self.interval_minutes * 60

    @property
    def intervals_per_day(self) -> int:
        return 1440 // self.interval_minutes

    @property
    def meter_ids(self) -> tuple[str, ...]:
        return tuple(meter_id(self.first_meter + i) for i in range(self.meters))


MessageKind = Literal["good", "duplicate", "malformed"]


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    kind: MessageKind
    payload: bytes
    content_type: str
    # Interval reads carried (0 for malformed payloads).
    intervals: int
    # Why a malformed payload is malformed (one of MALFORMED_KINDS), else "".
    fault: str = ""


@dataclass(slots=True)
class PlanStats:
    """Counts of what a plan produced so far (filled while iterating)."""

    messages: int = 0
    good_messages: int = 0
    duplicates: int = 0
    malformed: int = 0
    # Distinct interval reads in good messages: what the hub should store.
    intervals: int = 0
    gaps: int = 0
    gap_intervals: int = 0
    spikes: int = 0


def meter_id(number: int) -> str:
    return f"{METER_PREFIX}{number:06d}"


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser on arrays (wrapping uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def expected_values(meter: str, interval_ends: Int64Array, interval_seconds: int) -> Int64Array:
    """Fault-free value (Wh) of each interval ending at the given epoch seconds."""
    key = zlib.crc32(meter.encode())
    base = 40 + key % 160
    hours = ((interval_ends - interval_seconds) % 86_400) // 3600
    mixed = _mix(interval_ends.astype(np.uint64) ^ np.uint64(key * 0x9E3779B1))
    noise = (mixed % np.uint64(40)).astype(np.int64)
    per_quarter = base * HOURLY_SHAPE[hours] // 100 + noise
    return (per_quarter * interval_seconds // 900).astype(np.int64)


def plan_messages(spec: FleetSpec, stats: PlanStats | None = None) -> Iterator[PlannedMessage]:
    """The messages of the whole fleet in publishing order (lazily)."""
    stats = stats if stats is not None else PlanStats()
    rng = np.random.default_rng(spec.faults.seed)
    ids = spec.meter_ids
    interval = spec.interval_seconds
    per_day = spec.intervals_per_day
    offsets = interval * np.arange(1, per_day + 1, dtype=np.int64)
    start = int(spec.start.timestamp())
    held_duplicate: PlannedMessage | None = None
    for day in range(spec.days):
        ends = start + day * 86_400 + offsets
        for first in range(0, len(ids), spec.meters_per_message):
            batch = pb.ReadingBatch()
            carried = 0
            for meter in ids[first:first + spec.meters_per_message]:
                carried += _add_meter_day(batch, meter, ends, interval, spec.faults, rng, stats)
            _set_idempotency_key(batch)
            message = _encode(batch, spec.payload_format, carried)
            if spec.faults.malformed and rng.random() < spec.faults.malformed:
                stats.malformed += 1
                stats.messages += 1
                yield _malformed(batch, rng)
            stats.messages += 1
            stats.good_messages += 1
            stats.intervals += carried
            yield message
            if held_duplicate is not None:
                stats.messages += 1
                stats.duplicates += 1
                yield held_duplicate
                held_duplicate = None
            if spec.faults.duplicates and rng.random() < spec.faults.duplicates:
                held_duplicate = PlannedMessage("duplicate", message.payload, message.content_type, carried)
    if held_duplicate is not None:
        stats.messages += 1
        stats.duplicates += 1
        yield held_duplicate


def _add_meter_day(batch: pb.ReadingBatch, meter: str, ends: Int64Array, interval: int, faults: FaultRates,
                   rng: np.random.Generator, stats: PlanStats) -> int:
    values = expected_values(meter, ends, interval)
    keep = np.ones(len(values), dtype=bool)
    if faults.gaps and rng.random() < faults.gaps:
        length = int(rng.integers(1, MAX_GAP_INTERVALS + 1))
        first = int(rng.integers(0, max(1, len(values) - length)))
        keep[first:first + length] = False
        stats.gaps += 1
        stats.gap_intervals += int((~keep).sum())
    if faults.spikes:
        spiked = (rng.random(len(values)) < faults.spikes) & keep
        if spiked.any():
            values = np.where(spiked, values * SPIKE_FACTOR, values)
            stats.spikes += int(spiked.sum())
    # One block per run of kept intervals: a gap splits the meter-day in two.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], keep.astype(np.int8), [0]))))
    for run_start, run_end in zip(edges[::2], edges[1::2], strict=True):
        block = batch.interval_blocks.add(meter_id=meter, interval_seconds=interval)
        block.reading_type.CopyFrom(READING_TYPE)
        block.first_interval_end_time.seconds = int(ends[run_start])
        block.values.extend(values[run_start:run_end].tolist())
    return int(keep.sum())


def _set_idempotency_key(batch: pb.ReadingBatch) -> None:
    # Content-derived, so a redelivered or duplicated message repeats its key
    # while another run (other dates, other faults) never collides with it.
    digest = hashlib.sha256(batch.SerializeToString(deterministic=True)).hexdigest()
    batch.idempotency_key = f"sim-mqtt:{digest[:32]}"


def _encode(batch: pb.ReadingBatch, payload_format: PayloadFormat, intervals: int) -> PlannedMessage:
    if payload_format == "json":
        return PlannedMessage("good", batch_to_json(batch), JSON_CONTENT_TYPE, intervals)
    return PlannedMessage("good", batch.SerializeToString(deterministic=True), PROTOBUF_CONTENT_TYPE, intervals)


def _malformed(batch: pb.ReadingBatch, rng: np.random.Generator) -> PlannedMessage:
    kind = MALFORMED_KINDS[int(rng.integers(0, len(MALFORMED_KINDS)))]
    if kind == "garbage":
        # 0xFF cannot start a protobuf field (wire type 7), so this never decodes.
        payload = b"\xff" + rng.bytes(int(rng.integers(8, 64)))
        return PlannedMessage("malformed", payload, PROTOBUF_CONTENT_TYPE, 0, kind)
    if kind == "truncated_protobuf":
        whole = batch.SerializeToString(deterministic=True)
        return PlannedMessage("malformed", whole[: max(1, len(whole) // 2 - 3)], PROTOBUF_CONTENT_TYPE, 0, kind)
    if kind == "broken_json":
        whole = batch_to_json(batch)
        return PlannedMessage("malformed", whole[: max(1, len(whole) // 2)], JSON_CONTENT_TYPE, 0, kind)
    # json_schema: valid JSON, but a value is a fractional number (inexact, refused).
    text = batch_to_json(batch).decode()
    broken = text.replace('"values":[', '"values":[1.5,', 1)
    return PlannedMessage("malformed", broken.encode(), JSON_CONTENT_TYPE, 0, kind)


def day_start(moment: datetime) -> datetime:
    """The UTC midnight at or before ``moment``."""
    utc = moment.astimezone(UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


def default_start(days: int, now: datetime) -> datetime:
    """Whole UTC days ending at the last midnight before ``now``."""
    return day_start(now) - timedelta(days=days)
