"""The simulated fleet: deterministic values, faults at the configured rates."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from adapters.mqtt.errors import MqttPayloadError
from adapters.mqtt.normalize import decode_payload
from simulators.mqtt.fleet import (
    SPIKE_FACTOR,
    FaultRates,
    FleetSpec,
    PlanStats,
    expected_values,
    plan_messages,
)

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_plan_without_faults_carries_every_meter_day_once() -> None:
    spec = FleetSpec(meters=25, start=START, days=2, interval_minutes=30, meters_per_message=10)
    stats = PlanStats()
    messages = list(plan_messages(spec, stats))
    assert [m.kind for m in messages] == ["good"] * 6
    assert stats.intervals == 25 * 2 * 48
    seen: dict[str, int] = {}
    for message in messages:
        batch = decode_payload(message.payload, content_type=message.content_type)
        for block in batch.interval_blocks:
            ends = block.first_interval_end_time.seconds + 1800 * np.arange(len(block.values), dtype=np.int64)
            assert list(block.values) == expected_values(block.meter_id, ends, 1800).tolist()
            seen[block.meter_id] = seen.get(block.meter_id, 0) + len(block.values)
    assert seen == {f"MQTT-{i:06d}": 96 for i in range(1, 26)}


def test_values_are_reproducible_and_positive() -> None:
    ends = int(START.timestamp()) + 900 * np.arange(1, 97, dtype=np.int64)
    first = expected_values("MQTT-000007", ends, 900)
    assert first.tolist() == expected_values("MQTT-000007", ends, 900).tolist()
    assert (first > 0).all()
    assert first.tolist() != expected_values("MQTT-000008", ends, 900).tolist()


def test_faults_are_seeded_and_counted() -> None:
    faults = FaultRates(gaps=0.3, spikes=0.01, duplicates=0.2, malformed=0.2, seed=11)
    spec = FleetSpec(meters=50, start=START, days=2, meters_per_message=5, faults=faults)
    stats = PlanStats()
    messages = list(plan_messages(spec, stats))
    assert [m.payload for m in messages] == [m.payload for m in plan_messages(spec)]
    kinds = [m.kind for m in messages]
    assert kinds.count("good") == 20
    assert kinds.count("malformed") == stats.malformed > 0
    assert kinds.count("duplicate") == stats.duplicates > 0
    assert stats.gaps > 0 and stats.spikes > 0
    assert stats.intervals == 50 * 2 * 96 - stats.gap_intervals
    assert sum(m.intervals for m in messages if m.kind == "good") == stats.intervals
    spikes = 0
    for message in messages:
        if message.kind == "malformed":
            with pytest.raises(MqttPayloadError):
                decode_payload(message.payload, content_type=message.content_type)
            continue
        for block in decode_payload(message.payload).interval_blocks:
            ends = block.first_interval_end_time.seconds + 900 * np.arange(len(block.values), dtype=np.int64)
            normal = expected_values(block.meter_id, ends, 900)
            got = np.array(block.values)
            assert ((got == normal) | (got == normal * SPIKE_FACTOR)).all()
            if message.kind == "good":
                spikes += int((got != normal).sum())
    assert spikes == stats.spikes


def test_json_format_decodes_to_the_same_batches() -> None:
    proto = FleetSpec(meters=3, start=START, days=1)
    js = FleetSpec(meters=3, start=START, days=1, payload_format="json")
    [a] = plan_messages(proto)
    [b] = plan_messages(js)
    assert b.content_type == "application/json"
    assert decode_payload(a.payload) == decode_payload(b.payload)


def test_fault_option_parsing() -> None:
    assert FaultRates.parse("gaps=0.1, malformed=0.5,seed=3") == FaultRates(gaps=0.1, malformed=0.5, seed=3)
    assert FaultRates.parse("") == FaultRates()
    with pytest.raises(ValueError, match="expected gaps="):
        FaultRates.parse("holes=0.1")
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultRates.parse("gaps=2")


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="must divide 1440"):
        FleetSpec(meters=1, start=START, days=1, interval_minutes=7)
    with pytest.raises(ValueError, match="UTC midnight"):
        FleetSpec(meters=1, start=START.replace(hour=3), days=1)
