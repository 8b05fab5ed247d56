"""Hands mapped MeterReadings to the hub and refused ones to the dead-letter store.

A batch is all-or-nothing at ingest, so when the hub refuses a batch of many
meters (one unknown meter, say) the batch is split per MeterReading: the good
ones still land and only the refused one is dead-lettered, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from adapters.cim.errors import RejectedByHub
from adapters.cim.message import ReplyError
from adapters.cim.reader import FailedReading, MappedReading
from adapters.port import IngestPort
from gateway.errors import IngestRejected
from meterhub.v1 import model_pb2 as pb

logger = logging.getLogger(__name__)
MAX_REPLY_ERRORS = 100


class ReadingSink:
    def __init__(self, port: IngestPort, head_end: str) -> None:
        self._port = port
        self._head_end = head_end
        self.intervals_submitted = 0
        self.register_reads_submitted = 0

    def _batch(self, mapped: Sequence[MappedReading], key: str) -> pb.ReadingBatch:
        batch = pb.ReadingBatch(idempotency_key=key, source=pb.Source(head_end=self._head_end, adapter_type="cim"))
        for item in mapped:
            batch.interval_blocks.extend(item.readings.interval_blocks)
            batch.register_reads.extend(item.readings.register_reads)
        return batch

    async def deliver(self, mapped: Sequence[MappedReading], *, key: str, origin: str) -> list[ReplyError]:
        """Submit; returns one reply error per MeterReading the hub refused.
        StoreUnavailable / Overloaded propagate: nothing may be acknowledged then."""
        if not mapped:
            return []
        batch = self._batch(mapped, key)
        try:
            await self._port.submit(batch)
        except IngestRejected as exc:
            if len(mapped) == 1:
                return [await self._refused(mapped[0], exc, origin)]
            logger.info("%s: hub refused a batch of %d MeterReadings (%s); retrying one by one",
                        origin, len(mapped), exc.reason)
            errors: list[ReplyError] = []
            for item in mapped:
                errors.extend(await self.deliver([item], key=f"{key}#{item.index}" if key else "", origin=origin))
            return errors
        self.intervals_submitted += sum(len(b.values) for b in batch.interval_blocks)
        self.register_reads_submitted += len(batch.register_reads)
        return []

    async def _refused(self, item: MappedReading, exc: IngestRejected, origin: str) -> ReplyError:
        batch = self._batch([item], "")
        reason = (f"{origin}: MeterReading #{item.index} (meter {item.readings.meter_id!r}) refused by the hub: "
                  f"{exc.message}")
        await self._port.dead_letter(batch.SerializeToString(), reason_code=exc.reason, reason=reason,
                                     content_type="application/x-protobuf; messageType=meterhub.v1.ReadingBatch")
        return ReplyError(RejectedByHub.cim_code, "FATAL", exc.reason, reason)

    async def reject(self, failed: Sequence[FailedReading], *, origin: str) -> list[ReplyError]:
        errors: list[ReplyError] = []
        for item in failed:
            reason = f"{origin}: MeterReading #{item.index} (meter {item.meter_id!r}): {item.error.message}"
            await self._port.dead_letter(item.raw, reason_code=item.error.reason, reason=reason,
                                         content_type="application/xml")
            errors.append(ReplyError(item.error.cim_code, "FATAL", item.error.reason, reason))
        return errors
