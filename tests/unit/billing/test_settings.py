"""The [billing] table of hub.toml: tariffs from files and inline, with errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.billing.config import BUNDLED_TARIFFS, parse_billing_settings
from gateway.errors import ConfigError

FLAT = 'name = "flat"\ntime_zone = "America/Denver"\nperiods = ["all"]\ndefault_period = "all"\n'


def test_bundled_tariffs_are_always_there_and_defaults_hold() -> None:
    settings = parse_billing_settings({})
    assert set(BUNDLED_TARIFFS) <= set(settings.tariffs)
    assert settings.estimates_billable is True
    assert settings.cycle_workers >= 1


def test_tariff_files_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "tariffs").mkdir()
    (tmp_path / "tariffs" / "flat.toml").write_text(FLAT, encoding="utf-8")
    settings = parse_billing_settings({"tariff_files": ["tariffs/flat.toml"], "cycle_workers": 0}, tmp_path)
    assert settings.tariffs["flat"].periods == ("all",)
    assert settings.cycle_workers == 0


@pytest.mark.parametrize(("table", "key", "words"), [
    ({"tarifs": []}, "billing.tarifs", "unknown key"),
    ({"cycle_workers": -1}, "billing.cycle_workers", "0..64"),
    ({"cycle_workers": True}, "billing.cycle_workers", "0..64"),
    ({"estimates_billable": "yes"}, "billing.estimates_billable", "true or false"),
    ({"tariff_files": ["missing.toml"]}, "billing.tariff_files", "cannot read"),
    ({"tariffs": {"bad": {"time_zone": "Mars/Base", "periods": ["a"], "default_period": "a"}}},
     "billing.tariffs.bad.time_zone", "unknown IANA time zone"),
])
def test_mistakes_name_the_key(tmp_path: Path, table: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as failure:
        parse_billing_settings(table, tmp_path)
    assert failure.value.metadata["key"] == key
    assert words in failure.value.message
