"""``meterhub sim cim``: run the simulated CIM head-end.

    meterhub sim cim serve --listen 127.0.0.1:8090 --meters 100
    meterhub sim cim push --url http://127.0.0.1:8089/cim/MeterReadings --fault bad-code=0.05
    meterhub sim cim files --dir var/cim-drop --days 2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.cim.message import Binding
from simulators.cim.faults import FAULT_KINDS, FaultPlan
from simulators.cim.fleet import Fleet
from simulators.cim.headend import GET_PATH, HeadEnd

logger = logging.getLogger(__name__)


def _start(text: str | None) -> datetime:
    if text is None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=1)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("--start needs a UTC offset, e.g. 2026-11-01T00:00:00Z")
    return value


class CimSimulatorCommand:
    help = "simulated IEC 61968-9 CIM head-end (get replies, pushed events, batch files) with fault injection"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("mode", choices=("serve", "push", "files"),
                            help="serve: answer get requests; push: POST created events; files: write batch files")
        parser.add_argument("--meters", type=int, default=100, help="fleet size (default 100)")
        parser.add_argument("--start", default=None, help="first interval start, ISO 8601 with offset "
                            "(default: yesterday 00:00 UTC)")
        parser.add_argument("--days", type=int, default=1, help="days of data (default 1)")
        parser.add_argument("--interval-minutes", type=int, default=15, choices=(5, 10, 15, 30, 60))
        parser.add_argument("--prefix", default="CIM", help="meter id prefix (default CIM -> CIM-000001)")
        parser.add_argument("--binding", choices=[b.value for b in Binding], default="xml",
                            help="xml (plain POST) or soap11 / soap12 (61968-100 SOAP binding)")
        parser.add_argument("--listen", default="127.0.0.1:8090", help=f"serve: host:port; path {GET_PATH}")
        parser.add_argument("--url", default="http://127.0.0.1:8089/cim/MeterReadings", help="push: hub endpoint")
        parser.add_argument("--token-env", default=None, help="push: env variable holding the bearer token")
        parser.add_argument("--meters-per-message", type=int, default=100)
        parser.add_argument("--dir", type=Path, default=Path("var/cim-drop"), help="files: drop directory")
        parser.add_argument("--fault", action="append", default=[], metavar="KIND[=RATE]",
                            help="inject a fault; kinds: " + ", ".join(FAULT_KINDS))
        parser.add_argument("--oversize-bytes", type=int, default=17 * 1024 * 1024,
                            help="size an 'oversized' message is padded to")
        parser.add_argument("--seed", type=int, default=1)

    async def run(self, args: argparse.Namespace) -> int:
        try:
            faults = FaultPlan.parse(args.fault, seed=args.seed, oversize_bytes=args.oversize_bytes)
            fleet = Fleet(args.meters, _start(args.start), args.days, args.interval_minutes, args.prefix)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            logger.error("invalid options: %s", exc)  # noqa: TRY400 - a usage error, no traceback
            return 2
        head_end = HeadEnd(fleet, faults=faults, binding=Binding(args.binding))
        if args.mode == "serve":
            host, _, port = args.listen.rpartition(":")
            async with head_end.server(host, int(port)) as server:
                logger.info("CIM head-end with %d meters answering get on http://%s:%d%s", fleet.meters, host,
                            server.port, GET_PATH)
                await asyncio.Event().wait()
            return 0
        if args.mode == "push":
            token = os.environ.get(args.token_env) if args.token_env else None
            report = await head_end.push(args.url, meters_per_message=args.meters_per_message, token=token)
            logger.info("pushed %d messages: results %s, HTTP %s, %d error(s)", report.messages, report.results,
                        report.http_statuses, len(report.errors))
            for error in report.errors[:20]:
                logger.info("  %s", error)
            return 0 if report.messages and not report.errors else 1
        written = await asyncio.to_thread(head_end.write_files, args.dir, meters_per_file=args.meters_per_message)
        logger.info("wrote %d file(s) to %s", len(written), args.dir)
        return 0


COMMAND = CimSimulatorCommand()
