"""``meterhub demo`` fleet: a broker, a persistent session for the adapter,
and a publisher streaming the fleet with a few injected faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from simulators.base import DemoFleet
from simulators.mqtt.broker import amqtt_broker, demo_broker, mosquitto_broker
from simulators.mqtt.fleet import FaultRates, FleetSpec, PlanStats, plan_messages
from simulators.mqtt.publisher import DEFAULT_TOPIC, PublisherConfig, prepare_session, publish_messages

logger = logging.getLogger(__name__)

# A few of each fault, so the demo shows dead letters and deduplication.
DEMO_FAULTS = FaultRates(gaps=0.002, spikes=0.0005, duplicates=0.02, malformed=0.03, seed=2026)
DEMO_CLIENT_ID = "meterhub-demo-mqtt"
SUBSCRIPTION = "meterhub/+/readings"


@contextlib.asynccontextmanager
async def demo_fleet(*, meters: int, start: datetime, days: int, interval_minutes: int,
                     faults: FaultRates = DEMO_FAULTS,
                     broker_kind: Literal["auto", "mosquitto", "amqtt"] = "auto") -> AsyncIterator[DemoFleet]:
    spec = FleetSpec(meters=meters, start=start, days=days, interval_minutes=interval_minutes,
                     meters_per_message=10, faults=faults)
    stats = PlanStats()
    messages = list(plan_messages(spec, stats))
    starters = {"auto": demo_broker, "mosquitto": mosquitto_broker, "amqtt": amqtt_broker}
    async with starters[broker_kind]() as broker:
        protocol = broker.protocols[0]
        adapter_config: dict[str, Any] = {
            "type": "mqtt", "host": broker.host, "port": broker.port, "protocol": protocol,
            "topics": [SUBSCRIPTION], "client_id": DEMO_CLIENT_ID, "payload_format": "auto",
        }
        if broker.username:
            adapter_config["username"] = broker.username
        # The adapter starts after the demo registered the meters; its session
        # exists already, so the broker queues what is published meanwhile.
        await prepare_session(broker.host, broker.port, client_id=DEMO_CLIENT_ID, topics=[SUBSCRIPTION],
                              protocol=protocol, username=broker.username)
        publisher = PublisherConfig(host=broker.host, port=broker.port, topic=DEFAULT_TOPIC, protocol=protocol,
                                    client_id="meterhub-demo-simulator", username=broker.username, max_unacked=200)
        task = asyncio.create_task(publish_messages(publisher, messages), name="mqtt-demo-publisher")
        try:
            yield DemoFleet(meter_ids=spec.meter_ids, adapter_config=adapter_config,
                            expected_intervals=stats.intervals)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.warning("mqtt demo publisher failed: %s", task.exception())
