"""An IngestPort that records what adapters submit, for adapter unit tests.

It is a collaborator, not the component under test: end-to-end tests use the
real hub (gateway.hub) instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.port import SubmitOutcome
from meterhub.v1 import model_pb2


@dataclass
class DeadLetterRecord:
    payload: bytes
    reason_code: str
    reason: str
    content_type: str


@dataclass
class RecordingPort:
    batches: list[model_pb2.ReadingBatch] = field(default_factory=list)
    dead_letters: list[DeadLetterRecord] = field(default_factory=list)
    watermarks: dict[tuple[str, int], datetime] = field(default_factory=dict)

    async def submit(self, batch: model_pb2.ReadingBatch) -> SubmitOutcome:
        copy = model_pb2.ReadingBatch()
        copy.CopyFrom(batch)
        self.batches.append(copy)
        intervals = sum(len(b.values) for b in batch.interval_blocks)
        return SubmitOutcome(intervals_new=intervals, register_reads_new=len(batch.register_reads),
                             meter_events_new=len(batch.meter_events))

    async def watermark(self, meter_id: str, reading_type: model_pb2.ReadingType,
                        interval_seconds: int) -> datetime | None:
        return self.watermarks.get((meter_id, interval_seconds))

    async def dead_letter(self, payload: bytes, *, reason_code: str, reason: str,
                          content_type: str = "application/octet-stream") -> None:
        self.dead_letters.append(DeadLetterRecord(payload, reason_code, reason, content_type))

    def interval_values(self, meter_id: str) -> dict[datetime, int]:
        """Every submitted interval value of a meter by interval end (UTC)."""
        out: dict[datetime, int] = {}
        for batch in self.batches:
            for block in batch.interval_blocks:
                if block.meter_id != meter_id:
                    continue
                first = block.first_interval_end_time.ToDatetime(tzinfo=UTC)
                for i, v in enumerate(block.values):
                    out[first.__class__.fromtimestamp(first.timestamp() + i * block.interval_seconds, UTC)] = v
        return out
