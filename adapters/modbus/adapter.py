"""The poller: reads every meter at each poll boundary of the (injected) clock,
feeds the IntervalBuilder and submits its batches. Peer failures are retried
with backoff and end as quality flags; they never stop the poller."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.modbus.clock import PollClock, SystemClock
from adapters.modbus.config import MeterConfig, ModbusConfig, parse_config
from adapters.modbus.errors import IllegalDataAddress, IllegalDataValue, IllegalFunction, ModbusError
from adapters.modbus.normalize import IntervalBuilder, NormalizeSettings
from adapters.modbus.registers import ReadRange, decode_points, plan_reads
from adapters.modbus.transport import ModbusConnection
from adapters.port import IngestPort
from gateway.errors import IngestRejected, MeterhubError
from meterhub.v1 import model_pb2 as pb

logger = logging.getLogger(__name__)

ADAPTER_TYPE = "modbus"
BATCH_CONTENT_TYPE = "application/x-protobuf; messageType=meterhub.v1.ReadingBatch"
# Retrying these exception responses cannot help: the request itself is wrong for the device.
_PERMANENT = (IllegalFunction, IllegalDataAddress, IllegalDataValue)
# Batches kept for a retry while the hub is unavailable, at most.
MAX_UNSENT_BATCHES = 256


@dataclass(frozen=True, slots=True)
class PollStats:
    rounds: int
    polls_ok: int
    polls_failed: int


class ModbusAdapter:
    def __init__(self, name: str, config: ModbusConfig, port: IngestPort, *, clock: PollClock | None = None) -> None:
        self.name = name
        self.config = config
        self.port = port
        if clock is None:
            clock = config.clock.build() if config.clock is not None else SystemClock()
        self.clock = clock
        self.builder = IntervalBuilder(NormalizeSettings(
            interval_seconds=config.interval_seconds, tolerance_seconds=config.alignment_tolerance_seconds,
            register_read_seconds=config.register_read_seconds, instantaneous=config.instantaneous,
            multiplier_applied=config.multiplier_applied))
        self._plans: dict[str, tuple[ReadRange, ...]] = {}
        for meter in config.meters:
            if meter.register_map.name not in self._plans:
                self._plans[meter.register_map.name] = plan_reads(meter.register_map.points,
                                                                  max_gap=config.max_register_gap)
        self._unsent: list[pb.ReadingBatch] = []
        # Commits run in a task of their own beside the polling: meters keep no
        # history, so a poll missed while waiting for the store would be lost.
        self._flush_due = asyncio.Event()
        self._flush_at = 0
        # Set while no flush is due or running (tests and shutdown wait on it).
        self.flush_idle = asyncio.Event()
        self.flush_idle.set()
        self._rounds = 0
        self._ok = 0
        self._failed = 0

    @property
    def stats(self) -> PollStats:
        return PollStats(self._rounds, self._ok, self._failed)

    def _workers(self) -> list[tuple[ModbusConnection, list[MeterConfig]]]:
        """Meters split over ``connections_per_host`` connections per server."""
        by_host: dict[tuple[str, int], list[MeterConfig]] = defaultdict(list)
        for meter in self.config.meters:
            by_host[(meter.host, meter.port)].append(meter)
        workers = []
        cfg = self.config
        for (host, port), meters in by_host.items():
            count = min(cfg.connections_per_host, len(meters))
            for i in range(count):
                conn = ModbusConnection(host, port, timeout_seconds=cfg.timeout_seconds,
                                        backoff_seconds=max(cfg.retry_backoff_seconds, 0.01),
                                        max_backoff_seconds=cfg.max_backoff_seconds)
                workers.append((conn, meters[i::count]))
        return workers

    async def run(self) -> None:
        workers = self._workers()
        poll_us = self.config.poll_seconds * 1_000_000
        batch_us = self.config.batch_seconds * 1_000_000
        tolerance_us = self.config.alignment_tolerance_seconds * 1_000_000
        logger.info("modbus source %s polling %d meter(s) over %d connection(s)", self.name,
                    len(self.config.meters), len(workers))
        flusher = asyncio.create_task(self._flush_loop(), name=f"{self.name}-flush")
        try:
            first = True
            while True:
                started = self.clock.now_us()
                deadline = started - started % poll_us + poll_us
                await asyncio.gather(*(self._poll_worker(conn, meters, deadline) for conn, meters in workers))
                if flusher.done():
                    flusher.result()  # a flush's unexpected failure ends the run: the hub restarts it
                boundary = started - started % batch_us
                if first or started - boundary <= tolerance_us or self.builder.pending_intervals > 500_000:
                    self._flush_at = started
                    self.flush_idle.clear()
                    self._flush_due.set()
                self._rounds += 1
                first = False
                await self.clock.sleep_until(max(deadline, self.clock.now_us() - self.clock.now_us() % poll_us))
        except asyncio.CancelledError:
            # Shutting down: hand over the intervals measured since the last
            # flush, since Modbus meters keep no history to read them again.
            try:
                if not flusher.done():
                    await asyncio.wait_for(asyncio.shield(self.flush_idle.wait()), 10)
                flusher.cancel()
                if self.builder.pending_intervals or self._unsent:
                    await asyncio.wait_for(asyncio.shield(self._flush(self.clock.now_us())), 10)
            except Exception:  # best effort during shutdown
                logger.warning("modbus source %s: final flush failed", self.name, exc_info=True)
            raise
        finally:
            flusher.cancel()
            for conn, _ in workers:
                conn.close()

    async def _poll_worker(self, conn: ModbusConnection, meters: list[MeterConfig], deadline_us: int) -> None:
        for meter in meters:
            if self.clock.now_us() >= deadline_us:
                # The round overran its poll period: the rest of this connection's meters miss it.
                self._failed += 1
                self.builder.failed(meter.meter_id, self.clock.now_us(), "ROUND_OVERRUN")
                continue
            await self._poll_meter(conn, meter)

    async def _poll_meter(self, conn: ModbusConnection, meter: MeterConfig) -> None:
        plan = self._plans[meter.register_map.name]
        cfg = self.config
        delay = cfg.retry_backoff_seconds
        attempt = 0
        while True:
            sample_us = self.clock.now_us()
            try:
                blocks = {read: await conn.read(meter.unit, read) for read in plan}
                values = decode_points(meter.register_map, blocks)
            except ModbusError as exc:
                attempt += 1
                if attempt > cfg.retries or isinstance(exc, _PERMANENT):
                    self._failed += 1
                    logger.warning("meter %s: poll failed after %d attempt(s): %s (%s)", meter.meter_id, attempt,
                                   exc.message, exc.reason)
                    self.builder.failed(meter.meter_id, sample_us, exc.reason)
                    return
                logger.debug("meter %s: %s; retrying in %.2f s", meter.meter_id, exc.reason, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, cfg.max_backoff_seconds)
                continue
            self._ok += 1
            self.builder.sample(meter.meter_id, sample_us, values)
            return

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_due.wait()
            self._flush_due.clear()
            await self._flush(self._flush_at)
            if not self._flush_due.is_set():
                self.flush_idle.set()

    async def _flush(self, at_us: int) -> None:
        batch = self.builder.take_batch()
        if batch is not None:
            batch.idempotency_key = f"{ADAPTER_TYPE}:{self.name}:{at_us}"
            self._unsent.append(batch)
        while self._unsent:
            try:
                await self._submit(self._unsent[0])
            except MeterhubError as exc:
                logger.warning("source %s: hub unavailable (%s); %d batch(es) kept for retry", self.name,
                               exc.reason, len(self._unsent))
                del self._unsent[:-MAX_UNSENT_BATCHES]
                return
            self._unsent.pop(0)

    async def _submit(self, batch: pb.ReadingBatch) -> None:
        try:
            await self.port.submit(batch)
        except IngestRejected as exc:
            meters = sorted({b.meter_id for b in batch.interval_blocks} | {r.meter_id for r in batch.register_reads}
                            | {e.meter_id for e in batch.meter_events})
            if len(meters) <= 1:
                logger.warning("source %s: batch rejected (%s): %s", self.name, exc.reason, exc.message)
                await self.port.dead_letter(batch.SerializeToString(), reason_code=exc.reason, reason=exc.message,
                                            content_type=BATCH_CONTENT_TYPE)
                return
            # One bad meter must not hold back the others: retry meter by meter.
            for meter_id in meters:
                await self._submit(_meter_batch(batch, meter_id))


def _meter_batch(batch: pb.ReadingBatch, meter_id: str) -> pb.ReadingBatch:
    part = pb.ReadingBatch(idempotency_key=f"{batch.idempotency_key}:{meter_id}", source=batch.source)
    part.interval_blocks.extend(b for b in batch.interval_blocks if b.meter_id == meter_id)
    part.register_reads.extend(r for r in batch.register_reads if r.meter_id == meter_id)
    part.meter_events.extend(e for e in batch.meter_events if e.meter_id == meter_id)
    return part


def create_adapter(name: str, config: Mapping[str, Any], port: IngestPort) -> ModbusAdapter:
    """Entry point of group ``meterhub.adapters``: validates the source table."""
    return ModbusAdapter(name, parse_config(config), port)
