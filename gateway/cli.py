"""The `meterhub` command: serve, demo and simulators."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from gateway.config import load_config
from gateway.errors import ConfigError
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
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
