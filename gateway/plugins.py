"""Adapter and simulator plugins, found through entry points.

Entry points are listed without importing them and loaded only when config
names them, so a broken or missing optional adapter cannot stop the hub.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from gateway.errors import ConfigError

ADAPTER_GROUP = "meterhub.adapters"
SIMULATOR_GROUP = "meterhub.simulators"


def available(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def load_plugin(group: str, name: str) -> Any:
    found = available(group)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"unknown type {name!r} in {group} (installed: {known})", metadata={"type": name})
    try:
        return found[name].load()
    except ImportError as exc:
        raise ConfigError(
            f"{group} plugin {name!r} cannot be imported ({exc}); is its extra installed?",
            metadata={"type": name},
        ) from exc
