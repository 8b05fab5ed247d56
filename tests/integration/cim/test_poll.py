"""get requests from the adapter to the simulated head-end over loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.cim import create_adapter
from adapters.cim.adapter import CimAdapter
from adapters.cim.errors import ReplyFailed
from adapters.cim.message import Binding
from simulators.cim.faults import FaultPlan
from simulators.cim.fleet import Fleet
from simulators.cim.headend import GET_PATH, HeadEnd
from tests.integration.cim.conftest import START, stored_intervals
from tests.support.recording_port import RecordingPort


def poller_adapter(url: str, port: RecordingPort, fleet: Fleet, **extra: object) -> CimAdapter:

    return create_adapter("he-1", {"type": "cim", "head_end_url": url, "poll_from": fleet.start.isoformat(),
                                   **extra}, port)


@pytest.mark.parametrize("binding", list(Binding))
async def test_poll_gets_the_whole_fleet_in_day_windows(binding: Binding, port: RecordingPort) -> None:
    fleet = Fleet(10, START, 2)
    head_end = HeadEnd(fleet)
    async with head_end.server() as server:
        adapter = poller_adapter(f"http://127.0.0.1:{server.port}{GET_PATH}", port, fleet,
                                 head_end_binding=binding.value)
        assert adapter.poller is not None
        outcomes = await adapter.poller.poll_once()
        await adapter.poller.close()
    assert all(o.result == "OK" for o in outcomes)
    assert head_end.requests_served == len(outcomes) >= 2
    assert stored_intervals(port) == fleet.meters * fleet.intervals_per_meter
    assert port.interval_values("CIM-000004") == fleet.expected("CIM-000004")


async def test_poll_resumes_from_the_watermark_of_listed_meters(port: RecordingPort, fleet: Fleet) -> None:
    head_end = HeadEnd(fleet)
    resume = fleet.start + timedelta(hours=20)
    for meter in ("CIM-000001", "CIM-000002"):
        port.watermarks[(meter, 900)] = resume
    async with head_end.server() as server:
        adapter = poller_adapter(f"http://127.0.0.1:{server.port}{GET_PATH}", port, fleet,
                                 poll_meters=["CIM-000001", "CIM-000002"])
        assert adapter.poller is not None
        await adapter.poller.poll_once()
        await adapter.poller.close()
    values = port.interval_values("CIM-000001")
    assert min(values) == resume + timedelta(minutes=15)
    assert len(values) == 4 * 4  # the last four hours of the day
    assert port.interval_values("CIM-000003") == {}


async def test_missing_intervals_stay_gaps(port: RecordingPort, fleet: Fleet) -> None:
    faults = FaultPlan({"missing-interval": 0.05}, seed=3)
    head_end = HeadEnd(fleet, faults=faults)
    async with head_end.server() as server:
        adapter = poller_adapter(f"http://127.0.0.1:{server.port}{GET_PATH}", port, fleet)
        assert adapter.poller is not None
        await adapter.poller.poll_once()
        await adapter.poller.close()
    assert faults.log.dropped_intervals > 0
    assert stored_intervals(port) == fleet.meters * fleet.intervals_per_meter - faults.log.dropped_intervals
    for meter in fleet.meter_ids:
        got, expected = port.interval_values(meter), fleet.expected(meter)
        assert all(expected[end] == value for end, value in got.items())
    assert not any(q & 1 for b in port.batches for block in b.interval_blocks for q in block.qualities)


async def test_failed_reply_raises_with_the_head_ends_codes(port: RecordingPort, fleet: Fleet) -> None:
    async with HeadEnd(fleet).server() as server:
        adapter = poller_adapter(f"http://127.0.0.1:{server.port}{GET_PATH}", port, fleet, poll_meters=["NOPE-1"])
        assert adapter.poller is not None
        with pytest.raises(ReplyFailed, match="UNKNOWN_METER") as info:
            await adapter.poller.poll_once()
        await adapter.poller.close()
    assert info.value.codes == ("3.9",)
    assert port.batches == []


async def test_malformed_get_reply_is_dead_lettered(port: RecordingPort, fleet: Fleet) -> None:
    async with HeadEnd(fleet, faults=FaultPlan({"malformed": 1.0})).server() as server:
        adapter = poller_adapter(f"http://127.0.0.1:{server.port}{GET_PATH}", port, fleet)
        assert adapter.poller is not None
        with pytest.raises(Exception, match="malformed XML") as info:
            await adapter.poller.poll_once()
        await adapter.poller.close()
    assert type(info.value).__name__ == "MalformedXml"
    assert [d.reason_code for d in port.dead_letters] == ["XML_MALFORMED"]
    assert port.dead_letters[0].reason.startswith("head-end he-1 get reply: malformed XML")
