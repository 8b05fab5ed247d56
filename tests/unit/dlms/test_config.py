"""Adapter config validation: every error names its key."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.dlms import create_adapter, parse_config
from adapters.dlms.codec import Mechanism
from gateway.errors import ConfigError
from tests.support.recording_port import RecordingPort

BASE: dict[str, Any] = {"type": "dlms", "meters": [{"meter_id": "M1", "host": "10.0.0.5", "port": 4059}]}


def test_defaults() -> None:
    config = parse_config(BASE)
    assert config.meters[0].port == 4059
    assert (config.mechanism, config.concurrency, config.poll_seconds, config.retries) == (Mechanism.NONE, 32,
                                                                                            900.0, 3)
    assert config.client_system_title == b"MHHUB001"


def test_meter_range() -> None:
    config = parse_config({"type": "dlms", "meter_range": {"first_port": 5000, "count": 3, "first_index": 7}})
    assert [(m.meter_id, m.port) for m in config.meters] == [("DLMS-000007", 5000), ("DLMS-000008", 5001),
                                                             ("DLMS-000009", 5002)]


def test_secrets_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EK", "00" * 16)
    monkeypatch.setenv("AK", "D0" * 16)
    config = parse_config({**BASE, "authentication": "hls-gmac", "encryption_key_env": "EK",
                           "authentication_key_env": "AK"})
    assert config.keys is not None
    assert "D0D0" not in repr(config)
    assert config.mechanism == Mechanism.HLS_GMAC


@pytest.mark.parametrize(("extra", "key"), [
    ({"colour": "red"}, "colour"),
    ({"authentication": "kerberos"}, "authentication"),
    ({"authentication": "lls"}, "password"),
    ({"authentication": "hls-gmac"}, "authentication"),
    ({"encryption_key": "00" * 16}, "encryption_key"),
    ({"encryption_key": "zz", "authentication_key": "00" * 16}, "encryption_key"),
    ({"password_env": "NOT_SET_ANYWHERE_42"}, "password_env"),
    ({"concurrency": 0}, "concurrency"),
    ({"retries": True}, "retries"),
    ({"start": "2026-03-01T00:00:00"}, "start"),
    ({"start": "yesterday"}, "start"),
    ({"profile_obis": "1.0.99"}, "profile_obis"),
    ({"client_system_title": "abcd"}, "client_system_title"),
    ({"backoff_initial_seconds": 10, "backoff_max_seconds": 1}, "backoff_max_seconds"),
    ({"meters": [{"meter_id": "M1", "port": 70000}]}, "meters[0].port"),
    ({"meters": [{"meter_id": "", "port": 1}]}, "meters[0].meter_id"),
    ({"meters": [{"meter_id": "M1", "port": 1}, {"meter_id": "M1", "port": 2}]}, "meters"),
    ({"meters": []}, "meters"),
    ({"meter_range": {"first_port": 1, "count": 2, "id_format": "X"}}, "meter_range.id_format"),
])
def test_errors_name_the_key(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **extra})
    assert caught.value.metadata["key"] == key
    assert caught.value.reason == "INVALID_CONFIG"


def test_factory_validates() -> None:
    adapter = create_adapter("north", BASE, RecordingPort())
    assert adapter.name == "north"
    with pytest.raises(ConfigError):
        create_adapter("north", {"type": "dlms"}, RecordingPort())
