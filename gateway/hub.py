"""The hub process: store, ingest pipeline, gRPC server and adapters, together.

    async with Hub(config) as hub:
        port = hub.port_for("itron-north", "mqtt")   # what an adapter gets
        hub.grpc_target                               # where clients connect
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import Engine, text

from adapters.port import Adapter, IngestPort, SubmitOutcome
from gateway.api.admin import AdminServicer
from gateway.api.billing import BillingServicer
from gateway.api.cis import CisServicer
from gateway.api.edits import EditServicer
from gateway.api.exceptions import ExceptionServicer
from gateway.api.ingest import IngestServicer
from gateway.api.readings import ReadingServicer
from gateway.config import HubConfig, SourceConfig
from gateway.errors import ConfigError
from gateway.metrics import HubMetrics
from gateway.outbound import build_outbound
from gateway.pipeline import IngestPipeline
from gateway.plugins import ADAPTER_GROUP, load_plugin
from gateway.security import AuthInterceptor
from gateway.vee_stage import build_vee_stage
from meterhub.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    billing_service_pb2,
    billing_service_pb2_grpc,
    cis_service_pb2,
    cis_service_pb2_grpc,
    ingest_service_pb2,
    reading_service_pb2,
    reading_service_pb2_grpc,
    vee_service_pb2,
    vee_service_pb2_grpc,
)
from meterhub.v1 import model_pb2 as pb
from store.engine import open_engine

logger = logging.getLogger(__name__)

SERVICE_NAMES = tuple(
    service.full_name
    for module in (ingest_service_pb2, reading_service_pb2, admin_service_pb2, vee_service_pb2, cis_service_pb2,
                   billing_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)
HEALTH_CHECK_SECONDS = 5.0
SOURCE_HEALTH_PREFIX = "meterhub.source."
ADAPTER_RESTART_SECONDS = (1.0, 30.0)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class SourcePort:
    """The IngestPort one source gets: it stamps the source on every batch."""

    def __init__(self, pipeline: IngestPipeline, head_end: str, adapter_type: str) -> None:
        self._pipeline = pipeline
        self.head_end = head_end
        self.adapter_type = adapter_type

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        batch.source.head_end = self.head_end
        batch.source.adapter_type = self.adapter_type
        return await self._pipeline.submit(batch)

    async def watermark(self, meter_id: str, reading_type: pb.ReadingType, interval_seconds: int) -> datetime | None:
        return await self._pipeline.watermark(meter_id, reading_type, interval_seconds)

    async def dead_letter(self, payload: bytes, *, reason_code: str, reason: str,
                          content_type: str = "application/octet-stream") -> None:
        await self._pipeline.dead_letter(self.head_end, self.adapter_type, payload, reason_code=reason_code,
                                         reason=reason, content_type=content_type)


class Hub:
    def __init__(self, config: HubConfig, *, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine or open_engine(config.store)
        self.metrics = HubMetrics()
        self.vee = build_vee_stage(config.vee)
        self.pipeline = IngestPipeline(self.engine, queue_size=config.queue_size, metrics=self.metrics,
                                       stage=self.vee)
        self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._adapters: dict[str, Adapter] = {}
        self._billing: BillingServicer | None = None
        # Last health reported per source that can tell its connectivity.
        self._source_health: dict[str, bool] = {}
        self.grpc_port = 0

    @property
    def grpc_target(self) -> str:
        host = self.config.grpc.listen.rpartition(":")[0].strip("[]")
        return f"{host}:{self.grpc_port}"

    def port_for(self, head_end: str, adapter_type: str) -> IngestPort:
        return SourcePort(self.pipeline, head_end, adapter_type)

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        await self.pipeline.start()
        authority = self.config.grpc.authority
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(authority)] if authority is not None else [],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        server.add_generic_rpc_handlers((IngestServicer(self.pipeline).handler(),))
        reading_service_pb2_grpc.add_ReadingServiceServicer_to_server(
            ReadingServicer(self.engine, self.pipeline), server)
        admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(self.engine, self.pipeline), server)
        vee_service_pb2_grpc.add_ExceptionServiceServicer_to_server(
            ExceptionServicer(self.engine, authority), server)
        vee_service_pb2_grpc.add_EditServiceServicer_to_server(
            EditServicer(self.engine, self.pipeline, authority, revalidate=self.vee), server)
        cis_service_pb2_grpc.add_CisServiceServicer_to_server(CisServicer(self.engine, self.pipeline), server)
        self._billing = BillingServicer(self.engine, self.config.billing)
        billing_service_pb2_grpc.add_BillingServiceServicer_to_server(self._billing, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        tls = self.config.grpc.tls
        if tls is not None:
            self.grpc_port = server.add_secure_port(self.config.grpc.listen, tls.server_credentials())
        else:
            self.grpc_port = server.add_insecure_port(self.config.grpc.listen)
        if self.grpc_port == 0:
            raise ConfigError(f"cannot listen on {self.config.grpc.listen}")
        await server.start()
        self._server = server
        await self._set_health(True)
        self.metrics.store_up.set(1)
        if self.config.metrics_listen is not None:
            host, _, port = self.config.metrics_listen.rpartition(":")
            self.metrics_port = self.metrics.serve(host.strip("[]"), int(port))
        self._tasks.append(asyncio.create_task(self._watch_store(), name="store-health"))
        for source in self.config.sources:
            self.add_adapter(source.name, self.create_adapter(source))
        for sink in self.config.outbound:
            outbound = build_outbound(sink.name, sink.settings, self.engine, self.pipeline)
            self._tasks.append(asyncio.create_task(self._supervise(f"outbound {sink.name}", outbound),
                                                   name=f"outbound-{sink.name}"))
        logger.info("hub serving gRPC on %s with %d source(s)", self.grpc_target, len(self.config.sources))

    def create_adapter(self, source: SourceConfig) -> Adapter:
        factory = load_plugin(ADAPTER_GROUP, source.type)
        adapter: Adapter = factory(source.name, source.settings, self.port_for(source.name, source.type))
        return adapter

    def add_adapter(self, name: str, adapter: Adapter) -> None:
        """Run an adapter, supervised (configured sources, or one the demo built)."""
        self._adapters[name] = adapter
        self._tasks.append(asyncio.create_task(self._supervise(name, adapter), name=name))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop adapters, let in-flight RPCs finish, drain the queue, close the store."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            await self._set_health(False)
            await self._server.stop(grace)
            self._server = None
        if self._billing is not None:
            await asyncio.to_thread(self._billing.close)
            self._billing = None
        await self.pipeline.stop()
        self.metrics.close()
        self.engine.dispose()

    async def _supervise(self, name: str, adapter: Adapter) -> None:
        delay = ADAPTER_RESTART_SECONDS[0]
        while True:
            try:
                await adapter.run()
                logger.info("source %s finished", name)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("source %s failed; restarting in %.0f s", name, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, ADAPTER_RESTART_SECONDS[1])

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def _watch_store(self) -> None:
        healthy = True
        while True:
            await asyncio.sleep(HEALTH_CHECK_SECONDS)
            ok = await asyncio.to_thread(self._store_reachable)
            self.metrics.store_up.set(1 if ok else 0)
            if ok != healthy:
                logger.warning("store is %s", "reachable again" if ok else "unreachable")
                await self._set_health(ok)
                healthy = ok
            await self.check_sources()

    async def check_sources(self) -> None:
        """Health per source that reports connectivity (an MQTT broker, say),
        under the service name ``meterhub.source.<name>``. The hub's own status
        ("") follows the store only: a lost broker stops one source, while
        billing and CIS calls are still answered."""
        for name, adapter in self._adapters.items():
            connected = getattr(adapter, "connected", None)
            if not isinstance(connected, bool):
                continue
            self.metrics.source_connected.labels(name).set(1 if connected else 0)
            if self._source_health.get(name) != connected:
                if name in self._source_health:
                    logger.warning("source %s is %s", name, "connected again" if connected else "disconnected")
                self._source_health[name] = connected
                await self._health.set(f"{SOURCE_HEALTH_PREFIX}{name}",
                                       health_pb2.HealthCheckResponse.SERVING if connected
                                       else health_pb2.HealthCheckResponse.NOT_SERVING)

    def _store_reachable(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not serving"
            return False
        return True
