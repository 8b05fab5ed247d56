"""MQTT source configuration: defaults, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.mqtt import MqttAdapter, create_adapter
from adapters.mqtt.config import MqttConfig
from gateway.errors import ConfigError
from tests.support.recording_port import RecordingPort


def test_defaults() -> None:
    config = MqttConfig.from_mapping("north", {"type": "mqtt"})
    assert config.topics == ("meterhub/+/readings",)
    assert config.subscriptions == ("meterhub/+/readings",)
    assert config.client_id == "meterhub-north"
    assert (config.protocol, config.clean_start, config.payload_format) == ("5", False, "auto")
    assert config.max_in_flight == 32


def test_shared_subscription_prefix() -> None:
    config = MqttConfig.from_mapping("n", {"share_group": "hubs", "topics": ["a/+/b", "c/#"]})
    assert config.subscriptions == ("$share/hubs/a/+/b", "$share/hubs/c/#")


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"protocol": "3.1.1", "share_group": "hubs"}, "share_group needs protocol \"5\""),
    ({"share_group": "a/b"}, "share_group 'a/b' must be non-empty"),
    ({"protocol": 5}, "protocol = 5 is invalid: expected one of \"5\", \"3.1.1\""),
    ({"port": 0}, "port = 0 is invalid"),
    ({"port": True}, "port = True is invalid"),
    ({"topics": "meterhub/#"}, "topics = 'meterhub/#' is invalid"),
    ({"topics": ["a/#/b"]}, "topics = 'a/#/b' is invalid"),
    ({"topics": ["$share/g/a"]}, "use share_group"),
    ({"payload_format": "xml"}, "payload_format = 'xml' is invalid"),
    ({"max_in_flight": 70000}, "max_in_flight = 70000 is invalid"),
    ({"hots": "x"}, "unknown key(s) hots"),
    ({"password": "hunter2"}, "not in the config"),
    ({"password_env": "MH_TEST_SURELY_UNSET"}, "'MH_TEST_SURELY_UNSET', which is not set"),
    ({"ca_file": "/x"}, "ca_file is set but tls is false"),
    ({"reconnect_min_seconds": 5, "reconnect_max_seconds": 1}, "reconnect_max_seconds 1.0 is below"),
])
def test_bad_settings_name_the_key(settings: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        MqttConfig.from_mapping("n", settings)
    assert fragment in caught.value.message


def test_password_from_env_and_file_and_never_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MH_MQTT_PW", "s3cret")
    assert MqttConfig.from_mapping("n", {"username": "u", "password_env": "MH_MQTT_PW"}).password == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("filepw\n")
    config = MqttConfig.from_mapping("n", {"password_file": str(secret)})
    assert config.password == "filepw"
    assert "filepw" not in repr(config)


def test_entry_point_factory_builds_an_adapter() -> None:
    adapter = create_adapter("n", {"type": "mqtt", "port": 1884}, RecordingPort())
    assert isinstance(adapter, MqttAdapter)
    assert adapter.config.port == 1884
