"""The `meterhub` command: serve, demo, simulators, tokens and bill-cycle export."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.config import load_config
from gateway.errors import ConfigError, MeterhubError
from gateway.logs import configure_logging
from gateway.plugins import SIMULATOR_GROUP, available
from gateway.security import ROLES, hash_token, new_token

logger = logging.getLogger(__name__)


async def _serve(config_path: Path) -> int:
    from gateway.hub import Hub

    config = load_config(config_path)
    configure_logging(config.log_level, config.log_format)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Hub(config) as hub:
        logger.info("meterhub ready: gRPC on %s, store %s", hub.grpc_target, config.store)
        await stop.wait()
        logger.info("shutting down: draining in-flight batches")
    return 0


async def _run_simulator(command: object, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(command.run(args))  # type: ignore[attr-defined]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        return int(task.result())
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterhub", description="Head-end gateway and gRPC hub for meter data")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the hub")
    serve.add_argument("--config", type=Path, default=Path("hub.toml"), help="hub.toml (default: ./hub.toml)")
    demo = sub.add_parser("demo", help="run the hub with its simulators and show the results")
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"), help="where the demo store goes")
    demo.add_argument("--meters", type=int, default=1000, help="MQTT fleet size (default 1000)")
    demo.add_argument("--fleet-meters", type=int, default=50, help="size of each other fleet (default 50)")
    demo.add_argument("--days", type=int, default=1)
    demo.add_argument("--only", action="append", default=None, help="run only these sources (repeatable)")
    billing = sub.add_parser("billing", help="billing determinants from the store")
    billing_sub = billing.add_subparsers(dest="billing_command", required=True)
    export = billing_sub.add_parser("export", help="export a bill cycle as CSV or JSON, straight from the store")
    export.add_argument("--config", type=Path, default=Path("hub.toml"), help="hub.toml (store and tariffs)")
    export.add_argument("--start", required=True,
                        help="period start: YYYY-MM-DD (local midnight in --time-zone) or ISO 8601 with offset")
    export.add_argument("--end", required=True, help="period end (exclusive), same forms as --start")
    export.add_argument("--time-zone", default="UTC", help="IANA zone for date-only --start/--end (default UTC)")
    export.add_argument("--tariff", default="", help="only service points of this tariff")
    export.add_argument("--service-point", action="append", default=[], help="only these points (repeatable)")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--output", type=Path, default=None, help="file to write (default: standard output)")
    token = sub.add_parser("token", help="manage API bearer tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    new = token_sub.add_parser("new", help="make a token and print the [[security.tokens]] entry holding its hash")
    new.add_argument("--name", required=True, help="who the token is for, e.g. billing-prod")
    new.add_argument("--role", action="append", required=True, choices=sorted(ROLES), help="repeatable")
    sim = sub.add_parser("sim", help="run a meter or head-end simulator")
    sims = sim.add_subparsers(dest="simulator", required=True)
    for name, entry in sorted(available(SIMULATOR_GROUP).items()):
        try:
            command = entry.load()
        except ImportError as exc:
            sims.add_parser(name, help=f"(unavailable: {exc})")
            continue
        p = sims.add_parser(name, help=command.help)
        command.add_arguments(p)
        p.set_defaults(sim_command=command)
    sim.add_argument("--log-level", default="INFO")
    return parser


def _instant(text: str, zone: str, what: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=ZoneInfo(zone))
        instant = datetime.fromisoformat(text)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise ConfigError(f"{what} {text!r}: {exc}") from exc
    if instant.tzinfo is None:
        raise ConfigError(f"{what} {text!r} needs a UTC offset (or give a date and --time-zone)")
    return instant


def _export_cycle(args: argparse.Namespace) -> int:
    from gateway.billing import BillingPeriod, BillingPolicy, TariffCalendar, write_cycle_csv, write_cycle_json
    from gateway.billing.loading import stream_cycle
    from store.engine import open_engine

    config = load_config(args.config)
    period = BillingPeriod(_instant(args.start, args.time_zone, "--start"),
                           _instant(args.end, args.time_zone, "--end"))
    if args.tariff and args.tariff not in config.billing.tariffs:
        raise ConfigError(f"--tariff {args.tariff!r} is not configured")
    calendars = {name: TariffCalendar(t) for name, t in config.billing.tariffs.items()}
    engine = open_engine(config.store, create=False)
    try:
        items = stream_cycle(engine, period, calendars,
                             BillingPolicy(estimates_billable=config.billing.estimates_billable),
                             ids=args.service_point, tariff=args.tariff)
        write = write_cycle_csv if args.format == "csv" else write_cycle_json
        if args.output is None:
            count = write(items, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                count = write(items, out)
    finally:
        engine.dispose()
    sys.stderr.write(f"meterhub: exported {count} service points\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return asyncio.run(_serve(args.config))
        if args.command == "demo":
            from gateway.demo import prepare_workdir, run_demo

            # The demo's own summary reports rejections; logs would only interleave with it.
            configure_logging("ERROR")
            prepare_workdir(args.workdir)
            return asyncio.run(run_demo(args.workdir, meters=args.meters, fleet_meters=args.fleet_meters,
                                        days=args.days, only=args.only))
        if args.command == "billing":
            return _export_cycle(args)
        if args.command == "token":
            value = new_token()
            roles = ", ".join(f'"{r}"' for r in sorted(set(args.role)))
            sys.stdout.write(
                f"token (give it to {args.name}; it is not stored anywhere): {value}\n\n"
                f'[[security.tokens]]\nname = "{args.name}"\nroles = [{roles}]\nsha256 = "{hash_token(value)}"\n'
            )
            return 0
        if args.command == "sim":
            configure_logging(args.log_level.upper())
            command = getattr(args, "sim_command", None)
            if command is None:
                sys.stderr.write(f"simulator {args.simulator!r} is not available\n")
                return 2
            return asyncio.run(_run_simulator(command, args))
    except ConfigError as exc:
        sys.stderr.write(f"meterhub: configuration error: {exc.message}\n")
        return 2
    except MeterhubError as exc:
        sys.stderr.write(f"meterhub: {exc.reason}: {exc.message}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
