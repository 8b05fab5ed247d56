"""``meterhub sim c1222``: serve a fleet of simulated C12.22 meters."""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import UTC, datetime, timedelta

from adapters.c1222.codec import KeyRing
from adapters.c1222.tables import IntFormat, NibbleMapping, TimeFormat
from simulators.c1222.meter import FaultRates, MeterSpec
from simulators.c1222.server import FleetConfig, FleetServer

logger = logging.getLogger(__name__)


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a probability between 0 and 1")
    return value


class C1222SimulatorCommand:
    help = "serve simulated ANSI C12.22 meters (C12.19 load profile and registers) over TCP"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=1153, help="TCP port (default 1153, 0 = any free port)")
        parser.add_argument("--meters", type=int, default=10, help="number of meters (ids C1222-000001...)")
        parser.add_argument("--first", type=int, default=1, help="number of the first meter (default 1)")
        parser.add_argument("--start", type=_utc, default=None,
                            help="first day of load profile, ISO date (default: --blocks days ago)")
        parser.add_argument("--now", type=_utc, default=None,
                            help="freeze the meters' clock at this instant (default: real time)")
        parser.add_argument("--interval-minutes", type=int, default=15, help="LP interval (default 15)")
        parser.add_argument("--channels", type=int, default=2, help="LP channels (default 2)")
        parser.add_argument("--blocks", type=int, default=8, help="LP blocks (days) kept (default 8)")
        parser.add_argument("--msb-first", action="store_true", help="big-endian table data (ST0 DATA_ORDER=1)")
        parser.add_argument("--time-format", type=int, choices=[1, 2, 3, 4], default=4,
                            help="ST0 TM_FORMAT (1 BCD, 2 UINT8, 3 minutes, 4 seconds; default 4)")
        parser.add_argument("--int-format", choices=[f.name.lower() for f in IntFormat if f < 64],
                            default="uint16", help="ST62 INT_FMT_CDE of interval data (default uint16)")
        parser.add_argument("--nibble-mapping", choices=[m.value for m in NibbleMapping],
                            default=NibbleMapping.FIRST_IN_COMMON_BYTE.value,
                            help="where each channel's extended status nibble lives")
        parser.add_argument("--password", default="", help="require this C12.22 security password")
        parser.add_argument("--key", action="append", default=[], metavar="ID:HEX",
                            help="accept security modes 1/2 with this AES-128 key (repeatable)")
        parser.add_argument("--max-response", type=int, default=4096, help="largest read answered (RSTL above)")
        parser.add_argument("--fault-gap", type=_rate, default=0.0, help="share of skipped intervals")
        parser.add_argument("--fault-power-fail", type=_rate, default=0.0, help="share of power-fail intervals")
        parser.add_argument("--fault-clock-set", type=_rate, default=0.0, help="share of clock-set intervals")
        parser.add_argument("--fault-overflow", type=_rate, default=0.0, help="share of overflowed intervals")

    async def run(self, args: argparse.Namespace) -> int:
        frozen: datetime | None = args.now
        start = args.start or ((frozen or datetime.now(UTC)) - timedelta(days=args.blocks - 1))
        keys: dict[int, bytes] = {}
        for item in args.key:
            key_id, _, hex_key = item.partition(":")
            keys[int(key_id)] = bytes.fromhex(hex_key)
        spec = MeterSpec(lp_start=start, interval_minutes=args.interval_minutes, channels=args.channels,
                         blocks=args.blocks, data_order_msb_first=args.msb_first,
                         time_format=TimeFormat(args.time_format), int_format=IntFormat[args.int_format.upper()],
                         nibble_mapping=NibbleMapping(args.nibble_mapping),
                         scalars=(2, *([1] * (args.channels - 1))), divisors=(10, *([1] * (args.channels - 1))),
                         faults=FaultRates(args.fault_gap, args.fault_power_fail, args.fault_clock_set,
                                           args.fault_overflow))
        config = FleetConfig(args.meters, spec, (lambda: frozen) if frozen else (lambda: datetime.now(UTC)),
                             KeyRing(keys), args.password.encode("latin-1"), args.max_response, args.first)
        async with FleetServer(config, args.host, args.port) as server:
            logger.info("serving %d C12.22 meters on %s:%d", args.meters, args.host, server.port)
            await asyncio.Event().wait()
        return 0


COMMAND = C1222SimulatorCommand()
