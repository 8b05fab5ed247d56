"""The DLMS adapter reading the DLMS simulator over real TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from adapters.dlms import DlmsAdapter, create_adapter, parse_config
from adapters.dlms.codec import Mechanism
from adapters.dlms.config import DlmsConfig
from adapters.dlms.security import Keys
from meterhub.v1 import model_pb2 as pb
from simulators.dlms.model import Faults
from simulators.dlms.server import MeterFleet, SimulatorConfig
from tests.support.net import free_port
from tests.support.recording_port import RecordingPort

NOW = datetime(2026, 3, 3, 0, 0, 7, tzinfo=UTC)
HISTORY = datetime(2026, 3, 1, tzinfo=UTC)
KEYS = Keys(bytes(range(16)), bytes(range(0xD0, 0xE0)))


def frozen() -> datetime:
    return NOW


def adapter_config(fleet: MeterFleet, **extra: object) -> DlmsConfig:
    raw: dict[str, object] = {
        "type": "dlms", "poll_seconds": 0, "start": HISTORY.isoformat(), "retries": 1,
        "backoff_initial_seconds": 0.0, "response_timeout_seconds": 5.0,
        "meters": [{"meter_id": e.meter_id, "host": e.host, "port": e.port} for e in fleet.endpoints]}
    raw.update(extra)
    return parse_config(raw)


def by_channel(port: RecordingPort, meter: str) -> dict[str, dict[int, tuple[int, int]]]:
    """{OBIS: {interval end: (value, quality)}} of everything submitted for a meter."""
    out: dict[str, dict[int, tuple[int, int]]] = {}
    for batch in port.batches:
        for block in batch.interval_blocks:
            if block.meter_id != meter:
                continue
            first = int(block.first_interval_end_time.seconds)
            channel = out.setdefault(block.reading_type.device_channel, {})
            for i, value in enumerate(block.values):
                quality = block.qualities[i] if block.qualities else 0
                channel[first + i * block.interval_seconds] = (value, quality)
    return out


async def test_reads_equal_the_model() -> None:
    async with MeterFleet(SimulatorConfig(meters=3, history_start=HISTORY), clock=frozen) as fleet:
        port = RecordingPort()
        report = await DlmsAdapter("north", adapter_config(fleet), port, clock=frozen).poll_once()
    assert (report.meters_ok, report.meters_failed) == (3, 0)
    assert report.intervals == 3 * 2 * 96 * 2
    for endpoint in fleet.endpoints:
        meter = endpoint.meter_id
        rows = fleet.model.rows(meter, int(HISTORY.timestamp()) + 900, int(NOW.timestamp()))
        channels = by_channel(port, meter)
        assert channels["1.0.1.29.0.255"] == {int(t): (int(v), 0) for t, v in zip(rows.ends, rows.import_wh,
                                                                                      strict=True)}
        assert channels["1.0.2.29.0.255"] == {int(t): (int(v), 0) for t, v in zip(rows.ends, rows.export_wh,
                                                                                      strict=True)}
        imported, exported = fleet.model.registers(meter, NOW)
        reads = {r.reading_type.device_channel: r for b in port.batches for r in b.register_reads
                 if r.meter_id == meter}
        assert reads["1.0.1.8.0.255"].value == imported
        assert reads["1.0.2.8.0.255"].value == exported
        assert reads["1.0.1.8.0.255"].reading_type.accumulation == pb.ACCUMULATION_CUMULATIVE
    block = port.batches[0].interval_blocks[0]
    assert block.reading_type.unit == pb.UNIT_WATT_HOUR
    assert block.reading_type.power_of_ten_multiplier == 0
    assert block.reading_type.accumulation == pb.ACCUMULATION_DELTA
    assert block.reading_type.flow_direction == pb.FLOW_DIRECTION_DELIVERED
    assert len(block.values) == 96
    assert block.first_interval_end_time.ToDatetime(tzinfo=UTC) == HISTORY + timedelta(minutes=15)
    assert all(b.source.adapter_type == "dlms" and b.source.head_end == "north" for b in port.batches)


async def test_faults_become_quality_flags_and_events() -> None:
    faults = Faults(gap_rate=0.05, power_fail_rate=0.05, spike_rate=0.02)
    async with MeterFleet(SimulatorConfig(meters=2, history_start=HISTORY, faults=faults), clock=frozen) as fleet:
        port = RecordingPort()
        await DlmsAdapter("north", adapter_config(fleet), port, clock=frozen).poll_once()
    meter = fleet.endpoints[0].meter_id
    rows = fleet.model.rows(meter, int(HISTORY.timestamp()) + 900, int(NOW.timestamp()))
    served = {int(t): int(v) for t, v in zip(rows.ends, rows.import_wh, strict=True)}
    failed = {int(t) for t, s in zip(rows.ends, rows.status, strict=True) if s & 0x80}
    channel = by_channel(port, meter)["1.0.1.29.0.255"]
    assert failed
    gaps = 0
    for end, (value, quality) in channel.items():
        if end in served:
            assert value == served[end]  # spikes are passed through as the meter sent them
            assert quality == (pb.QUALITY_FLAG_POWER_FAIL if end in failed else 0)
        else:
            gaps += 1
            assert (value, quality) == (0, pb.QUALITY_FLAG_MISSING)
    assert gaps > 0
    events = [e for b in port.batches for e in b.meter_events if e.meter_id == meter]
    assert {int(e.event_time.seconds) for e in events if e.type == pb.METER_EVENT_TYPE_POWER_FAIL} == failed


async def test_clock_drift_flags_and_event() -> None:
    faults = Faults(drift_rate=1.0, drift_seconds=300)
    async with MeterFleet(SimulatorConfig(meters=1, history_start=HISTORY, faults=faults), clock=frozen) as fleet:
        port = RecordingPort()
        await DlmsAdapter("north", adapter_config(fleet), port, clock=frozen).poll_once()
    events = [e for b in port.batches for e in b.meter_events]
    assert [e.type for e in events] == [pb.METER_EVENT_TYPE_CLOCK_DRIFT]
    assert events[0].details["drift_seconds"] == "300"
    qualities = {q for b in port.batches for blk in b.interval_blocks for q in blk.qualities}
    assert qualities == {pb.QUALITY_FLAG_CLOCK_SET}


async def test_reads_from_the_watermark_onward() -> None:
    async with MeterFleet(SimulatorConfig(meters=1, history_start=HISTORY), clock=frozen) as fleet:
        port = RecordingPort()
        meter = fleet.endpoints[0].meter_id
        port.watermarks[(meter, 900)] = datetime(2026, 3, 2, 12, tzinfo=UTC)
        await DlmsAdapter("north", adapter_config(fleet), port, clock=frozen).poll_once()
    ends = sorted(by_channel(port, meter)["1.0.1.29.0.255"])
    assert ends[0] == int(datetime(2026, 3, 2, 12, 15, tzinfo=UTC).timestamp())
    assert ends[-1] == int(datetime(2026, 3, 3, tzinfo=UTC).timestamp())
    assert len(ends) == 48


async def test_range_is_read_in_chunks_with_small_pdus() -> None:
    async with MeterFleet(SimulatorConfig(meters=1, history_start=HISTORY, max_pdu_size=256),
                          clock=frozen) as fleet:
        port = RecordingPort()
        config = adapter_config(fleet, max_pdu_size=128, max_days_per_read=1)
        await DlmsAdapter("north", config, port, clock=frozen).poll_once()
    assert len(port.batches) == 2  # (registers + intervals ending 00:15 on day 1 to 00:00 on day 2), day 2
    assert len(by_channel(port, fleet.endpoints[0].meter_id)["1.0.1.29.0.255"]) == 192


@pytest.mark.parametrize("security", ["lls", "hls-gmac"])
async def test_authenticated_associations(security: str) -> None:
    sim = SimulatorConfig(meters=2, history_start=HISTORY, mechanism=Mechanism.LLS if security == "lls"
                          else Mechanism.HLS_GMAC, password=b"secret12", keys=KEYS if security != "lls" else None,
                          max_pdu_size=512)
    extra: dict[str, object] = {"authentication": security, "max_pdu_size": 300}
    if security == "lls":
        extra["password"] = "secret12"
    else:
        extra |= {"encryption_key": KEYS.encryption.hex(), "authentication_key": KEYS.authentication.hex()}
    async with MeterFleet(sim, clock=frozen) as fleet:
        port = RecordingPort()
        report = await DlmsAdapter("north", adapter_config(fleet, **extra), port, clock=frozen).poll_once()
    assert report.meters_ok == 2
    meter = fleet.endpoints[1].meter_id
    rows = fleet.model.rows(meter, int(HISTORY.timestamp()) + 900, int(NOW.timestamp()))
    assert [v for v, _ in by_channel(port, meter)["1.0.1.29.0.255"].values()] == rows.import_wh.tolist()


async def test_wrong_password_fails_without_retrying() -> None:
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    sim = SimulatorConfig(meters=1, history_start=HISTORY, mechanism=Mechanism.LLS, password=b"secret12")
    async with MeterFleet(sim, clock=frozen) as fleet:
        port = RecordingPort()
        config = adapter_config(fleet, authentication="lls", password="wrong", retries=3)
        report = await DlmsAdapter("north", config, port, clock=frozen, sleep=record_sleep).poll_once()
    assert report.failures == {fleet.endpoints[0].meter_id: "DLMS_ASSOCIATION_REJECTED"}
    assert sleeps == []
    assert port.batches == []


async def _half_frame_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(bytes.fromhex("0001000100100040" "6129A109"))  # claims 64 bytes, sends 4
    await writer.drain()
    writer.close()


async def _garbage_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(4096)
    writer.write(bytes.fromhex("00010001001000037700FF"))
    await writer.drain()
    await reader.read(4096)
    writer.close()


@pytest.mark.parametrize(("handler", "reason"), [(_half_frame_server, "DLMS_PEER_CLOSED"),
                                                 (_garbage_server, "DLMS_UNKNOWN_TAG")])
async def test_broken_peers_end_in_errors_after_backoff(handler: object, reason: str) -> None:
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    port_number = free_port()
    server = await asyncio.start_server(handler, "127.0.0.1", port_number)  # type: ignore[arg-type]
    async with server:
        config = parse_config({"type": "dlms", "meters": [{"meter_id": "M1", "port": port_number}], "retries": 3,
                               "backoff_initial_seconds": 0.5, "backoff_max_seconds": 1.5, "poll_seconds": 0})
        port = RecordingPort()
        report = await asyncio.wait_for(
            DlmsAdapter("north", config, port, clock=frozen, sleep=record_sleep).poll_once(), 10)
    assert report.failures == {"M1": reason}
    assert sleeps == [0.5, 1.0, 1.5]


async def test_connection_refused_is_a_transport_error() -> None:
    config = parse_config({"type": "dlms", "meters": [{"meter_id": "M1", "port": free_port()}], "retries": 0,
                           "poll_seconds": 0})
    report = await DlmsAdapter("north", config, RecordingPort(), clock=frozen).poll_once()
    assert report.failures == {"M1": "DLMS_TRANSPORT_ERROR"}


async def test_many_meters_with_bounded_concurrency_via_entry_point_factory() -> None:
    sim = SimulatorConfig(meters=40, history_start=datetime(2026, 3, 2, tzinfo=UTC))
    async with MeterFleet(sim, clock=frozen) as fleet:
        port = RecordingPort()
        adapter = create_adapter("north", {
            "type": "dlms", "poll_seconds": 0, "concurrency": 5, "start": "2026-03-02T00:00:00+00:00",
            "meters": [{"meter_id": e.meter_id, "port": e.port} for e in fleet.endpoints]}, port)
        adapter._clock = frozen  # the simulator's frozen clock
        await adapter.run()
    assert {b.interval_blocks[0].meter_id for b in port.batches} == {e.meter_id for e in fleet.endpoints}
    total = sum(len(blk.values) for b in port.batches for blk in b.interval_blocks)
    assert total == 40 * 96 * 2
    assert np.all([m.sessions_served == 1 for m in fleet.meters])
