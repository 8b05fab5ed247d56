"""Outbound created events: the hub's stored blocks, sent to a CIM endpoint
(here our own push endpoint, which must read back exactly what was sent)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.cim import EventSender, ReplyFailed, parse_outbound_config
from adapters.cim.errors import CimTransportError
from adapters.cim.message import Binding
from meterhub.v1 import model_pb2 as pb
from simulators.cim.fleet import Fleet
from tests.integration.cim.conftest import running, url_of
from tests.support.net import free_port
from tests.support.recording_port import RecordingPort


@pytest.mark.parametrize("binding", list(Binding))
async def test_stored_blocks_go_out_as_created_events_and_read_back_equal(
        binding: Binding, fleet: Fleet, port: RecordingPort, endpoint_config: dict[str, Any]) -> None:
    blocks = fleet.blocks(fleet.meter_ids[:5], fleet.start, fleet.end)
    blocks[0].qualities[:] = [0] * len(blocks[0].values)
    blocks[0].qualities[3] = pb.QUALITY_FLAG_ESTIMATED | pb.QUALITY_FLAG_EDITED
    blocks[0].qualities[4] = pb.QUALITY_FLAG_MISSING  # missing: left out of the event
    register = pb.RegisterRead(meter_id="CIM-000001", reading_type=pb.ReadingType(
        commodity=pb.COMMODITY_ELECTRICITY, kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY, unit=pb.UNIT_WATT_HOUR,
        flow_direction=pb.FLOW_DIRECTION_DELIVERED, accumulation=pb.ACCUMULATION_CUMULATIVE), value=123456789)
    register.read_time.FromDatetime(fleet.end)
    async with running(endpoint_config, port) as adapter:
        config = parse_outbound_config({"url": url_of(adapter), "binding": binding.value, "source_name": "hub-a"})
        async with EventSender(config) as sender:
            reply = await sender.send(blocks, [register])
    assert reply.result == "OK"
    expected = fleet.expected("CIM-000001")
    missing_end = sorted(expected)[4]
    del expected[missing_end]
    assert port.interval_values("CIM-000001") == expected
    assert port.interval_values("CIM-000005") == fleet.expected("CIM-000005")
    received = port.batches[0].interval_blocks
    assert [q for q in received[0].qualities if q] == [pb.QUALITY_FLAG_ESTIMATED | pb.QUALITY_FLAG_EDITED]
    (read,) = port.batches[0].register_reads
    assert (read.value, read.reading_type.power_of_ten_multiplier) == (123456789, 0)
    assert read.reading_type.cim_code == "0.0.0.9.1.1.12.0.0.0.0.0.0.0.0.3.72.0"


async def test_failed_reply_raises_reply_failed(port: RecordingPort, endpoint_config: dict[str, Any]) -> None:
    bad = pb.IntervalBlock(meter_id="", reading_type=pb.ReadingType(unit=pb.UNIT_WATT_HOUR,
                                                                    accumulation=pb.ACCUMULATION_DELTA),
                           interval_seconds=900, values=[1])
    bad.first_interval_end_time.seconds = 900
    async with running(endpoint_config, port) as adapter:
        sender = EventSender(parse_outbound_config({"url": url_of(adapter)}))
        with pytest.raises(ReplyFailed, match="MISSING_METER_ID") as info:
            await sender.send([bad])
        await sender.close()
    assert info.value.codes == ("3.7",)


async def test_unreachable_endpoint_exhausts_retries() -> None:
    config = parse_outbound_config({"url": f"http://127.0.0.1:{free_port()}/x", "retries": 1,
                                    "timeout_seconds": 2})
    async with EventSender(config) as sender:
        with pytest.raises(CimTransportError, match=r"POST http://127\.0\.0\.1"):
            await sender.send([])
