"""``meterhub sim mqtt``: publish a simulated fleet to a broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from datetime import UTC, datetime

from simulators.mqtt.broker import demo_broker
from simulators.mqtt.fleet import FaultRates, FleetSpec, PlanStats, default_start, plan_messages
from simulators.mqtt.publisher import DEFAULT_TOPIC, PublisherConfig, PublishStats, publish_messages


def _start(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


class MqttSimulatorCommand:
    help = "publish a simulated MQTT head-end fleet (meter-day ReadingBatch messages, QoS 1)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
        parser.add_argument("--protocol", choices=("5", "3.1.1"), default="5", help="MQTT version (default 5)")
        parser.add_argument("--start-broker", action="store_true",
                            help="start a broker on --port first (mosquitto if installed, else embedded amqtt) "
                                 "and keep it running after publishing until Ctrl-C")
        parser.add_argument("--topic", default=DEFAULT_TOPIC, help=f"topic to publish to (default {DEFAULT_TOPIC})")
        parser.add_argument("--meters", type=int, default=100, help="fleet size (default 100)")
        parser.add_argument("--first-meter", type=int, default=1, help="number of the first meter id (MQTT-000001)")
        parser.add_argument("--days", type=int, default=1, help="days of data (default 1)")
        parser.add_argument("--start", type=_start, default=None,
                            help="first day, a UTC midnight (default: DAYS days before the last midnight)")
        parser.add_argument("--interval-minutes", type=int, default=15, help="interval length (default 15)")
        parser.add_argument("--meters-per-message", type=int, default=10,
                            help="meter-day blocks per message (default 10)")
        parser.add_argument("--format", choices=("protobuf", "json"), default="protobuf",
                            help="payload encoding (default protobuf)")
        parser.add_argument("--faults", type=FaultRates.parse, default=FaultRates(),
                            help="fault injection, e.g. gaps=0.01,spikes=0.001,duplicates=0.02,malformed=0.01,seed=7")
        parser.add_argument("--max-unacked", type=int, default=1000,
                            help="cap on unacknowledged QoS 1 publishes (default 1000)")
        parser.add_argument("--client-id", default="", help="publisher client id (default: broker-assigned)")
        parser.add_argument("--username", default=None)
        parser.add_argument("--password-env", default=None, help="environment variable holding the password")

    async def run(self, args: argparse.Namespace) -> int:
        start = args.start or default_start(args.days, datetime.now(UTC))
        spec = FleetSpec(meters=args.meters, start=start, days=args.days, interval_minutes=args.interval_minutes,
                         meters_per_message=args.meters_per_message, payload_format=args.format,
                         faults=args.faults, first_meter=args.first_meter)
        password = os.environ.get(args.password_env) if args.password_env else None
        async with contextlib.AsyncExitStack() as stack:
            host, port, protocol, username = args.host, args.port, args.protocol, args.username
            if args.start_broker:
                broker = await stack.enter_async_context(demo_broker(args.port))
                host, port = broker.host, broker.port
                protocol = protocol if protocol in broker.protocols else broker.protocols[0]
                username = username or broker.username
                _say(f"{broker.kind} broker listening on {host}:{port} (MQTT {', '.join(broker.protocols)})")
            config = PublisherConfig(host=host, port=port, topic=args.topic, protocol=protocol,
                                     client_id=args.client_id, username=username, password=password,
                                     max_unacked=args.max_unacked)
            plan = PlanStats()
            published = PublishStats()
            began = time.monotonic()
            await publish_messages(config, plan_messages(spec, plan), published)
            elapsed = max(time.monotonic() - began, 1e-9)
            _say(f"published {published.published:,} messages ({published.bytes:,} bytes) in {elapsed:.2f} s: "
                 f"{plan.intervals:,} interval reads of {spec.meters:,} meters x {spec.days} day(s) "
                 f"({plan.intervals / elapsed:,.0f} reads/s); faults: {plan.gaps} gaps "
                 f"({plan.gap_intervals} intervals), {plan.spikes} spikes, {plan.duplicates} duplicates, "
                 f"{plan.malformed} malformed")
            if args.start_broker:
                _say("broker keeps running; Ctrl-C to stop")
                await _forever()
        return 0


async def _forever() -> None:
    await asyncio.Event().wait()


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


COMMAND = MqttSimulatorCommand()
