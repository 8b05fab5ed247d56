"""The C12.22 polling adapter: many meters, bounded concurrency, retries with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.c1222.config import C1222Config, MeterEndpoint, parse_config
from adapters.c1222.errors import (
    TABLES_CONTENT_TYPE,
    C1222Error,
    DataNotReady,
    DeviceBusy,
    NetworkNotReachable,
    NetworkTimeout,
    ResponseError,
)
from adapters.c1222.normalize import lp_reading_type, to_batch
from adapters.c1222.tables import encode_table_reads
from adapters.c1222.transport import MeterReader
from adapters.errors import TransportError
from adapters.port import IngestPort
from gateway.errors import IngestRejected

logger = logging.getLogger(__name__)

ADAPTER_TYPE = "c1222"
# <nok> codes worth retrying: the meter or network may answer later.
TRANSIENT_RESPONSES = (DeviceBusy, DataNotReady, NetworkTimeout, NetworkNotReachable)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    meters_read: int = 0
    meters_failed: int = 0
    intervals: int = 0
    register_reads: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class C1222Adapter:
    def __init__(self, name: str, config: C1222Config, port: IngestPort,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.name = name
        self.config = config
        self.port = port
        self.clock = clock
        self.reader = MeterReader(config)

    async def run(self) -> None:
        while True:
            outcome = await self.poll_once()
            logger.info("c1222 %s: poll read %d meters, %d failed, %d intervals", self.name,
                        outcome.meters_read, outcome.meters_failed, outcome.intervals)
            await asyncio.sleep(self.config.poll_interval_seconds)

    async def poll_once(self) -> PollOutcome:
        limit = asyncio.Semaphore(self.config.concurrency)

        async def guarded(meter: MeterEndpoint) -> tuple[int, int] | None:
            async with limit:
                return await self.poll_meter(meter)

        results = await asyncio.gather(*(guarded(m) for m in self.config.meters))
        done = [r for r in results if r is not None]
        return PollOutcome(len(done), len(results) - len(done), sum(r[0] for r in done), sum(r[1] for r in done))

    async def _since(self, meter: MeterEndpoint, interval_seconds: int,
                     divisors: tuple[int, ...]) -> datetime | None:
        """The earliest watermark over the meter's configured channels (None if any is empty)."""
        marks = []
        for c, spec in enumerate(self.config.channels):
            divisor = divisors[c] if c < len(divisors) else 1
            marks.append(await self.port.watermark(meter.meter_id, lp_reading_type(spec, divisor, c),
                                                   interval_seconds))
        if any(m is None for m in marks):
            return None
        return min(m for m in marks if m is not None)

    async def poll_meter(self, meter: MeterEndpoint) -> tuple[int, int] | None:
        """(intervals, register reads) submitted, or None when the meter failed this poll."""
        cfg = self.config
        attempt = 0

        async def since(interval_seconds: int, divisors: tuple[int, ...]) -> datetime | None:
            return await self._since(meter, interval_seconds, divisors)

        while True:
            try:
                read = await self.reader.read(meter, since, self.clock())
                break
            except (TransportError, *TRANSIENT_RESPONSES) as exc:
                if attempt >= cfg.retries:
                    logger.warning("c1222 %s: meter %s failed after %d attempts: %s", self.name, meter.meter_id,
                                   attempt + 1, exc)
                    return None
                delay = min(cfg.backoff_max_seconds, cfg.backoff_initial_seconds * 2 ** attempt)
                attempt += 1
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            except ResponseError as exc:
                logger.warning("c1222 %s: meter %s refused: %s", self.name, meter.meter_id, exc.message)
                return None
            except C1222Error as exc:
                await self._undecodable(meter, exc, exc.raw, exc.raw_content_type)
                return None
        try:
            batch = to_batch(read, cfg.channels, cfg.nibble_mapping, ADAPTER_TYPE, self.name)
        except C1222Error as exc:  # tables that decode but cannot be normalised (an ST62 divisor...)
            await self._undecodable(meter, exc, encode_table_reads(read.tables), TABLES_CONTENT_TYPE)
            return None
        if not batch.interval_blocks and not batch.register_reads:
            return 0, 0
        try:
            await self.port.submit(batch)
        except IngestRejected as exc:
            logger.warning("c1222 %s: batch of %s rejected: %s", self.name, meter.meter_id, exc.message)
            await self.port.dead_letter(batch.SerializeToString(), reason_code=exc.reason, reason=exc.message,
                                        content_type="application/x-protobuf; messageType=meterhub.v1.ReadingBatch")
            return None
        return sum(len(b.values) for b in batch.interval_blocks), len(batch.register_reads)

    async def _undecodable(self, meter: MeterEndpoint, exc: C1222Error, raw: bytes, content_type: str) -> None:
        """A meter whose data cannot be decoded: the received bytes go to the dead-letter store."""
        logger.warning("c1222 %s: meter %s sent undecodable data: %s", self.name, meter.meter_id, exc.message)
        await self.port.dead_letter(raw, reason_code=exc.reason, reason=f"{meter.meter_id}: {exc.message}",
                                    content_type=content_type)


def create_adapter(name: str, config: Mapping[str, Any], port: IngestPort) -> C1222Adapter:
    """Entry point ``adapters.c1222:create_adapter`` (group meterhub.adapters)."""
    return C1222Adapter(name, parse_config(config), port)
