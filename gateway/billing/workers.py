"""Bill cycles on worker processes, so a cycle uses every core.

Computing a service point's determinants is Python and numpy work that holds
the GIL; in the hub's own process it would compete with gRPC and ingest for
one core. :class:`CyclePool` hands chunks of service points to worker
processes (started with ``spawn``: a forked gRPC process is not safe), each
with its own store connection, and gets back the serialized
``StreamBillCycleResponse`` messages, in order, a few chunks ahead of what
the stream has sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine

from gateway.billing.calendar import TariffCalendar
from gateway.billing.config import Tariff
from gateway.billing.determinants import BillingPeriod, BillingPolicy
from gateway.billing.loading import compute_chunk
from gateway.billing.messages import cycle_message

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _WorkerState:
    engine: Engine
    calendars: Mapping[str, TariffCalendar]
    policy: BillingPolicy


# One per worker process, set by its initializer (the executor's contract).
_worker: list[_WorkerState] = []


def _initialize(store_url: str, tariffs: Mapping[str, Tariff], estimates_billable: bool) -> None:
    _worker.append(_WorkerState(create_engine(store_url), {n: TariffCalendar(t) for n, t in tariffs.items()},
                                BillingPolicy(estimates_billable=estimates_billable)))


def _compute(ids: list[str], start_s: int, end_s: int, tariff: str) -> list[bytes]:
    state = _worker[0]
    period = BillingPeriod.from_epoch_seconds(start_s, end_s)
    with state.engine.connect() as conn:
        results = compute_chunk(conn, ids, period, state.calendars, state.policy, tariff)
    return [cycle_message(r).SerializeToString() for r in results]


class CyclePool:
    """Worker processes for bill cycles, started on first use."""

    def __init__(self, store_url: str, tariffs: Mapping[str, Tariff], estimates_billable: bool,
                 workers: int) -> None:
        self._args = (store_url, dict(tariffs), estimates_billable)
        self._workers = workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                self._workers, mp_context=multiprocessing.get_context("spawn"), initializer=_initialize,
                initargs=self._args)
            logger.info("bill cycle workers: %d processes", self._workers)
        return self._executor

    async def cycle(self, chunks: Iterable[list[str]], period: BillingPeriod,
                    tariff: str) -> AsyncIterator[list[bytes]]:
        """Serialized responses chunk by chunk, in order; up to two chunks
        per worker are in flight."""
        loop = asyncio.get_running_loop()
        pool = self._pool()
        pending: deque[asyncio.Future[list[bytes]]] = deque()
        try:
            for ids in chunks:
                pending.append(loop.run_in_executor(pool, _compute, ids, period.start_s, period.end_s, tariff))
                if len(pending) >= 2 * self._workers:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
