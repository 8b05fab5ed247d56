"""CIM MeterReadings parse throughput: reads/s mapped to meterhub.v1 versus a
raw lxml iterparse baseline over the same bytes, in the same run, and the ratio
mapped / raw (best of --repeat runs each). Also the outbound build rate.

    python -m bench.cim [--meters 1500] [--days 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime

from lxml import etree

from adapters.cim.message import MR
from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.outbound import build_created_event
from adapters.cim.reader import MappedReading, read_message
from simulators.cim.fleet import Fleet


def raw_baseline(data: bytes) -> int:
    """iterparse with the same hardened options, touching each value, no mapping."""
    count = 0
    tag = f"{{{MR}}}IntervalReadings"
    for _, element in etree.iterparse(io.BytesIO(data), events=("end",), tag=tag, resolve_entities=False,
                                      no_network=True, load_dtd=False, huge_tree=False):
        for child in element:
            _ = child.text
        count += 1
        element.clear()
        while element.getprevious() is not None:
            del element.getparent()[0]
    return count


def mapped(data: bytes) -> int:
    reads = 0
    for item in read_message(io.BytesIO(data), MeterReadingMapper(MappingOptions())):
        if isinstance(item, MappedReading):
            reads += item.readings.interval_count
    return reads


def best(fn: Callable[[bytes], int], data: bytes, repeat: int) -> tuple[int, float]:
    times = []
    reads = 0
    for _ in range(repeat):
        started = time.perf_counter()
        reads = fn(data)
        times.append(time.perf_counter() - started)
    return reads, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=1500, help="meters in the document (default 1500)")
    parser.add_argument("--days", type=int, default=1, help="days of 15-minute data per meter (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept (default 3)")
    args = parser.parse_args()
    fleet = Fleet(args.meters, datetime(2026, 11, 1, tzinfo=UTC), args.days)
    blocks = fleet.blocks(fleet.meter_ids, fleet.start, fleet.end)
    started = time.perf_counter()
    data = build_created_event(blocks, source="bench")
    build_s = time.perf_counter() - started
    total = fleet.meters * fleet.intervals_per_meter
    print(f"document: {len(data) / 1e6:.1f} MB, {args.meters} meters, {total} interval reads "
          f"({len(data) / total:.0f} bytes/read)")
    print(f"outbound build (protobuf -> XML):      {total / build_s:>12,.0f} reads/s")
    raw_reads, raw_s = best(raw_baseline, data, args.repeat)
    map_reads, map_s = best(mapped, data, args.repeat)
    assert raw_reads == map_reads == total, (raw_reads, map_reads, total)
    mb = len(data) / 1e6
    print(f"raw baseline (lxml iterparse only):    {total / raw_s:>12,.0f} reads/s  ({mb / raw_s:.0f} MB/s)")
    print(f"parsed + mapped to meterhub.v1:        {total / map_s:>12,.0f} reads/s  ({mb / map_s:.0f} MB/s)")
    print(f"parsed + mapped / raw baseline: {raw_s / map_s:.2f} (mapping costs {map_s / raw_s:.1f}x the raw parse)")


if __name__ == "__main__":
    main()
