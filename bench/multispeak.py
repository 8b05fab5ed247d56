"""MultiSpeak: reads/s parsed from GetLPReadingsByMeterIDIntervalData responses.

Measures, in one run and on the same bytes:
  adapter   hardened parse + zeep decode per block + exact decimals -> IntervalBlock protobufs
  raw lxml  lxml parse, every <d> split and int()-ed (no schema, no exactness, no quality)
with the ratio adapter / raw, and, end to end, the adapter polling the simulator over
loopback HTTP (at most 100 meters).

    python -m bench.multispeak [--meters 200] [--days 1] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from lxml import etree

from adapters.multispeak import MultiSpeakAdapter, parse_config
from adapters.multispeak.normalize import StatusMapper
from adapters.multispeak.readings import Decoded, ReadingDecoder
from adapters.multispeak.soap import MR_SERVER, MSP_NS, MessageHeader, MultiSpeakCodec
from adapters.port import SubmitOutcome
from meterhub.v1 import model_pb2 as pb
from simulators.multispeak.fleet import meter_ids
from simulators.multispeak.server import HeadEndSimulator

START = datetime(2026, 3, 1, tzinfo=UTC)
OP = "GetLPReadingsByMeterIDIntervalData"


class CountingPort:
    """Stands in for the hub: counts what would be stored."""

    def __init__(self) -> None:
        self.reads = 0

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        self.reads += sum(len(b.values) for b in batch.interval_blocks)
        return SubmitOutcome()

    async def watermark(self, meter_id: str, reading_type: pb.ReadingType, interval_seconds: int) -> None:
        return None

    async def dead_letter(self, payload: bytes, *, reason_code: str, reason: str,
                          content_type: str = "") -> None:
        raise AssertionError(f"unexpected dead letter: {reason}")


def build_response(meters: int, days: int) -> tuple[bytes, int]:
    sim = HeadEndSimulator(meter_ids(meters), clock=lambda: START + timedelta(days=days))
    blocks = [b for m in sim.meters for b in sim._day_blocks(m, START, START + timedelta(days=days))]
    body = sim.mr.build_response(OP, MessageHeader(objects_remaining=0), **{
        f"{OP}Result": {"intervalData": [sim.interval_data(blocks)]}})
    return body, meters * days * 96


def adapter_parse(codec: MultiSpeakCodec, decoder: ReadingDecoder, body: bytes) -> int:
    message = codec.parse_response(OP, body)
    decoded = Decoded()
    for element in message.body.find(f"{{{MSP_NS}}}{OP}Result"):
        decoded.extend(decoder.interval_data(element))
    assert not decoded.rejected
    return sum(len(b.values) for b in decoded.blocks)


def raw_lxml(body: bytes) -> int:
    root = etree.fromstring(body)
    n = 0
    for d in root.iter(f"{{{MSP_NS}}}d"):
        values = [int(t.replace(".", "")) for t in d.text.split(";")]
        n += len(values)
    return n


def rate(fn: Callable[[], int], seconds: float) -> tuple[float, int]:
    done = reads = 0
    t0 = time.perf_counter()
    while True:
        reads += fn()
        done += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return reads / elapsed, done


async def over_http(meters: int, days: int) -> tuple[float, int]:
    now = START + timedelta(days=days)
    port = CountingPort()
    async with HeadEndSimulator(meter_ids(meters), clock=lambda: now, blocks_per_page=days) as sim:
        config = parse_config({"url": sim.url, "meters": list(sim.meters), "start": START.isoformat(),
                               "request_days": days, "poll_registers": False, "max_concurrency": 8})
        adapter = MultiSpeakAdapter("bench", config, port, clock=lambda: now)
        async with adapter.session():
            t0 = time.perf_counter()
            reads = await adapter.poll_once()
            elapsed = time.perf_counter() - t0
    return reads / elapsed, reads


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.multispeak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=200, help="meters in the response (default 200)")
    parser.add_argument("--days", type=int, default=1, help="days of 15-minute data per meter (default 1)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time per parse measurement (default 8)")
    args = parser.parse_args()
    body, expected = build_response(args.meters, args.days)
    codec = MultiSpeakCodec(MR_SERVER, max_bytes=256 * 1024 * 1024)
    decoder = ReadingDecoder(codec, StatusMapper(), value_exponent=0, interval_seconds=900)
    assert adapter_parse(codec, decoder, body) == expected == raw_lxml(body)
    print(f"response: {len(body) / 1e6:.2f} MB, {args.meters} meters x {args.days} day(s), {expected:,} reads")
    ours, n1 = rate(lambda: adapter_parse(codec, decoder, body), args.seconds)
    base, n2 = rate(lambda: raw_lxml(body), args.seconds)
    print(f"adapter parse (hardened lxml + zeep per block + exact decimals): {ours:>12,.0f} reads/s ({n1} runs)")
    print(f"raw lxml baseline (parse + split + int):                         {base:>12,.0f} reads/s ({n2} runs)")
    print(f"adapter / raw baseline: {ours / base:.2f}")
    http_rate, reads = asyncio.run(over_http(min(args.meters, 100), args.days))
    print(f"end to end over loopback HTTP (simulator -> adapter, {reads:,} reads): {http_rate:,.0f} reads/s")


if __name__ == "__main__":
    main()
