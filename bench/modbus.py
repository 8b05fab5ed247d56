"""Modbus polling throughput: polls/s over 1,000 simulated meters (10 servers x
100 unit ids) through the adapter (read planning, decoding, interval building,
batching) against a raw baseline: bare pymodbus read_holding_registers on the
same connections. The simulator runs in a child process so the client side has
a core to itself. Prints both polls/s and the ratio adapter / raw. Bounded
runtime (``--seconds`` per measurement, default 8).

    python -m bench.modbus [--servers 10] [--units 100] [--connections 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from adapters.modbus.adapter import ModbusAdapter
from adapters.modbus.clock import SystemClock
from adapters.modbus.config import parse_config
from adapters.port import SubmitOutcome
from meterhub.v1 import model_pb2 as pb

INTERVAL_US = 900_000_000


def serve(servers: int, units: int, ports_out: Any, stop: Any) -> None:
    from simulators.modbus.server import ModbusSimFleet

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def main() -> None:
        async with ModbusSimFleet(servers=servers, units_per_server=units, clock=SystemClock()) as fleet:
            ports_out.put(fleet.ports)
            # A multiprocessing Event cannot be awaited: wait for it in a thread.
            await asyncio.to_thread(stop.wait)

    asyncio.run(main())


class FastClock:
    """Virtual meter time that jumps to each poll boundary at once (rounds back to back)."""

    def __init__(self) -> None:
        self.t = 1_790_000_000_000_000 - 1_790_000_000_000_000 % INTERVAL_US

    def now_us(self) -> int:
        return self.t

    async def sleep_until(self, t_us: int) -> None:
        self.t = max(self.t, t_us)
        await asyncio.sleep(0)


class CountingPort:
    def __init__(self) -> None:
        self.intervals = 0

    async def submit(self, batch: pb.ReadingBatch) -> SubmitOutcome:
        self.intervals += sum(len(b.values) for b in batch.interval_blocks)
        return SubmitOutcome()

    async def watermark(self, meter_id: str, reading_type: pb.ReadingType, interval_seconds: int) -> None:
        return None

    async def dead_letter(self, payload: bytes, *, reason_code: str, reason: str,
                          content_type: str = "application/octet-stream") -> None:
        return None


async def raw_baseline(ports: list[int], units: int, connections: int, seconds: float) -> float:
    polls = 0
    deadline = time.perf_counter() + seconds

    async def worker(port: int, unit_ids: list[int]) -> None:
        nonlocal polls
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
        await client.connect()
        try:
            while time.perf_counter() < deadline:
                for unit in unit_ids:
                    response = await client.read_holding_registers(40071, count=53, device_id=unit)
                    assert not response.isError()
                    polls += 1
        finally:
            client.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(port, list(range(1 + c, units + 1, connections)))
                           for port in ports for c in range(connections)))
    return polls / (time.perf_counter() - started)


async def adapter_rate(ports: list[int], units: int, connections: int, seconds: float) -> tuple[float, int]:
    meters = [{"id": f"MODBUS-{i * units + u:06d}", "host": "127.0.0.1", "port": port, "unit": u,
               "map": "sunspec_203"} for i, port in enumerate(ports) for u in range(1, units + 1)]
    config = parse_config({"type": "modbus", "meters": meters, "connections_per_host": connections,
                           "batch_seconds": 3600, "timeout_seconds": 2.0})
    port = CountingPort()
    adapter = ModbusAdapter("bench", config, port, clock=FastClock())
    task = asyncio.create_task(adapter.run())
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    elapsed = time.perf_counter() - started
    stats = adapter.stats
    if stats.polls_failed:
        print(f"  ({stats.polls_failed} failed polls)")
    return stats.polls_ok / elapsed, port.intervals


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.modbus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=10, help="simulated Modbus TCP servers (default 10)")
    parser.add_argument("--units", type=int, default=100, help="unit ids (meters) per server (default 100)")
    parser.add_argument("--connections", type=int, default=4, help="connections per server (default 4)")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each measurement (default 8)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ctx = multiprocessing.get_context("spawn")
    ports_q = ctx.Queue()
    stop = ctx.Event()
    server = ctx.Process(target=serve, args=(args.servers, args.units, ports_q, stop), daemon=True)
    server.start()
    try:
        ports = ports_q.get(timeout=60)
        meters = args.servers * args.units
        print(f"modbus bench: {meters} meters ({args.servers} servers x {args.units} unit ids), "
              f"{args.connections} connection(s) per server, SunSpec 203 (53 registers per poll)")
        raw = asyncio.run(raw_baseline(ports, args.units, args.connections, args.seconds))
        print(f"  raw pymodbus read_holding_registers : {raw:10.0f} polls/s")
        rate, intervals = asyncio.run(adapter_rate(ports, args.units, args.connections, args.seconds))
        print(f"  adapter (decode + intervals + batch): {rate:10.0f} polls/s ({intervals} intervals submitted)")
        print(f"  adapter / raw baseline: {rate / raw:.2f}")
    finally:
        stop.set()
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()


if __name__ == "__main__":
    main()
