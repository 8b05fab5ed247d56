"""Brokers for the simulator, the demo and the tests, on free loopback ports.

``mosquitto_broker`` runs the real Mosquitto binary with a minimal config in a
temporary directory; ``amqtt_broker`` runs the pure-Python amqtt broker in this
event loop (MQTT 3.1.1 only, and it keeps no in-flight state across
reconnects, so it stands in for the demo only). ``demo_broker`` picks
Mosquitto when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

MOSQUITTO_FALLBACK_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
START_TIMEOUT_SECONDS = 10.0
# The username the amqtt stand-in requires: amqtt keeps messages for an
# offline persistent session only when the client is not anonymous.
AMQTT_USERNAME = "meterhub"


class BrokerUnavailable(RuntimeError):
    """The broker could not be found or started."""


@dataclass(frozen=True, slots=True)
class RunningBroker:
    kind: Literal["mosquitto", "amqtt"]
    host: str
    port: int
    # Protocol versions the broker speaks, best first ("5", "3.1.1").
    protocols: tuple[str, ...]
    # A username clients should present (amqtt stand-in), or None.
    username: str | None = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_FALLBACK_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def mosquitto_config(port: int) -> str:
    return "\n".join((
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        # The default (1000 queued QoS 1 messages per client beyond those in
        # flight) silently drops messages when a burst meets a slow consumer.
        "max_queued_messages 0",
        "persistence false",
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "",
    ))


async def _wait_listening(port: int, deadline: float, process: asyncio.subprocess.Process) -> None:
    while True:
        if process.returncode is not None:
            raise BrokerUnavailable(f"mosquitto exited with status {process.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"no broker listening on 127.0.0.1:{port} after "
                                        f"{START_TIMEOUT_SECONDS} s") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def mosquitto_broker(port: int | None = None, *, binary: str | None = None) -> AsyncIterator[RunningBroker]:
    """Run Mosquitto on 127.0.0.1 (a free port unless given) until the context ends."""
    executable = binary or find_mosquitto()
    if executable is None:
        raise BrokerUnavailable("the mosquitto binary is not installed (apt-get install mosquitto)")
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="meterhub-mosquitto-") as workdir:
        config = Path(workdir) / "mosquitto.conf"
        config.write_text(mosquitto_config(port), encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            executable, "-c", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await _wait_listening(port, time.monotonic() + START_TIMEOUT_SECONDS, process)
            logger.info("mosquitto (%s) listening on 127.0.0.1:%d", executable, port)
            yield RunningBroker("mosquitto", "127.0.0.1", port, ("5", "3.1.1"))
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5.0)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if process.stderr is not None:
                errors = (await process.stderr.read()).decode(errors="replace").strip()
                if errors:
                    logger.debug("mosquitto said: %s", errors)


@contextlib.asynccontextmanager
async def amqtt_broker(port: int | None = None) -> AsyncIterator[RunningBroker]:
    """Run the embedded amqtt broker (MQTT 3.1.1) in this event loop."""
    try:
        from amqtt.broker import Broker  # optional: only when no Mosquitto
    except ImportError as exc:
        raise BrokerUnavailable("neither mosquitto nor the amqtt package is installed") from exc
    port = port or free_port()
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}},
    })
    # start() returns once the listener is bound; a probe connection would leave
    # amqtt with a half-open handler that it never closes.
    await broker.start()
    try:
        logger.info("embedded amqtt broker listening on 127.0.0.1:%d", port)
        yield RunningBroker("amqtt", "127.0.0.1", port, ("3.1.1",), username=AMQTT_USERNAME)
    finally:
        await broker.shutdown()


@contextlib.asynccontextmanager
async def demo_broker(port: int | None = None) -> AsyncIterator[RunningBroker]:
    """Mosquitto when installed, else the embedded amqtt broker."""
    if find_mosquitto() is not None:
        async with mosquitto_broker(port) as broker:
            yield broker
    else:
        async with amqtt_broker(port) as broker:
            yield broker
