"""DLMS benchmark: profile buffer decoding and whole sessions against the simulator.

Prints, each with a raw baseline measured in the same run:
- decoded interval reads/s of load profile buffers (meter-days of 96 entries x 2
  channels): our columnar decoder, the generic A-XDR decoder, and decode +
  normalise into IntervalBlocks; baseline: ``struct.iter_unpack`` of the same bytes
  (fixed row layout, no checks at all);
- sessions/s of the adapter against the simulator over loopback TCP (associate,
  clock, two registers, one day of profile by range, release); baseline: bare
  connect + one pre-encoded AARQ/AARE round trip + close on the same server;
- each figure's ratio to its raw baseline.

    python -m bench.dlms [--buffers 2000] [--meters 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import time
from datetime import UTC, datetime

from adapters.dlms import axdr, normalize, profile
from adapters.dlms.adapter import DlmsAdapter
from adapters.dlms.codec import WrapperFrame
from adapters.dlms.config import MeterEndpoint, parse_config
from adapters.dlms.cosem import CLOCK_OBIS, EXPORT_INTERVAL_OBIS, IMPORT_INTERVAL_OBIS, ScalerUnit, Unit
from simulators.dlms.model import ConsumptionModel, meter_id
from simulators.dlms.server import CAPTURE_OBJECTS, MeterFleet, SimulatorConfig

DAY = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC)
ROW = struct.Struct(">BBBB12sBBBIBI")
AARQ = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0")


class NullPort:
    async def submit(self, batch: object) -> object:
        return None

    async def watermark(self, *args: object) -> None:
        return None

    async def dead_letter(self, *args: object, **kwargs: object) -> None:
        return None


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>14,.0f}"


def bench_buffers(buffers: int) -> None:
    model = ConsumptionModel()
    start = int(DAY.timestamp())
    encoded = []
    for i in range(buffers):
        rows = model.rows(meter_id(i + 1), start + 900, start + 86400)
        encoded.append(profile.encode_buffer(rows.ends, rows.status, (rows.import_wh, rows.export_wh)))
    reads = buffers * 96 * 2
    layout = normalize.profile_layout(CAPTURE_OBJECTS, {IMPORT_INTERVAL_OBIS: ScalerUnit(0, Unit.WATT_HOUR),
                                                        EXPORT_INTERVAL_OBIS: ScalerUnit(0, Unit.WATT_HOUR)})
    assert layout.clock == 0
    assert CAPTURE_OBJECTS[0].obis == CLOCK_OBIS

    t = time.perf_counter()
    total = 0
    for raw in encoded:
        for row in ROW.iter_unpack(raw[2:]):
            total += row[8] + row[10]
    baseline = time.perf_counter() - t

    t = time.perf_counter()
    check = 0
    for raw in encoded:
        columns = profile.decode_buffer(raw)
        check += int(columns.columns[2].sum() + columns.columns[3].sum())
    columnar = time.perf_counter() - t
    assert check == total

    sample = encoded[: max(1, buffers // 10)]
    t = time.perf_counter()
    for raw in sample:
        axdr.decode(raw)
    generic = (time.perf_counter() - t) * len(encoded) / len(sample)

    t = time.perf_counter()
    for i, raw in enumerate(encoded):
        normalize.interval_blocks(meter_id(i + 1), profile.decode_buffer(raw), layout, 900)
    full = time.perf_counter() - t

    print(f"profile buffers: {buffers} meter-days, {reads:,} interval reads ({len(encoded[0])} bytes each)")
    print(f"  raw baseline struct.iter_unpack      {_rate(reads, baseline)} reads/s")
    print(f"  columnar decode (numpy, checked)     {_rate(reads, columnar)} reads/s  "
          f"({baseline / columnar:.3f} of raw)")
    print(f"  generic A-XDR decode (Data tree)     {_rate(reads, generic)} reads/s  "
          f"({baseline / generic:.3f} of raw; estimated from 10%)")
    print(f"  decode + normalise to IntervalBlocks {_rate(reads, full)} reads/s  "
          f"({baseline / full:.3f} of raw)")


async def bench_sessions(meters: int, seconds: float) -> None:
    config = SimulatorConfig(meters=meters, history_start=DAY, max_pdu_size=4096)
    async with MeterFleet(config, clock=lambda: NOW) as fleet:
        endpoints = [MeterEndpoint(e.meter_id, e.host, e.port) for e in fleet.endpoints]
        adapter = DlmsAdapter("bench", parse_config({
            "type": "dlms", "meters": [{"meter_id": e.meter_id, "port": e.port} for e in endpoints],
            "start": DAY.isoformat(), "max_pdu_size": 4096, "poll_seconds": 0}), NullPort(),  # type: ignore[arg-type]
            clock=lambda: NOW)

        async def raw_session(endpoint: MeterEndpoint) -> None:
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            writer.write(WrapperFrame(16, 1, AARQ).encode())
            await reader.readexactly(8 + 0x2B)
            writer.close()
            await writer.wait_closed()

        rates = []
        for label, one in (("raw baseline: connect + AARQ/AARE + close", raw_session),
                           ("adapter session (assoc, clock, 2 registers, 1-day profile, release)",
                            adapter.read_meter)):
            done = 0
            deadline = time.perf_counter() + seconds
            t = time.perf_counter()
            while time.perf_counter() < deadline:
                await asyncio.gather(*(one(e) for e in endpoints))
                done += len(endpoints)
            elapsed = time.perf_counter() - t
            rates.append(done / elapsed)
            print(f"  {label:<70} {_rate(done, elapsed)} sessions/s")
        print(f"  adapter sessions / raw baseline: {rates[1] / rates[0]:.3f}")
        print(f"  (adapter sessions deliver {96 * 2} interval reads each: "
              f"{rates[1] * 192:,.0f} reads/s end to end without the hub)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dlms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buffers", type=int, default=2000, help="profile buffers (meter-days) decoded (default 2000)")
    parser.add_argument("--meters", type=int, default=50, help="simulated meters read concurrently (default 50)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="duration of each session measurement (default 5)")
    args = parser.parse_args()
    bench_buffers(args.buffers)
    print(f"sessions against the simulator: {args.meters} meters on loopback, {args.seconds:g} s each")
    asyncio.run(bench_sessions(args.meters, args.seconds))


if __name__ == "__main__":
    main()
