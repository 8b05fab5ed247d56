"""The examples in README.md are real: the MQTT JSON payload decodes as documented."""

from __future__ import annotations

import re
from pathlib import Path

from adapters.mqtt.normalize import decode_json
from meterhub.v1 import model_pb2 as pb

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_mqtt_json_payload_decodes_to_the_documented_batch() -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"### MQTT payloads.*?```json\n(.*?)```", text, re.S)
    assert found is not None, "README lost its MQTT JSON example"
    batch = decode_json(found.group(1).encode())
    (block,) = batch.interval_blocks
    # "1.5" Wh at 10^-3 is 1500 counts; qualities by name.
    assert list(block.values) == [1234, 1500, 980]
    assert list(block.qualities) == [0, pb.QUALITY_FLAG_ESTIMATED, pb.QUALITY_FLAG_POWER_FAIL]
    assert batch.register_reads[0].value == 1234567
    assert batch.meter_events[0].meter_id == "MTR-000001"
