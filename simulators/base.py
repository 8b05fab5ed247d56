"""The contract of ``meterhub sim <name>`` sub-commands (entry point group
``meterhub.simulators``)."""

from __future__ import annotations

import argparse
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class SimulatorCommand(Protocol):
    """A simulator the CLI can start."""

    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the simulator's options."""
        ...

    async def run(self, args: argparse.Namespace) -> int:
        """Run until cancelled (Ctrl-C) or done; returns the exit code."""
        ...


@dataclass(frozen=True, slots=True)
class DemoFleet:
    """A running simulated fleet that `meterhub demo` reads through an adapter."""

    # Meter ids the demo registers before the adapter starts.
    meter_ids: tuple[str, ...]
    # The [sources.<name>] table of hub.toml that points an adapter at the fleet;
    # includes "type".
    adapter_config: dict[str, Any]
    # Interval reads the adapter should deliver for the whole fleet.
    expected_intervals: int
    # Fleets read live (the meters keep no history, e.g. Modbus counters): the
    # wall-clock time (epoch seconds) after which they produce nothing new. A
    # poll missed before then cannot be read again, so the fleet is done then
    # even if it fell short; None for fleets whose history can be re-read.
    live_until: float | None = None


class DemoFleetFactory(Protocol):
    """``simulators.<name>.demo:demo_fleet``: starts the simulator on free loopback
    ports for the duration of the context and describes how to read it."""

    def __call__(self, *, meters: int, start: datetime, days: int,
                 interval_minutes: int) -> AbstractAsyncContextManager[DemoFleet]: ...
