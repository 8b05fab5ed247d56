"""Secret values in config: never inline in a committed file, always from the
environment or a file.

    password = { env = "MQTT_PASSWORD" }
    store = { file = "/run/secrets/store_url" }

A plain string is accepted for values that are not secret by nature (a SQLite
path); keys that must be secret reject plain strings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError


class Secret:
    """A resolved secret that does not show itself in logs or reprs."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__


def resolve_secret(value: Any, key: str, *, allow_plain: bool = False) -> Secret:
    """Resolve {env = NAME} or {file = PATH}; a plain string only if allowed."""
    if isinstance(value, str):
        if not allow_plain:
            raise ConfigError(f"{key} is a secret: give it as {{ env = \"NAME\" }} or {{ file = \"PATH\" }}, "
                              "not inline", metadata={"key": key})
        return Secret(value, "config")
    if isinstance(value, Mapping) and set(value) == {"env"}:
        name = value["env"]
        if not isinstance(name, str) or name not in os.environ:
            raise ConfigError(f"{key}: environment variable {name!r} is not set", metadata={"key": key})
        return Secret(os.environ[name], f"env {name}")
    if isinstance(value, Mapping) and set(value) == {"file"}:
        path = Path(str(value["file"]))
        try:
            return Secret(path.read_text(encoding="utf-8").strip(), f"file {path}")
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read secret file {path}: {exc.strerror}", metadata={"key": key}) from exc
    raise ConfigError(f"{key} must be a string or {{ env = \"NAME\" }} / {{ file = \"PATH\" }}", metadata={"key": key})
