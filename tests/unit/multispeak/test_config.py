from __future__ import annotations

import pytest

from adapters.multispeak import create_adapter, parse_config
from gateway.errors import ConfigError
from tests.support.recording_port import RecordingPort

BASE = {"type": "multispeak", "url": "https://he.example/MR_Server.asmx", "meters": ["M1"]}


def test_defaults() -> None:
    cfg = parse_config(BASE)
    assert (cfg.interval_minutes, cfg.lp_format, cfg.max_concurrency, cfg.tls_verify) == (15, "intervalData", 4, True)
    assert "password" not in repr(cfg) or "secret" not in repr(parse_config({**BASE, "password": "secret"}))


@pytest.mark.parametrize(("extra", "key"), [
    ({"url": "ftp://x"}, "url"), ({"meters": []}, "meters"), ({"interval_minutes": 7}, "interval_minutes"),
    ({"lp_format": "csv"}, "lp_format"), ({"bogus": 1}, "bogus"), ({"start": "2026-03-01"}, "start"),
    ({"initiate_interval_seconds": 60.0}, "callback_listen"), ({"password": "a", "password_env": "B"}, "password_env"),
    ({"password_env": "MULTISPEAK_TEST_UNSET_VARIABLE"}, "password_env"), ({"timeout_seconds": "3"}, "timeout_seconds"),
    ({"callback_listen": "nohost"}, "callback_listen"), ({"tls_cert_file": "c.pem"}, "tls_key_file"),
])
def test_errors_name_the_key(extra: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, **extra})
    assert info.value.metadata["key"] == key


def test_password_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("MS_PW", "from-env")
    assert parse_config({**BASE, "password_env": "MS_PW"}).password == "from-env"
    from pathlib import Path
    secret = Path(str(tmp_path)) / "pw"
    secret.write_text("from-file\n")
    assert parse_config({**BASE, "callback_password_file": str(secret)}).callback_password == "from-file"


def test_entry_point_factory() -> None:
    adapter = create_adapter("he", BASE, RecordingPort())
    assert adapter.name == "he" and adapter.config.meters == ("M1",)
