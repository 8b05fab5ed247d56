"""``meterhub sim dlms``: serve a fleet of simulated DLMS/COSEM meters over TCP (WRAPPER)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta

from adapters.dlms.codec import Mechanism
from adapters.dlms.security import Keys
from simulators.dlms.model import Faults
from simulators.dlms.server import MeterFleet, SimulatorConfig

logger = logging.getLogger(__name__)

AUTHENTICATION = {"none": Mechanism.NONE, "lls": Mechanism.LLS, "hls-gmac": Mechanism.HLS_GMAC}


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a probability between 0 and 1")
    return value


def _key(text: str) -> bytes:
    """A 16-byte key given as hex, or as env:NAME to read the hex from the environment."""
    if text.startswith("env:"):
        text = os.environ.get(text[4:], "")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("32 hex digits, or env:NAME") from None
    if len(key) != 16:
        raise argparse.ArgumentTypeError("32 hex digits, or env:NAME")
    return key


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    mechanism = AUTHENTICATION[args.authentication]
    password = args.password.encode() if args.password else None
    if mechanism == Mechanism.LLS and not password:
        raise SystemExit("--authentication lls needs --password")
    keys = None
    if args.encryption_key or args.authentication_key:
        if not (args.encryption_key and args.authentication_key):
            raise SystemExit("give both --encryption-key and --authentication-key")
        keys = Keys(args.encryption_key, args.authentication_key)
    if mechanism == Mechanism.HLS_GMAC and keys is None:
        raise SystemExit("--authentication hls-gmac needs --encryption-key and --authentication-key")
    start = args.start or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=args.days)
    return SimulatorConfig(
        meters=args.meters, first_index=args.first, host=args.host, base_port=args.port,
        interval_seconds=args.interval_minutes * 60, history_start=start, history_end=args.end,
        faults=Faults(gap_rate=args.fault_gap, power_fail_rate=args.fault_power_fail, spike_rate=args.fault_spike,
                      drift_rate=args.fault_drift, drift_seconds=args.drift_seconds),
        mechanism=mechanism, password=password, keys=keys, max_pdu_size=args.max_pdu)


class DlmsSimulatorCommand:
    help = "serve simulated DLMS/COSEM meters (clock, energy registers, load profile) over TCP"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=4059,
                            help="first TCP port; meter i listens on port+i (default 4059; 0 = any free ports)")
        parser.add_argument("--meters", type=int, default=10, help="number of meters (ids DLMS-000001...)")
        parser.add_argument("--first", type=int, default=1, help="index of the first meter (default 1)")
        parser.add_argument("--start", type=_utc, default=None,
                            help="start of load profile history, ISO date-time (default: --days days ago)")
        parser.add_argument("--days", type=int, default=7, help="days of history when --start is absent (default 7)")
        parser.add_argument("--end", type=_utc, default=None, help="no profile entries after this instant")
        parser.add_argument("--interval-minutes", type=int, default=15, help="capture period (default 15)")
        parser.add_argument("--authentication", choices=sorted(AUTHENTICATION), default="none",
                            help="required authentication (default none)")
        parser.add_argument("--password", default="", help="LLS password")
        parser.add_argument("--encryption-key", type=_key, default=None,
                            help="global unicast encryption key (hex or env:NAME); turns on ciphering")
        parser.add_argument("--authentication-key", type=_key, default=None,
                            help="global authentication key (hex or env:NAME)")
        parser.add_argument("--max-pdu", type=int, default=1024, help="server max receive PDU size (default 1024)")
        parser.add_argument("--fault-gap", type=_rate, default=0.0, help="share of missing profile entries")
        parser.add_argument("--fault-power-fail", type=_rate, default=0.0,
                            help="share of entries with the power-down status bit")
        parser.add_argument("--fault-spike", type=_rate, default=0.0, help="share of entries with a spike (x25)")
        parser.add_argument("--fault-drift", type=_rate, default=0.0, help="share of meters whose clock drifts")
        parser.add_argument("--drift-seconds", type=int, default=300,
                            help="how far a drifting clock is ahead (default 300)")

    async def run(self, args: argparse.Namespace) -> int:
        config = config_from_args(args)
        async with MeterFleet(config) as fleet:
            first, last = fleet.endpoints[0], fleet.endpoints[-1]
            logger.info("serving %d DLMS meters %s..%s on %s ports %d..%d (%s)", len(fleet.endpoints),
                        first.meter_id, last.meter_id, config.host, first.port, last.port, args.authentication)
            await asyncio.Event().wait()
        return 0


COMMAND = DlmsSimulatorCommand()
