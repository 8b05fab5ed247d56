from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from gateway.secrets import resolve_secret


def test_defaults_are_embedded_sqlite_on_loopback() -> None:
    config = parse_config({})
    assert config.store.endswith("meterhub.sqlite")
    assert config.grpc.listen == "127.0.0.1:50051"
    assert config.sources == ()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"hub": {"stor": "x"}}, "unknown key hub.stor"),
        ({"hub": {"queue_size": "10"}}, "hub.queue_size must be int"),
        ({"hub": {"queue_size": True}}, "hub.queue_size must be int"),
        ({"hub": {"queue_size": 0}}, "between 1 and 100000"),
        ({"hub": {"log_level": "loud"}}, "hub.log_level must be one of"),
        ({"grpc": {"listen": "nohost"}}, "grpc.listen must be host:port"),
        ({"grpc": {"listen": "0.0.0.0:50051"}}, "allow_plaintext_remote"),
        ({"sources": {"north": {"host": "x"}}}, "sources.north.type is required"),
        ({"sourcez": {}}, "unknown key (top level).sourcez"),
    ],
)
def test_wrong_keys_and_values_are_named(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(document)
    assert message in err.value.message


def test_remote_plaintext_needs_explicit_consent() -> None:
    config = parse_config({"grpc": {"listen": "0.0.0.0:50051", "allow_plaintext_remote": True}})
    assert config.grpc.allow_plaintext_remote


def test_load_config_reports_toml_errors(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[hub\nstore = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_relative_store_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nstore = "data/hub.sqlite"\n')
    assert load_config(path).store == str(tmp_path / "data" / "hub.sqlite")


def test_secrets_come_from_env_or_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MH_TEST_SECRET", "s3cret")
    secret = resolve_secret({"env": "MH_TEST_SECRET"}, "x.password")
    assert secret.reveal() == "s3cret"
    assert "s3cret" not in repr(secret)
    (tmp_path / "pw").write_text("from-file\n")
    assert resolve_secret({"file": str(tmp_path / "pw")}, "x.password").reveal() == "from-file"
    with pytest.raises(ConfigError, match="not inline"):
        resolve_secret("plain", "x.password")
    with pytest.raises(ConfigError, match="is not set"):
        resolve_secret({"env": "MH_TEST_UNSET_VARIABLE"}, "x.password")


def test_json_logs_carry_context_fields(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from gateway.logs import configure_logging

    configure_logging("INFO", "json")
    try:
        logging.getLogger("meterhub.test").info("read %d intervals", 96, extra={"meter_id": "M1"})
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.getLogger().handlers.clear()
    entry = json.loads(line)
    assert entry["message"] == "read 96 intervals"
    assert entry["meter_id"] == "M1"
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("+00:00")
