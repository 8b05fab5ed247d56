"""``meterhub sim modbus``: serve a simulated Modbus TCP meter fleet."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
from datetime import datetime
from typing import Any

from adapters.modbus.clock import ScaledClock, SystemClock, wall_clock_us
from adapters.modbus.maps import builtin_maps
from simulators.modbus.server import Fault, ModbusSimFleet, SimMeter

logger = logging.getLogger(__name__)

FAULT_KINDS = ("no_response", "exception", "frozen", "rollover")


def _fault(text: str) -> tuple[str, float]:
    kind, _, fraction = text.partition("=")
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    try:
        value = float(fraction or "1")
    except ValueError:
        raise argparse.ArgumentTypeError(f"fault fraction {fraction!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("fault fraction must be within 0..1")
    return kind, value


def _selected(meter: SimMeter, kind: str, fraction: float) -> bool:
    """Deterministic choice of the meters a fault applies to."""
    digest = hashlib.sha256(f"{kind}:{meter.meter_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * (1 << 32)


def apply_faults(fleet: ModbusSimFleet, faults: list[tuple[str, float]], *, exception_code: int,
                 now_us: int) -> int:
    """Apply ``--fault`` options; returns how many meters got a fault."""
    hit = 0
    for meter in fleet.meters:
        for kind, fraction in faults:
            if not _selected(meter, kind, fraction):
                continue
            hit += 1
            if kind == "no_response":
                meter.fault = Fault.NO_RESPONSE
            elif kind == "exception":
                meter.fault, meter.exception_code = Fault.EXCEPTION, exception_code
            elif kind == "frozen":
                meter.freeze(now_us)
            else:
                meter.roll_over_in(1000, now_us)
            break
    return hit


def adapter_toml(fleet: ModbusSimFleet, clock: dict[str, Any] | None) -> str:
    """A [sources.modbus-sim] table for hub.toml that reads the fleet."""
    lines = ["[sources.modbus-sim]", 'type = "modbus"']
    if clock is not None:
        lines.append("clock = { " + ", ".join(f"{k} = {v}" for k, v in clock.items()) + " }")
    for meter in fleet.adapter_meters():
        lines += ["", "[[sources.modbus-sim.meters]]", f'id = "{meter["id"]}"', f'host = "{meter["host"]}"',
                  f"port = {meter['port']}", f"unit = {meter['unit']}", f'map = "{meter["map"]}"']
    return "\n".join(lines) + "\n"


class ModbusSimulatorCommand:
    help = "simulated Modbus TCP meters (SunSpec 201-204, float32 sub-meter) with fault injection"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=0,
                            help="first TCP port; server i listens on port+i (default 0: any free port)")
        parser.add_argument("--servers", type=int, default=1, help="number of Modbus TCP servers (default 1)")
        parser.add_argument("--units", type=int, default=10, help="unit ids (meters) per server, 1..247 (default 10)")
        parser.add_argument("--map", action="append", choices=sorted(builtin_maps()), default=None,
                            help="register map, repeatable, assigned round-robin (default sunspec_203)")
        parser.add_argument("--energy-sf", type=int, default=0,
                            help="SunSpec TotWh_SF of the energy counters (default 0: 1 Wh)")
        parser.add_argument("--first-number", type=int, default=1, help="number of the first meter id (MODBUS-000001)")
        parser.add_argument("--speed", type=int, default=1,
                            help="meter time runs this many times faster than the wall clock (default 1)")
        parser.add_argument("--start", type=datetime.fromisoformat, default=None,
                            help="meter time at start-up, ISO 8601 with offset (only with --speed > 1)")
        parser.add_argument("--fault", type=_fault, action="append", default=[],
                            help="KIND[=FRACTION]: no_response, exception, frozen or rollover on that fraction "
                                 "of meters (chosen deterministically), repeatable")
        parser.add_argument("--exception-code", type=int, default=4, help="Modbus exception code for 'exception'")
        parser.add_argument("--print-config", action="store_true",
                            help="write the adapter's hub.toml source table to stdout")

    async def run(self, args: argparse.Namespace) -> int:
        wall = wall_clock_us()
        clock_table: dict[str, Any] | None = None
        clock: ScaledClock | SystemClock
        if args.speed > 1 or args.start is not None:
            start = args.start or datetime.now().astimezone()
            if start.tzinfo is None:
                sys.stderr.write("--start needs a UTC offset\n")
                return 2
            start_us = int(start.timestamp()) * 1_000_000
            clock = ScaledClock(start_us=start_us, anchor_wall_us=wall, rate=max(1, args.speed))
            clock_table = {"start_us": start_us, "anchor_wall_us": wall, "rate": max(1, args.speed)}
        else:
            clock = SystemClock()
        ports = [args.port + i for i in range(args.servers)] if args.port else None
        fleet = ModbusSimFleet(servers=args.servers, units_per_server=args.units, map_names=args.map or ["sunspec_203"],
                               clock=clock, host=args.host, ports=ports, first_number=args.first_number,
                               energy_sf=args.energy_sf)
        faulty = apply_faults(fleet, args.fault, exception_code=args.exception_code, now_us=clock.now_us())
        async with fleet:
            logger.info("modbus simulator: %d meter(s) on %s ports %s, %d with faults", len(fleet.meters), args.host,
                        fleet.ports, faulty)
            if args.print_config:
                sys.stdout.write(adapter_toml(fleet, clock_table))
                sys.stdout.flush()
            await asyncio.Event().wait()
        return 0


COMMAND = ModbusSimulatorCommand()
