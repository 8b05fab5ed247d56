"""Building canonical batches for tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from meterhub.v1 import model_pb2 as pb

KWH_DELIVERED = pb.ReadingType(
    commodity=pb.COMMODITY_ELECTRICITY, kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY, unit=pb.UNIT_WATT_HOUR,
    flow_direction=pb.FLOW_DIRECTION_DELIVERED, accumulation=pb.ACCUMULATION_DELTA, power_of_ten_multiplier=0,
)
DAY = datetime(2026, 11, 1, tzinfo=UTC)


def interval_block(meter_id: str, first_end: datetime, values: Sequence[int], *, interval: int = 900,
                   qualities: Sequence[int] = (), reading_type: pb.ReadingType = KWH_DELIVERED,
                   multiplier_applied: bool = False) -> pb.IntervalBlock:
    block = pb.IntervalBlock(meter_id=meter_id, reading_type=reading_type, interval_seconds=interval,
                             values=list(values), qualities=list(qualities),
                             meter_multiplier_applied=multiplier_applied)
    block.first_interval_end_time.FromDatetime(first_end)
    return block


def batch(*blocks: pb.IntervalBlock, key: str = "", head_end: str = "test") -> pb.ReadingBatch:
    return pb.ReadingBatch(idempotency_key=key, source=pb.Source(head_end=head_end, adapter_type="test"),
                           interval_blocks=list(blocks))
