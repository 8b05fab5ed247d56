"""Adapter against the head-end simulator over real loopback HTTP."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from adapters.multispeak import (
    AuthenticationFault,
    ForbiddenXml,
    MalformedXml,
    MultiSpeakAdapter,
    SoapServerFault,
    parse_config,
)
from adapters.multispeak.soap import MessageHeader
from meterhub.v1 import model_pb2 as pb
from simulators.multispeak.fleet import FleetData, meter_ids
from simulators.multispeak.server import Faults, HeadEndSimulator
from tests.support.recording_port import RecordingPort

DAY = datetime(2026, 3, 1, tzinfo=UTC)
NOW = DAY + timedelta(days=2, hours=6)


def clock() -> datetime:
    return NOW


def adapter_for(sim: HeadEndSimulator, port: RecordingPort, **extra: object) -> MultiSpeakAdapter:
    raw: dict[str, object] = {"type": "multispeak", "url": sim.url, "meters": list(sim.meters), "user": "hub",
                              "password": "secret", "start": DAY.isoformat(), "retry_backoff_seconds": 0.01,
                              "max_retries": 1, "timeout_seconds": 5.0}
    raw.update(extra)
    return MultiSpeakAdapter("ms-test", parse_config(raw), port, clock=clock)


def simulator(meters: int = 3, **kwargs: object) -> HeadEndSimulator:
    return HeadEndSimulator(meter_ids(meters), user="hub", password="secret", clock=clock,
                            **kwargs)  # type: ignore[arg-type]


async def run_poll(adapter: MultiSpeakAdapter) -> int:
    async with adapter.session():
        return await adapter.poll_once()


def expected_values(meter_id: str, start: datetime, stop: datetime) -> dict[datetime, int]:
    data = FleetData(900)
    return {end: data.interval_wh(meter_id, end) for end in data.ends(start, stop)}


async def test_poll_reads_every_interval_exactly_with_paging() -> None:
    port = RecordingPort()
    async with simulator(blocks_per_page=1) as sim:
        adapter = adapter_for(sim, port)
        reads = await run_poll(adapter)
    for meter in sim.meters:
        got = port.interval_values(meter)
        assert got == expected_values(meter, DAY, NOW)
    assert reads == 3 * (2 * 96 + 24) + 3  # intervals plus one register read per meter
    block = port.batches[0].interval_blocks[0]
    assert block.reading_type.unit == pb.UNIT_WATT_HOUR
    assert block.reading_type.power_of_ten_multiplier == 0
    assert block.reading_type.flow_direction == pb.FLOW_DIRECTION_DELIVERED
    assert block.reading_type.accumulation == pb.ACCUMULATION_DELTA
    registers = [r for b in port.batches for r in b.register_reads]
    assert {r.meter_id: r.value for r in registers} == {m: FleetData(900).register_wh(m, NOW) for m in sim.meters}
    assert all(r.reading_type.accumulation == pb.ACCUMULATION_CUMULATIVE for r in registers)
    assert not port.dead_letters
    # Paging: one block per page means one request per meter-day (3 per meter) plus registers.
    assert sim.stats.requests == 3 * 3 + 3


async def test_second_poll_reads_nothing_new() -> None:
    port = RecordingPort()
    async with simulator(meters=1) as sim:
        adapter = adapter_for(sim, port, poll_registers=False)
        first = await run_poll(adapter)
        second = await run_poll(adapter)
    assert first == 2 * 96 + 24
    assert second == 0


async def test_formatted_block_format() -> None:
    port = RecordingPort()
    async with simulator(meters=2) as sim:
        adapter = adapter_for(sim, port, lp_format="formattedBlock", poll_registers=False)
        await run_poll(adapter)
    for meter in sim.meters:
        assert port.interval_values(meter) == expected_values(meter, DAY, NOW)


async def test_missing_intervals_are_flagged() -> None:
    port = RecordingPort()
    async with simulator(meters=2, faults=Faults(missing_interval_rate=0.1)) as sim:
        adapter = adapter_for(sim, port, poll_registers=False)
        await run_poll(adapter)
    data = FleetData(900)
    flagged = 0
    for batch in port.batches:
        for block in batch.interval_blocks:
            first = block.first_interval_end_time.ToDatetime(tzinfo=UTC)
            for i, value in enumerate(block.values):
                end = first + timedelta(seconds=900 * i)
                missing = data.chance(block.meter_id, end, "missing") < 0.1
                quality = block.qualities[i] if block.qualities else 0
                assert bool(quality & pb.QUALITY_FLAG_MISSING) == missing
                if missing:
                    flagged += 1
                    assert value == 0
                else:
                    assert value == data.interval_wh(block.meter_id, end)
    assert flagged > 0


async def test_bad_block_goes_to_dead_letter_and_the_rest_lands() -> None:
    port = RecordingPort()
    async with simulator(meters=4, faults=Faults(bad_block_rate=0.3), blocks_per_page=10) as sim:
        adapter = adapter_for(sim, port, poll_registers=False)
        await run_poll(adapter)
    data = FleetData(900)
    bad = {(m, lo) for m in sim.meters for lo, hi in data.day_windows(DAY, NOW)
           if data.chance(m, data.ends(lo, hi)[0], "bad") < 0.3}
    assert bad, "the seed must produce at least one bad block"
    assert len(port.dead_letters) == len(bad)
    assert {d.reason_code for d in port.dead_letters} == {"UNDECODABLE_READING"}
    assert all(b"1.2.3" in d.payload for d in port.dead_letters)
    for meter in sim.meters:
        got = port.interval_values(meter)
        want = {e: v for e, v in expected_values(meter, DAY, NOW).items()
                if (meter, FleetData.day_start(e - timedelta(seconds=1))) not in bad}
        assert got == want


async def test_wrong_password_is_an_authentication_fault() -> None:
    port = RecordingPort()
    async with simulator(meters=1) as sim:
        adapter = adapter_for(sim, port, password="wrong")
        async with adapter.session():
            with pytest.raises(AuthenticationFault) as info:
                await adapter.call("PingURL")
    assert info.value.reason == "SOAP_AUTHENTICATION_FAULT"
    assert info.value.faultcode == "Client.Authentication"


@pytest.mark.parametrize(("faults", "error", "reason"), [
    (Faults(soap_fault_rate=1.0), SoapServerFault, "SOAP_SERVER_FAULT"),
    (Faults(malformed_rate=1.0), MalformedXml, "MALFORMED_XML"),
    (Faults(xxe_rate=1.0), ForbiddenXml, "XML_FORBIDDEN"),
])
async def test_faults_become_clear_errors(faults: Faults, error: type[Exception], reason: str) -> None:
    port = RecordingPort()
    async with simulator(meters=1, faults=faults) as sim:
        adapter = adapter_for(sim, port)
        async with adapter.session():
            with pytest.raises(error) as info:
                await adapter.call("GetReadingsByMeterID", meterID={"_value_1": sim.meters[0]}, startDate=DAY,
                                   endDate=NOW)
    assert info.value.reason == reason  # type: ignore[attr-defined]
    if reason != "SOAP_SERVER_FAULT":
        assert [d.reason_code for d in port.dead_letters] == [reason]
    else:
        assert sim.stats.faults_sent == 2  # retried once (max_retries=1), then raised


async def test_slow_head_end_times_out_then_recovers() -> None:
    port = RecordingPort()
    async with simulator(meters=1, faults=Faults(slow_rate=1.0, slow_seconds=0.5)) as sim:
        adapter = adapter_for(sim, port, timeout_seconds=0.1, max_retries=0)
        async with adapter.session():
            from adapters.multispeak import MultiSpeakTimeout
            with pytest.raises(MultiSpeakTimeout):
                await adapter.call("PingURL")


class _NegativeRemaining(HeadEndSimulator):
    """Answers every page with ObjectsRemaining="-1" and a LastSent cursor."""

    def _page(self, meter_id: str, items: list[object], last_received: str | None) -> tuple[list[object], MessageHeader]:
        page, header = super()._page(meter_id, items, last_received)  # type: ignore[arg-type]
        return page, dataclasses.replace(header, objects_remaining=-1)


async def test_a_negative_objects_remaining_ends_paging() -> None:
    port = RecordingPort()
    async with _NegativeRemaining(meter_ids(1), user="hub", password="secret", clock=clock) as sim:
        adapter = adapter_for(sim, port, poll_registers=False, request_days=3)
        reads = await run_poll(adapter)
    # One request, one page: "-1 objects remaining" is not "more to come".
    assert sim.stats.requests == 1
    assert reads == len(port.interval_values(sim.meters[0])) > 0
