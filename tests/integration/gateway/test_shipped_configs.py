"""The configuration files we ship parse, and their sources build real adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.hub import Hub

ROOT = Path(__file__).resolve().parents[3]


def test_example_hub_toml_is_valid() -> None:
    config = load_config(ROOT / "hub.toml")
    assert config.grpc.listen == "127.0.0.1:50051"


async def test_container_hub_toml_builds_its_adapters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "store_url"
    secret.write_text(str(tmp_path / "container.sqlite"))
    text = (ROOT / "docker" / "hub.toml").read_text().replace("/run/secrets/store_url", str(secret))
    path = tmp_path / "hub.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.store == str(tmp_path / "container.sqlite")
    hub = Hub(config)
    try:
        adapters = [hub.create_adapter(source) for source in config.sources]
    finally:
        hub.engine.dispose()
    assert [s.type for s in config.sources] == ["mqtt"]
    assert len(adapters) == 1
