"""grpc.health.v1 reflects broker connectivity per MQTT source: SERVING while
subscribed, NOT_SERVING when the broker goes away, SERVING again after it is
back. The hub's overall status follows the store, not one source."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GrpcConfig, HubConfig, SourceConfig
from gateway.hub import SOURCE_HEALTH_PREFIX, Hub
from simulators.mqtt.broker import mosquitto_broker
from tests.integration.mqtt.conftest import adapter_settings
from tests.support.net import free_port
from tests.support.waiting import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_source_health_follows_the_broker(tmp_path: Path) -> None:
    port = free_port()
    first_broker = mosquitto_broker(port)
    broker = await first_broker.__aenter__()
    stopped = False
    try:
        settings = adapter_settings(broker, topics=["health/+/readings"])
        config = HubConfig(store=str(tmp_path / "h.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"),
                           sources=(SourceConfig("north", "mqtt", settings),))
        async with Hub(config) as hub, grpc.aio.insecure_channel(hub.grpc_target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            service = f"{SOURCE_HEALTH_PREFIX}north"

            async def source_status(expected: int) -> bool:
                await hub.check_sources()
                status = (await health.Check(health_pb2.HealthCheckRequest(service=service))).status
                return bool(status == expected)

            await eventually(lambda: source_status(SERVING), "source SERVING while subscribed", 20)
            # Stop the broker: the source loses its connection.
            await first_broker.__aexit__(None, None, None)
            stopped = True
            await eventually(lambda: source_status(NOT_SERVING), "source NOT_SERVING without its broker", 20)
            overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert overall.status == SERVING, "the store is fine: billing and CIS calls are still answered"
            assert hub.metrics.source_connected.labels("north")._value.get() == 0
            async with mosquitto_broker(port):
                await eventually(lambda: source_status(SERVING), "source SERVING again", 20)
    finally:
        if not stopped:
            await first_broker.__aexit__(None, None, None)
