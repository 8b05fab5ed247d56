"""`meterhub sim multispeak`: a MultiSpeak v4.1 head-end (MR_Server) for a simulated fleet."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from datetime import UTC, datetime

from adapters.multispeak.transport import client_ssl_context, server_ssl_context
from simulators.multispeak.fleet import meter_ids
from simulators.multispeak.server import Faults, HeadEndSimulator

logger = logging.getLogger(__name__)


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-03-01T00:00:00+00:00")
    return value.astimezone(UTC)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


class MultiSpeakCommand:
    help = "MultiSpeak v4.1 head-end (MR_Server over SOAP) with fault injection"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--meters", type=int, default=100, help="fleet size (ids MSP-000001...)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
        parser.add_argument("--interval-minutes", type=int, default=15)
        parser.add_argument("--start", type=_time, default=None, help="first interval served (ISO, with offset)")
        parser.add_argument("--end", type=_time, default=None, help="last interval served (default: now)")
        parser.add_argument("--user", default="", help="UserID the MultiSpeak header must carry (default: any)")
        parser.add_argument("--password-env", default="MULTISPEAK_SIM_PASSWORD",
                            help="environment variable holding the Pwd the header must carry")
        parser.add_argument("--blocks-per-page", type=int, default=4,
                            help="intervalData blocks per response (paging with lastReceived)")
        parser.add_argument("--tls-cert", default="", help="serve HTTPS with this certificate (PEM)")
        parser.add_argument("--tls-key", default="", help="private key of --tls-cert (PEM)")
        parser.add_argument("--callback-ca", default="", help="CA file to trust for https callbacks")
        parser.add_argument("--callback-user", default="", help="UserID sent on callbacks")
        parser.add_argument("--callback-password-env", default="MULTISPEAK_SIM_CALLBACK_PASSWORD")
        parser.add_argument("--missing-rate", type=_rate, default=0.0, help="share of intervals left empty")
        parser.add_argument("--bad-block-rate", type=_rate, default=0.0, help="share of blocks with a bad value")
        parser.add_argument("--malformed-rate", type=_rate, default=0.0, help="share of responses cut in half")
        parser.add_argument("--fault-rate", type=_rate, default=0.0, help="share of responses that are soap:Server")
        parser.add_argument("--xxe-rate", type=_rate, default=0.0, help="share of responses that are an XXE document")
        parser.add_argument("--slow-rate", type=_rate, default=0.0, help="share of responses delayed")
        parser.add_argument("--slow-seconds", type=float, default=5.0, help="delay of a slow response")
        parser.add_argument("--seed", type=int, default=1, help="seed of the fault injection")

    async def run(self, args: argparse.Namespace) -> int:
        tls = server_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        callback_tls = client_ssl_context(verify=True, ca_file=args.callback_ca) if args.callback_ca else None
        faults = Faults(missing_interval_rate=args.missing_rate, bad_block_rate=args.bad_block_rate,
                        malformed_rate=args.malformed_rate, soap_fault_rate=args.fault_rate, xxe_rate=args.xxe_rate,
                        slow_rate=args.slow_rate, slow_seconds=args.slow_seconds)
        sim = HeadEndSimulator(meter_ids(args.meters), host=args.host, port=args.port,
                               interval_minutes=args.interval_minutes, start=args.start, end=args.end,
                               user=args.user, password=os.environ.get(args.password_env, ""),
                               blocks_per_page=args.blocks_per_page, faults=faults, seed=args.seed,
                               ssl_context=tls, callback_ssl_context=callback_tls, callback_user=args.callback_user,
                               callback_password=os.environ.get(args.callback_password_env, ""))
        async with sim:
            logger.info("MultiSpeak head-end for %d meters at %s", args.meters, sim.url)
            await asyncio.Event().wait()
        return 0


COMMAND = MultiSpeakCommand()
