"""Prometheus metrics of one hub, in a registry of its own (no global state)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Thread
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reads_ingested = Counter(
            "meterhub_reads_ingested", "Interval and register reads committed", ["head_end", "outcome"],
            registry=self.registry)
        self.batches = Counter("meterhub_batches", "Batches by result", ["head_end", "result"],
                               registry=self.registry)
        self.dead_letters = Counter("meterhub_dead_letters", "Inputs kept in the dead-letter store",
                                    ["head_end", "reason_code"], registry=self.registry)
        self.vee_outcomes = Counter("meterhub_vee_outcomes", "VEE results per rule and outcome",
                                    ["rule", "outcome"], registry=self.registry)
        self.queue_depth = Gauge("meterhub_ingest_queue_depth", "Batches waiting for the writer",
                                 registry=self.registry)
        self.ingest_latency = Histogram(
            "meterhub_ingest_latency_seconds", "From submit to commit, per batch",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.head_end_lag = Gauge("meterhub_head_end_lag_seconds",
                                  "Now minus the newest interval end a head-end delivered", ["head_end"],
                                  registry=self.registry)
        self.store_up = Gauge("meterhub_store_up", "1 when the store answers", registry=self.registry)
        self.source_connected = Gauge("meterhub_source_connected",
                                      "1 while a source is connected to its broker or head-end", ["source"],
                                      registry=self.registry)
        self._server: Any = None
        self._thread: Thread | None = None

    @contextmanager
    def time_batch(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ingest_latency.observe(time.perf_counter() - start)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP; returns the bound port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound = int(self._server.server_address[1])
        logger.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
