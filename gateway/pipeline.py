"""The ingest pipeline: a bounded queue in front of one writer.

Callers await ``submit``; the batch is applied in one transaction by the single
writer (SQLite allows one writer at a time anyway, and one writer keeps
version checks simple) and the caller is answered only after commit. A full
queue makes callers wait, which is the backpressure adapters feel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TypeVar

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from adapters.port import SubmitOutcome
from gateway import ingest
from gateway.clock import Clock, system_clock, us_to_datetime
from gateway.errors import IngestFailed, IngestRejected, MeterhubError, StoreUnavailable, UnknownMeter
from gateway.metrics import HubMetrics
from meterhub.v1 import model_pb2 as pb
from store import exceptions as exc_store
from store import repository as repo

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_COMMIT_ATTEMPTS = 4
# Hook run on changed channel-days before they are written (VEE): it may read
# the store through the batch's connection and returns the arrays to write
# and the exception items to open.
ChannelDayStage = Callable[[Connection, ingest.ChannelDays, int], ingest.StageOutcome]


@dataclass(slots=True)
class _Job:
    batch: pb.ReadingBatch
    future: asyncio.Future[SubmitOutcome]
    enqueued: float


class IngestPipeline:
    """Owns the write path of one hub process."""

    def __init__(
        self,
        engine: Engine,
        *,
        queue_size: int = 64,
        clock: Clock = system_clock,
        stage: ChannelDayStage | None = None,
        metrics: HubMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=queue_size)
        self._clock = clock
        self._stage = stage
        self._writer: asyncio.Task[None] | None = None
        self._meters: dict[str, repo.MeterRow] = {}
        self._channels: dict[tuple[int, str, int], repo.ChannelRow] = {}
        self._committed = asyncio.Condition()
        # Store calls adapters started in worker threads: a cancelled adapter's
        # call runs on, and stop() waits for it before the engine is disposed.
        self._port_calls = 0
        self._port_idle = threading.Condition()
        self.commit_count = 0
        self.metrics = metrics or HubMetrics()

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="ingest-writer")

    async def stop(self, port_call_grace: float = 10.0) -> None:
        """Drain what is queued, stop the writer, and wait for store calls
        adapters left running in worker threads."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None
        with self._port_idle:
            busy = self._port_calls > 0
        if busy:
            await asyncio.to_thread(self._wait_port_idle, port_call_grace)

    def _wait_port_idle(self, timeout: float) -> None:
        with self._port_idle:
            self._port_idle.wait_for(lambda: self._port_calls == 0, timeout)

    async def _port_call(self, fn: Callable[[], T]) -> T:
        def tracked() -> T:
            try:
                return fn()
            finally:
                with self._port_idle:
                    self._port_calls -= 1
                    self._port_idle.notify_all()

        with self._port_idle:
            self._port_calls += 1
        return await asyncio.to_thread(tracked)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- the port -----------------------------------------------------------------

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        if self._writer is None:
            raise StoreUnavailable("the ingest pipeline is not running")
        future: asyncio.Future[SubmitOutcome] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(batch, future, time.perf_counter()))
        self.metrics.queue_depth.set(self._queue.qsize())
        return await future

    async def watermark(self, meter_id: str, reading_type: pb.ReadingType, interval_seconds: int) -> datetime | None:
        key = ingest.reading_type_key(reading_type)
        return await self._port_call(lambda: self._watermark(meter_id, key, interval_seconds))

    def _watermark(self, meter_id: str, key: str, interval: int) -> datetime | None:
        with self._engine.connect() as conn:
            meter = repo.load_meters(conn, [meter_id]).get(meter_id)
            if meter is None:
                return None
            channel = repo.load_channels(conn, [meter.pk]).get((meter.pk, key, interval))
            if channel is None:
                return None
            end = repo.last_interval_end(conn, channel.id)
        return None if end is None else us_to_datetime(end * 1_000_000)

    async def dead_letter(self, head_end: str, adapter_type: str, payload: bytes, *, reason_code: str,
                          reason: str, content_type: str) -> None:
        def write() -> None:
            with self._engine.begin() as conn:
                repo.add_dead_letter(conn, head_end=head_end, adapter_type=adapter_type,
                                     receive_time_us=self._clock(), reason_code=reason_code, reason=reason,
                                     content_type=content_type, payload=payload)
        await self._port_call(write)
        self.metrics.dead_letters.labels(head_end, reason_code).inc()
        logger.warning("dead letter from %s: %s: %s", head_end, reason_code, reason)

    def forget_meters(self) -> None:
        """Drop cached meter rows after meters changed (status, multiplier)."""
        self._meters.clear()

    async def notify_commit(self) -> None:
        """Wake subscribers after a commit made outside the writer (edits, approvals)."""
        async with self._committed:
            self._committed.notify_all()

    async def wait_for_commit(self, seconds: float) -> None:
        """Wait until the next commit or for ``seconds``, whichever is first."""
        async with self._committed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._committed.wait(), seconds)

    # -- the writer -----------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            job = await self._queue.get()
            self.metrics.queue_depth.set(self._queue.qsize())
            if job is None:
                return
            head_end = job.batch.source.head_end or "unknown"
            if job.future.cancelled():
                continue
            try:
                outcome = await asyncio.to_thread(self._apply_with_retry, job.batch)
            except MeterhubError as exc:
                self.metrics.batches.labels(head_end, "rejected").inc()
                await asyncio.to_thread(self._count_rejection, job.batch)
                if not job.future.cancelled():
                    job.future.set_exception(exc)
                continue
            except (OperationalError, InterfaceError) as exc:
                # The store itself is in trouble (connection, disk, locks): the
                # source keeps the batch and retries later.
                self.metrics.batches.labels(head_end, "failed").inc()
                logger.exception("ingest failed: store unavailable")
                if not job.future.cancelled():
                    job.future.set_exception(StoreUnavailable(f"store write failed: {exc}"))
                continue
            except Exception as exc:
                # Anything else fails the same way on every retry: refuse the batch.
                self.metrics.batches.labels(head_end, "failed").inc()
                logger.exception("ingest failed on batch %r", job.batch.idempotency_key)
                await asyncio.to_thread(self._count_rejection, job.batch)
                if not job.future.cancelled():
                    job.future.set_exception(IngestFailed(
                        f"batch could not be stored ({type(exc).__name__}: {str(exc)[:300]})"))
                continue
            self.commit_count += 1
            self._observe(head_end, job, outcome)
            if not job.future.cancelled():
                job.future.set_result(outcome)
            async with self._committed:
                self._committed.notify_all()

    def _observe(self, head_end: str, job: _Job, outcome: SubmitOutcome) -> None:
        m = self.metrics
        m.ingest_latency.observe(time.perf_counter() - job.enqueued)
        m.batches.labels(head_end, "duplicate" if outcome.duplicate_batch else "committed").inc()
        m.reads_ingested.labels(head_end, "new").inc(outcome.intervals_new + outcome.register_reads_new)
        m.reads_ingested.labels(head_end, "revised").inc(outcome.intervals_revised)
        m.reads_ingested.labels(head_end, "unchanged").inc(
            outcome.intervals_unchanged + outcome.register_reads_unchanged)
        newest = max((b.first_interval_end_time.seconds + (len(b.values) - 1) * b.interval_seconds
                      for b in job.batch.interval_blocks), default=None)
        if newest is not None:
            m.head_end_lag.labels(head_end).set(max(self._clock() / 1e6 - newest, 0.0))

    def _count_rejection(self, batch: pb.ReadingBatch) -> None:
        try:
            with self._engine.begin() as conn:
                repo.bump_source(conn, batch.source.head_end or "unknown", batch.source.adapter_type,
                                 batches_rejected=1)
        except DBAPIError:
            logger.exception("could not count a rejected batch")

    def _apply_with_retry(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            try:
                return self._apply(batch)
            except (repo.ConcurrentUpdate, DBAPIError) as exc:
                if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not _is_retryable(exc):
                    raise
                logger.warning("batch commit attempt %d failed, retrying: %s", attempt, exc)
                self._channels.clear()
                self._meters.clear()
        raise StoreUnavailable(f"batch could not be committed after {MAX_COMMIT_ATTEMPTS} attempts")

    def _apply(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        parsed = ingest.parse_interval_blocks(batch)
        _validate_scalars(batch)
        head_end = batch.source.head_end or "unknown"
        now = self._clock()
        new_channels: dict[tuple[int, str, int], repo.ChannelRow] = {}
        with self._engine.begin() as conn:
            if batch.idempotency_key:
                stored = repo.batch_outcome(conn, batch.idempotency_key)
                if stored is not None:
                    return _outcome(stored, duplicate=True)
            meters = self._lookup_meters(conn, batch)
            # Channels per interval block, then per register read (interval 0).
            wanted: list[tuple[str, pb.ReadingType, int]] = [
                (r.meter_id, rt, r.interval_seconds) for r, rt in zip(parsed.refs, parsed.reading_types, strict=True)
            ] + [(rr.meter_id, rr.reading_type, 0) for rr in batch.register_reads]
            chans = self._lookup_channels(conn, meters, wanted, new_channels)
            nb = len(parsed.refs)
            outcome: dict[str, int] = {"intervals_new": 0, "intervals_revised": 0, "intervals_unchanged": 0,
                       "register_reads_new": 0, "register_reads_unchanged": 0, "meter_events_new": 0}
            last_end_us = 0
            vee_counts: dict[tuple[str, str], int] = {}
            if nb:
                factors = ingest.scale_factors(
                    parsed, [c.power_of_ten_multiplier for c in chans[:nb]],
                    [meters[r.meter_id].multiplier for r in parsed.refs])
                ingest.normalise_values(parsed, factors)
                channel_ids = np.array([c.id for c in chans[:nb]], dtype=np.int64)
                for group in ingest.group_channel_days(parsed, channel_ids):
                    stored_blocks = repo.load_blocks(conn, group.channel_ids, group.days, group.slots)
                    merge = ingest.merge_with_stored(group, stored_blocks.version, stored_blocks.values,
                                                     stored_blocks.qualities)
                    merged = merge.merged
                    rows = merge.changed
                    if self._stage is not None and rows.any():
                        self._run_stage(conn, merged, rows, now, vee_counts)
                    repo.write_blocks(
                        conn, interval_seconds=group.interval_seconds,
                        channel_ids=merged.channel_ids[rows], days=merged.days[rows],
                        values=merged.values[rows], qualities=merged.qualities[rows],
                        stored=_select_stored(stored_blocks, rows), history_rows=merge.revised[rows],
                        superseded_by=head_end, reason="", now_us=now)
                    outcome["intervals_new"] += merge.intervals_new
                    outcome["intervals_revised"] += merge.intervals_revised
                    outcome["intervals_unchanged"] += merge.intervals_unchanged
                last_end_us = int(parsed.start_seconds.max() + 0) * 1_000_000
                last_end_us += int(max(r.interval_seconds for r in parsed.refs)) * 1_000_000
            self._write_registers(conn, batch, meters, chans[nb:], head_end, now, outcome)
            outcome["meter_events_new"] = repo.insert_new_events(conn, [
                (meters[e.meter_id].pk, _ts_us(e.event_time), int(e.type), e.cim_code,
                 json.dumps(dict(sorted(e.details.items()))), head_end) for e in batch.meter_events
            ])
            reads = outcome["intervals_new"] + outcome["intervals_revised"] + outcome["register_reads_new"]
            repo.bump_source(conn, head_end, batch.source.adapter_type, batches_committed=1,
                             reads_committed=reads, commit_time_us=now, last_interval_end_us=last_end_us)
            if batch.idempotency_key:
                repo.record_batch(conn, batch.idempotency_key, head_end, outcome, now)
        self._channels.update(new_channels)
        for (rule, what), n in vee_counts.items():
            self.metrics.vee_outcomes.labels(rule, what).inc(n)
        return _outcome(outcome, duplicate=False)

    def _run_stage(self, conn: Connection, merged: ingest.ChannelDays, rows: np.ndarray,  # type: ignore[type-arg]
                   now: int, counts: dict[tuple[str, str], int]) -> None:
        assert self._stage is not None
        sub = ingest.ChannelDays(merged.interval_seconds, merged.channel_ids[rows], merged.days[rows],
                                 merged.values[rows], merged.qualities[rows], merged.present[rows])
        result = self._stage(conn, sub, now)
        merged.values[rows] = result.values
        merged.qualities[rows] = result.qualities
        exc_store.resolve_cleared(
            conn, list(zip(sub.channel_ids.tolist(), sub.days.tolist(), strict=True)),
            {(e.rule, e.channel_id, e.start_time_us, e.end_time_us) for e in result.exceptions}, now)
        exc_store.open_exceptions(conn, result.exceptions, now)
        for key, n in result.counts.items():
            counts[key] = counts.get(key, 0) + n

    def _lookup_meters(self, conn: Connection, batch: pb.ReadingBatch) -> dict[str, repo.MeterRow]:
        ids = {b.meter_id for b in batch.interval_blocks}
        ids.update(r.meter_id for r in batch.register_reads)
        ids.update(e.meter_id for e in batch.meter_events)
        missing = [m for m in ids if m not in self._meters]
        if missing:
            self._meters.update(repo.load_meters(conn, missing))
        unknown = sorted(m for m in ids if m not in self._meters)
        if unknown:
            shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise UnknownMeter(f"unknown meter(s): {shown}; register them first (AdminService.UpsertMeters)",
                               metadata={"meter_ids": ",".join(unknown[:50])})
        return {m: self._meters[m] for m in ids}

    def _lookup_channels(
        self, conn: Connection, meters: dict[str, repo.MeterRow],
        wanted: list[tuple[str, pb.ReadingType, int]],
        new_channels: dict[tuple[int, str, int], repo.ChannelRow],
    ) -> list[repo.ChannelRow]:
        keys = [(meters[mid].pk, ingest.reading_type_key(rt), interval) for mid, rt, interval in wanted]
        if any(k not in self._channels for k in keys):
            self._channels.update(repo.load_channels(conn, [k[0] for k in keys if k not in self._channels]))
        to_create: dict[tuple[int, str, int], dict[str, object]] = {}
        for key, (_mid, rt, interval) in zip(keys, wanted, strict=True):
            if key not in self._channels and key not in to_create:
                to_create[key] = {
                    "meter_pk": key[0], "reading_type_key": key[1], "interval_seconds": interval,
                    "commodity": rt.commodity, "kind": rt.kind, "unit": rt.unit,
                    "flow_direction": rt.flow_direction, "accumulation": rt.accumulation,
                    "power_of_ten_multiplier": rt.power_of_ten_multiplier, "cim_code": rt.cim_code,
                    "device_channel": rt.device_channel,
                }
        if to_create:
            repo.create_channels(conn, list(to_create.values()))
            loaded = repo.load_channels(conn, sorted({k[0] for k in to_create}))
            new_channels.update({k: loaded[k] for k in to_create})
        return [self._channels.get(k) or new_channels[k] for k in keys]

    def _write_registers(
        self, conn: Connection, batch: pb.ReadingBatch, meters: dict[str, repo.MeterRow],
        chans: list[repo.ChannelRow], head_end: str, now: int, outcome: dict[str, int],
    ) -> None:
        if not batch.register_reads:
            return
        latest: dict[tuple[int, int], tuple[int, int]] = {}
        for rr, chan in zip(batch.register_reads, chans, strict=True):
            value = rr.value * (1 if rr.meter_multiplier_applied else max(meters[rr.meter_id].multiplier, 1))
            diff = rr.reading_type.power_of_ten_multiplier - chan.power_of_ten_multiplier
            if diff >= 0:
                value *= 10**diff
            elif value % 10 ** (-diff):
                raise IngestRejected(f"register read of meter {rr.meter_id!r} would lose precision",
                                     reason="PRECISION_LOSS")
            else:
                value //= 10 ** (-diff)
            if abs(value) > ingest.INT64_MAX:
                raise IngestRejected(f"register read of meter {rr.meter_id!r} overflows 64 bits",
                                     reason="VALUE_OVERFLOW")
            latest[(chan.id, _ts_us(rr.read_time))] = (value, rr.quality)
        stored = repo.load_register_reads(conn, list(latest))
        new = [(c, t, v, q) for (c, t), (v, q) in latest.items() if (c, t) not in stored]
        revised = [(c, t, v, q, stored[(c, t)]) for (c, t), (v, q) in latest.items()
                   if (c, t) in stored and stored[(c, t)][:2] != (v, q)]
        repo.write_register_reads(conn, new, revised, head_end, now)
        outcome["register_reads_new"] = len(new) + len(revised)
        outcome["register_reads_unchanged"] = len(latest) - len(new) - len(revised)


def _outcome(counts: dict[str, int], *, duplicate: bool) -> SubmitOutcome:
    return SubmitOutcome(
        intervals_new=counts["intervals_new"], intervals_revised=counts["intervals_revised"],
        intervals_unchanged=counts["intervals_unchanged"], register_reads_new=counts["register_reads_new"],
        register_reads_unchanged=counts["register_reads_unchanged"], meter_events_new=counts["meter_events_new"],
        duplicate_batch=duplicate,
    )


def _select_stored(stored: repo.StoredBlocks, rows: np.ndarray) -> repo.StoredBlocks:  # type: ignore[type-arg]
    idx = np.flatnonzero(rows)
    return repo.StoredBlocks(stored.version[idx], stored.values[idx], stored.qualities[idx],
                             [stored.head_end[i] for i in idx], stored.update_time_us[idx])


def _ts_us(ts: object) -> int:
    seconds = int(ts.seconds)  # type: ignore[attr-defined]
    nanos = int(ts.nanos)  # type: ignore[attr-defined]
    return seconds * 1_000_000 + nanos // 1000


def _validate_scalars(batch: pb.ReadingBatch) -> None:
    if len(batch.idempotency_key) > ingest.MAX_IDEMPOTENCY_KEY_CHARS:
        raise IngestRejected(f"idempotency_key is longer than {ingest.MAX_IDEMPOTENCY_KEY_CHARS} characters")
    if len(batch.source.head_end) > ingest.MAX_HEAD_END_CHARS:
        raise IngestRejected(f"source.head_end is longer than {ingest.MAX_HEAD_END_CHARS} characters")
    if len(batch.source.adapter_type) > ingest.MAX_ADAPTER_TYPE_CHARS:
        raise IngestRejected(f"source.adapter_type is longer than {ingest.MAX_ADAPTER_TYPE_CHARS} characters")
    for i, rr in enumerate(batch.register_reads):
        if not rr.meter_id:
            raise IngestRejected(f"register_reads[{i}]: meter_id is empty")
        if not rr.HasField("read_time"):
            raise IngestRejected(f"register_reads[{i}] (meter {rr.meter_id!r}): read_time is missing")
        ingest.validate_reading_type(rr.reading_type, f"register_reads[{i}] (meter {rr.meter_id!r})")
    for i, ev in enumerate(batch.meter_events):
        if not ev.meter_id:
            raise IngestRejected(f"meter_events[{i}]: meter_id is empty")
        if not ev.HasField("event_time"):
            raise IngestRejected(f"meter_events[{i}] (meter {ev.meter_id!r}): event_time is missing")
        if ev.type == pb.METER_EVENT_TYPE_UNSPECIFIED:
            raise IngestRejected(f"meter_events[{i}] (meter {ev.meter_id!r}): type is unspecified")
        if len(ev.cim_code) > ingest.MAX_CODE_CHARS:
            raise IngestRejected(f"meter_events[{i}] (meter {ev.meter_id!r}): cim_code is longer than "
                                 f"{ingest.MAX_CODE_CHARS} characters")


def _is_retryable(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(s in text for s in ("database is locked", "deadlock", "could not serialize",
                                   "duplicate key", "unique constraint"))


def outcome_to_dict(outcome: SubmitOutcome) -> dict[str, object]:
    return asdict(outcome)
