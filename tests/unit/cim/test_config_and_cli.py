"""Config validation, envelope round trips and the simulator CLI."""

from __future__ import annotations

import argparse
import io
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.cim import parse_config, parse_outbound_config
from adapters.cim.message import Binding, Header, MessageKind, Reply, ReplyError, RequestParams, build_message, wrap
from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.reader import read_message
from gateway.errors import ConfigError
from simulators.cim.cli import COMMAND


@pytest.mark.parametrize(("table", "key", "text"), [
    ({}, "listen", "needs at least one of listen, head_end_url or drop_dir"),
    ({"listen": "8089"}, "listen", "must be host:port"),
    ({"listen": "127.0.0.1:1", "bogus": 1}, "bogus", "unknown key cim.bogus"),
    ({"listen": "127.0.0.1:1", "decimals": 12}, "decimals", "must be 0..9"),
    ({"listen": "127.0.0.1:1", "validate_schema": "yes"}, "validate_schema", "must be bool"),
    ({"listen": "127.0.0.1:1", "max_message_bytes": True}, "max_message_bytes", "must be int"),
    ({"head_end_url": "ftp://x"}, "head_end_url", "must be an http:// or https:// URL"),
    ({"head_end_url": "http://x", "head_end_binding": "rest"}, "head_end_binding", "must be one of xml"),
    ({"head_end_url": "http://x", "poll_from": "2026-11-01T00:00:00"}, "poll_from", "must carry a UTC offset"),
    ({"head_end_url": "http://x", "poll_reading_type": "1.2.3"}, "poll_reading_type", "is not a ReadingType"),
    ({"listen": "127.0.0.1:1", "auth_token_env": "CIM_UNSET_VARIABLE"}, "auth_token_env", "is not set"),
    ({"listen": "127.0.0.1:1", "tls_cert_file": "a.pem"}, "tls_cert_file", "must be given together"),
])
def test_config_errors_name_the_key(table: dict[str, object], key: str, text: str) -> None:
    os.environ.pop("CIM_UNSET_VARIABLE", None)
    with pytest.raises(ConfigError, match=text) as info:
        parse_config({"type": "cim", **table})
    assert info.value.metadata["key"] == key


def test_config_defaults_and_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("abc\n")
    config = parse_config({"type": "cim", "drop_dir": str(tmp_path), "auth_token_file": str(secret)})
    assert (config.auth_token, config.decimals, config.max_message_bytes, config.path) == (
        "abc", 3, 16 * 1024 * 1024, "/cim/MeterReadings")
    with pytest.raises(ConfigError, match=r"cim\.url is required"):
        parse_outbound_config({})


@pytest.mark.parametrize("binding", list(Binding))
@pytest.mark.parametrize("typed", [False, True])
def test_envelope_round_trips(binding: Binding, typed: bool) -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    header = Header(verb="get", timestamp=now, source="hub", async_reply_flag=False, reply_address="http://r",
                    message_id="m-1", correlation_id="c-1", comment="hello")
    request = RequestParams(now, now, ("A", "B"), (("ReadingType", "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0"),))
    data = wrap(build_message(MessageKind.REQUEST, header, request=request, typed=typed), binding)
    (envelope,) = read_message(io.BytesIO(data), MeterReadingMapper(MappingOptions()))
    assert envelope.kind is MessageKind.REQUEST  # type: ignore[union-attr]
    assert envelope.binding is binding  # type: ignore[union-attr]
    assert envelope.header == header  # type: ignore[union-attr]
    assert envelope.request == request  # type: ignore[union-attr]
    reply = Reply("PARTIAL", (ReplyError("3.1", "FATAL", "BAD_READING_TYPE", "details"),), ("id-1",))
    data = wrap(build_message(MessageKind.RESPONSE, Header(verb="reply"), reply=reply, typed=typed), binding)
    (envelope,) = read_message(io.BytesIO(data), MeterReadingMapper(MappingOptions()))
    assert envelope.reply == reply  # type: ignore[union-attr]


async def test_cli_files_mode_writes_event_files(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    COMMAND.add_arguments(parser)
    args = parser.parse_args(["files", "--meters", "3", "--start", "2026-11-01T00:00:00Z", "--days", "2",
                              "--dir", str(tmp_path), "--fault", "missing-interval=0.5"])
    assert await COMMAND.run(args) == 0
    names = sorted(os.listdir(tmp_path))
    assert names == ["meterreadings-20261101-0001.xml", "meterreadings-20261102-0001.xml"]


async def test_cli_refuses_unknown_fault() -> None:
    parser = argparse.ArgumentParser()
    COMMAND.add_arguments(parser)
    assert await COMMAND.run(parser.parse_args(["files", "--fault", "gremlins"])) == 2
