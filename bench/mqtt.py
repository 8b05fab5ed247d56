"""MQTT adapter throughput: simulator -> broker -> adapter (decode, in-order
acks after a no-op commit), against a raw baseline measured in the same run
(the same payloads through the same broker to a plain auto-acking aiomqtt
subscriber that only counts messages), and the ratio adapter / raw. Also pure
decode speed. Mosquitto is used when installed, else the embedded broker.

    python -m bench.mqtt [--meters 20000] [--days 1] [--format protobuf|json]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import aiomqtt

from adapters.mqtt import create_adapter
from adapters.mqtt.normalize import decode_payload
from adapters.port import SubmitOutcome
from meterhub.v1 import model_pb2 as pb
from simulators.mqtt.broker import demo_broker
from simulators.mqtt.fleet import FleetSpec, PlanStats, plan_messages
from simulators.mqtt.publisher import PublisherConfig, publish_messages

START = datetime(2026, 1, 1, tzinfo=UTC)


class CountingPort:
    """Commits nothing, counts reads: isolates the adapter from the store."""

    def __init__(self) -> None:
        self.reads = 0

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        n = sum(len(b.values) for b in batch.interval_blocks)
        self.reads += n
        return SubmitOutcome(intervals_new=n)

    async def watermark(self, meter_id: str, reading_type: pb.ReadingType, interval_seconds: int) -> None:
        return None

    async def dead_letter(self, payload: bytes, *, reason_code: str, reason: str,
                          content_type: str = "application/octet-stream") -> None:
        raise AssertionError(f"unexpected dead letter {reason_code}: {reason}")


async def main(meters: int, days: int, payload_format: str) -> None:
    spec = FleetSpec(meters=meters, start=START, days=days, payload_format=payload_format)  # type: ignore[arg-type]
    stats = PlanStats()
    messages = list(plan_messages(spec, stats))
    size = sum(len(m.payload) for m in messages)
    print(f"{len(messages):,} messages, {stats.intervals:,} reads, {size / len(messages):,.0f} bytes/message "
          f"({payload_format})")

    began = time.perf_counter()
    for m in messages:
        decode_payload(m.payload, content_type=m.content_type)
    decode_s = time.perf_counter() - began
    print(f"decode only:          {stats.intervals / decode_s:>12,.0f} reads/s")

    async with demo_broker() as broker:
        protocol = broker.protocols[0]
        publisher = PublisherConfig(host=broker.host, port=broker.port, protocol=protocol, username=broker.username)

        # Raw baseline: same broker, same payloads, auto-ack subscriber, no decode.
        received = 0
        async with aiomqtt.Client(broker.host, broker.port, username=broker.username,
                                  protocol=aiomqtt.ProtocolVersion.V5 if protocol == "5"
                                  else aiomqtt.ProtocolVersion.V311) as raw:
            await raw.subscribe("meterhub/+/readings", qos=1)
            began = time.perf_counter()
            pub = asyncio.create_task(publish_messages(publisher, messages))
            async for _ in raw.messages:
                received += 1
                if received == len(messages):
                    break
            await pub
            raw_s = time.perf_counter() - began
        print(f"raw MQTT QoS 1 ({broker.kind}): {stats.intervals / raw_s:>12,.0f} reads/s "
              f"({len(messages) / raw_s:,.0f} msg/s)")

        port = CountingPort()
        settings = {"type": "mqtt", "host": broker.host, "port": broker.port, "protocol": protocol,
                    "client_id": "bench-adapter", "clean_start": True, "max_in_flight": 64}
        if broker.username:
            settings["username"] = broker.username
        adapter = create_adapter("bench", settings, port)
        task = asyncio.create_task(adapter.run())
        await adapter.subscribed.wait()
        began = time.perf_counter()
        await publish_messages(publisher, messages)
        while adapter.stats.acked < len(messages):  # noqa: ASYNC110 - polling a counter is the measurement
            await asyncio.sleep(0.005)
        adapter_s = time.perf_counter() - began
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        print(f"adapter (ack after commit): {stats.intervals / adapter_s:>12,.0f} reads/s "
              f"({len(messages) / adapter_s:,.0f} msg/s)")
        print(f"adapter / raw baseline: {raw_s / adapter_s:.2f}")


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=20_000, help="simulated meters (default 20,000)")
    parser.add_argument("--days", type=int, default=1, help="days of 15-minute data per meter (default 1)")
    parser.add_argument("--format", choices=("protobuf", "json"), default="protobuf",
                        help="payload format (default protobuf)")
    args = parser.parse_args()
    asyncio.run(main(args.meters, args.days, args.format))


if __name__ == "__main__":
    cli()
