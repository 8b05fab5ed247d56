"""End to end: the MultiSpeak v4.1 head-end simulator (MR_Server over loopback HTTP) -> the
multispeak adapter the real hub starts from a ``[sources.<name>] type = "multispeak"`` table
(polling, and the CB_Server callback endpoint it hosts) -> ingest, VEE and the store (SQLite and
PostgreSQL) -> gRPC ReadingService / AdminService over loopback.

Expected values come from the simulator's fleet model (``FleetData``), never from what the
adapter produced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from lxml import etree
from sqlalchemy import Engine, func, select

from gateway.config import HubConfig, load_config
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from simulators.multispeak.fleet import FleetData, meter_ids
from simulators.multispeak.server import Faults, HeadEndSimulator
from store import repository as repo
from store import schema as s
from tests.support.readings import all_interval_blocks
from tests.support.waiting import eventually as wait_until
from tests.support.waiting import timestamp

SOURCE = "ms-coop"
METERS = 3
STEP = 900
DATA = FleetData(STEP)
LAND_SECONDS = 30.0
MISSING_RATE = 0.05
MALFORMED_RATE = 0.3
NOT_A_READING = pb.QUALITY_FLAG_MISSING | pb.QUALITY_FLAG_ESTIMATED
HUB_ESTIMATE_METHODS = (pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED | pb.QUALITY_FLAG_ESTIMATE_LIKE_DAY
                        | pb.QUALITY_FLAG_ESTIMATE_ZERO_FILL | pb.QUALITY_FLAG_ESTIMATE_SCALED)


def _last_midnight() -> datetime:
    """A UTC midnight that has passed. The adapter started by the hub runs on the real clock,
    so the simulated data sits in the recent past (whole days, all of them due for VEE)."""
    return (datetime.now(UTC) - timedelta(minutes=1)).replace(hour=0, minute=0, second=0, microsecond=0)


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, seconds: float = LAND_SECONDS) -> None:
    await wait_until(probe, what, seconds)


@dataclass
class Running:
    hub: Hub
    sim: HeadEndSimulator
    channel: grpc.aio.Channel
    # The interval ends the hub must hold, (start, end], and when the registers were read.
    start: datetime
    end: datetime
    register_time: datetime

    @property
    def meters(self) -> tuple[str, ...]:
        return self.sim.meters

    def ends(self) -> list[datetime]:
        return DATA.ends(self.start, self.end)


Stored = dict[str, dict[datetime, tuple[int, int]]]  # meter -> interval end -> (value, quality)


async def stored_intervals(run: Running) -> tuple[Stored, list[pb.ReadingType], list[int]]:
    """The stored intervals in (start, end] through ListIntervalBlocks (all pages), the reading
    types of the blocks and the version of each channel-day."""
    request = rs.ListIntervalBlocksRequest(page_size=2, filter=rs.IntervalBlockFilter(
        meter_ids=list(run.meters), start_time=timestamp(run.start), end_time=timestamp(run.end)))
    values: Stored = {}
    types: list[pb.ReadingType] = []
    versions: list[int] = []
    for item in await all_interval_blocks(run.channel, request):
        block = item.block
        types.append(block.reading_type)
        versions.append(item.version)
        assert block.interval_seconds == STEP
        first = block.first_interval_end_time.ToDatetime(tzinfo=UTC)
        per = values.setdefault(block.meter_id, {})
        for i, value in enumerate(block.values):
            per[first + timedelta(seconds=i * STEP)] = (value, block.qualities[i])
    return values, types, versions


async def stored_registers(run: Running) -> list[pb.RegisterRead]:
    readings = rs_grpc.ReadingServiceStub(run.channel)
    reply = await readings.ListRegisterReads(rs.ListRegisterReadsRequest(
        meter_ids=list(run.meters), start_time=timestamp(run.start - timedelta(days=3)),
        end_time=timestamp(run.end + timedelta(days=3)), page_size=1000))
    return [r.read for r in reply.reads]


async def dead_letters(run: Running) -> list[adm.DeadLetter]:
    admin = adm_grpc.AdminServiceStub(run.channel)
    request = adm.ListDeadLettersRequest(head_end=SOURCE, page_size=5)
    out: list[adm.DeadLetter] = []
    while True:
        page = await admin.ListDeadLetters(request)
        out.extend(page.dead_letters)
        if not page.next_page_token:
            return out
        request.page_token = page.next_page_token


async def landed(run: Running, *, registers: bool = True) -> bool:
    values, _types, _versions = await stored_intervals(run)
    want = len(run.ends())
    if len(values) != METERS or any(len(v) != want for v in values.values()):
        return False
    return not registers or len(await stored_registers(run)) == METERS


def write_config(tmp_path: Path, sim: HeadEndSimulator, **source: object) -> HubConfig:
    """hub.toml with one multispeak source; the store is the ``engine`` fixture's (SQLite in
    tmp_path or a PostgreSQL schema of its own), handed to the hub."""
    settings: dict[str, object] = {
        "type": "multispeak", "url": sim.url, "meters": list(sim.meters), "user": "hub", "password": "secret",
        "interval_minutes": STEP // 60, "request_days": 1, "poll_interval_seconds": 0.05, "timeout_seconds": 5.0,
        "max_retries": 1, "retry_backoff_seconds": 0.01, **source}

    def toml(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return f'"{value}"'
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        return repr(value)

    lines = ["[grpc]", 'listen = "127.0.0.1:0"', "", f"[sources.{SOURCE}]"]
    lines += [f"{key} = {toml(value)}" for key, value in settings.items()]
    path = tmp_path / "hub.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path)


def register_meters(engine: Engine, meters: tuple[str, ...]) -> None:
    """Meters are known before the source's first poll (else its batches are rejected)."""
    with engine.begin() as conn:
        repo.upsert_meters(conn, [(m, adm.METER_STATUS_ACTIVE, 1, "residential") for m in meters], 0)


# -- polling ---------------------------------------------------------------------------------------


@pytest.fixture
async def polled(engine: Engine, tmp_path: Path) -> AsyncIterator[Running]:
    midnight = _last_midnight()
    start, end = midnight - timedelta(days=3), midnight - timedelta(days=1)
    async with HeadEndSimulator(meter_ids(METERS), user="hub", password="secret", clock=lambda: midnight,
                                faults=Faults(missing_interval_rate=MISSING_RATE)) as sim:
        config = write_config(tmp_path, sim, start=start.isoformat(), end=end.isoformat())
        register_meters(engine, sim.meters)
        async with Hub(config, engine=engine) as hub, grpc.aio.insecure_channel(hub.grpc_target) as channel:
            run = Running(hub, sim, channel, start, end, register_time=end)
            await eventually(lambda: landed(run), "every polled interval and register")
            yield run


def _missing(meter: str, end: datetime) -> bool:
    return DATA.chance(meter, end, "missing") < MISSING_RATE


async def test_polled_intervals_and_registers_land_with_exact_values_and_units(polled: Running) -> None:
    values, types, versions = await stored_intervals(polled)
    assert {(rt.commodity, rt.kind, rt.unit, rt.flow_direction, rt.accumulation, rt.power_of_ten_multiplier)
            for rt in types} == {(pb.COMMODITY_ELECTRICITY, pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR,
                                  pb.FLOW_DIRECTION_DELIVERED, pb.ACCUMULATION_DELTA, 0)}
    gaps = 0
    for meter in polled.meters:
        stored = values[meter]
        assert sorted(stored) == polled.ends()
        for end in polled.ends():
            value, quality = stored[end]
            if _missing(meter, end):
                # An empty value in the head-end's delimited string: no reading. The hub keeps
                # it missing, or VEE estimates it and says so.
                gaps += 1
                assert bool(quality & pb.QUALITY_FLAG_MISSING) != bool(quality & pb.QUALITY_FLAG_ESTIMATED)
                assert not quality & pb.QUALITY_FLAG_ESTIMATED or quality & HUB_ESTIMATE_METHODS
            else:
                assert value == DATA.interval_wh(meter, end), (meter, end)
                assert not quality & NOT_A_READING, (meter, end)
    assert gaps, "the fault injection must leave some intervals empty"
    # One poll per meter-day wrote each channel-day once.
    assert versions and set(versions) == {1}

    registers = await stored_registers(polled)
    assert {r.meter_id: (r.value, r.read_time.ToDatetime(tzinfo=UTC)) for r in registers} == {
        m: (DATA.register_wh(m, polled.register_time), polled.register_time) for m in polled.meters}
    assert len(registers) == METERS
    for read in registers:
        rt = read.reading_type
        assert (rt.unit, rt.power_of_ten_multiplier, rt.accumulation, rt.flow_direction) == (
            pb.UNIT_WATT_HOUR, 0, pb.ACCUMULATION_CUMULATIVE, pb.FLOW_DIRECTION_DELIVERED)
    assert not await dead_letters(polled)


async def test_a_second_poll_cycle_stores_nothing_twice(polled: Running, engine: Engine) -> None:
    before = await stored_intervals(polled)
    registers_before = await stored_registers(polled)
    admin = adm_grpc.AdminServiceStub(polled.channel)
    (source,) = (await admin.ListSources(adm.ListSourcesRequest())).sources
    assert (source.head_end, source.adapter_type) == (SOURCE, "multispeak")
    readings = sum(not _missing(m, e) for m in polled.meters for e in polled.ends())
    assert source.reads_committed == readings + METERS

    # After everything landed each poll cycle asks one GetReadingsByMeterID per meter (the load
    # profile is read up to `end`). A cycle ends only after its batches are committed, so once
    # a request of the third cycle after this point arrived, the second is done.
    requests = polled.sim.stats.requests

    async def two_more_cycles() -> bool:
        return polled.sim.stats.requests >= requests + 2 * METERS + 1

    await eventually(two_more_cycles, "two more poll cycles")

    assert await stored_intervals(polled) == before
    assert await stored_registers(polled) == registers_before
    (source,) = (await admin.ListSources(adm.ListSourcesRequest())).sources
    assert source.reads_committed == readings + METERS
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.interval_block_history)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(s.register_reads)).scalar_one() == METERS


# -- asynchronous reads: InitiateMeterReadingsByMeterID and the callback endpoint the hub hosts -----


async def test_initiated_reads_arrive_on_the_hub_callback_endpoint(engine: Engine, tmp_path: Path) -> None:
    midnight = _last_midnight()
    sim_now = midnight - timedelta(days=1) + timedelta(hours=6)
    # The head-end serves no load profile to polls (its data starts at its own "now"), so
    # whatever lands came through the callbacks: registers at now and the last whole day.
    async with HeadEndSimulator(meter_ids(METERS), user="hub", password="secret", clock=lambda: sim_now,
                                start=sim_now, callback_user="headend", callback_password="cb-secret") as sim:
        config = write_config(tmp_path, sim, start=(sim_now - timedelta(days=3)).isoformat(),
                              poll_registers=False, poll_interval_seconds=3600.0,
                              callback_listen="127.0.0.1:0", callback_user="headend",
                              callback_password="cb-secret", initiate_interval_seconds=3600.0,
                              transaction_expiry_seconds=600.0)
        register_meters(engine, sim.meters)
        async with Hub(config, engine=engine) as hub, grpc.aio.insecure_channel(hub.grpc_target) as channel:
            day = FleetData.day_start(sim_now)
            run = Running(hub, sim, channel, day - timedelta(days=1), day, register_time=sim_now)
            await eventually(lambda: landed(run), "the readings of both callbacks")
            values, types, _versions = await stored_intervals(run)
            registers = await stored_registers(run)
            dead = await dead_letters(run)
            (source,) = (await adm_grpc.AdminServiceStub(channel).ListSources(adm.ListSourcesRequest())).sources

    assert sim.stats.callbacks_sent == 2  # ReadingChangedNotification and IntervalDataNotification
    assert not sim.stats.callback_errors  # the CB_Server the hub hosts answered both with HTTP 200
    for meter in run.meters:
        assert values[meter] == {e: (DATA.interval_wh(meter, e), values[meter][e][1]) for e in run.ends()}
        assert not any(q & NOT_A_READING for _v, q in values[meter].values())
    assert {(rt.unit, rt.power_of_ten_multiplier, rt.accumulation) for rt in types} == {
        (pb.UNIT_WATT_HOUR, 0, pb.ACCUMULATION_DELTA)}
    assert {r.meter_id: (r.value, r.read_time.ToDatetime(tzinfo=UTC)) for r in registers} == {
        m: (DATA.register_wh(m, sim_now), sim_now) for m in run.meters}
    assert not dead
    # Callback batches are stamped with the source like polled ones.
    assert (source.head_end, source.adapter_type) == (SOURCE, "multispeak")
    assert source.reads_committed == METERS * (len(run.ends()) + 1)


# -- a malformed response -------------------------------------------------------------------------


async def test_malformed_response_is_dead_lettered_and_good_data_still_lands(engine: Engine,
                                                                             tmp_path: Path) -> None:
    midnight = _last_midnight()
    start, end = midnight - timedelta(days=3), midnight - timedelta(days=1)
    # A share of the responses is cut in half. The draws come from a seeded generator, and the
    # first one (0.134 for seed 1) is below the rate, so the first load-profile reply is broken.
    async with HeadEndSimulator(meter_ids(METERS), user="hub", password="secret", clock=lambda: midnight,
                                faults=Faults(malformed_rate=MALFORMED_RATE), seed=1) as sim:
        config = write_config(tmp_path, sim, start=start.isoformat(), end=end.isoformat(), poll_registers=False)
        register_meters(engine, sim.meters)
        async with Hub(config, engine=engine) as hub, grpc.aio.insecure_channel(hub.grpc_target) as channel:
            run = Running(hub, sim, channel, start, end, register_time=end)
            # A broken reply fails that meter's poll; the next cycle reads the window again.
            await eventually(lambda: landed(run, registers=False), "every interval despite the broken replies")
            values, _types, versions = await stored_intervals(run)
            dead = await dead_letters(run)
            (source,) = (await adm_grpc.AdminServiceStub(channel).ListSources(adm.ListSourcesRequest())).sources

    for meter in run.meters:
        assert values[meter] == {e: (DATA.interval_wh(meter, e), values[meter][e][1]) for e in run.ends()}
        assert not any(q & NOT_A_READING for _v, q in values[meter].values())
    assert set(versions) == {1}
    # Every broken reply is in the store, raw, with its reason; none was dropped silently.
    assert sim.stats.faults_sent >= 1
    assert len(dead) == sim.stats.faults_sent == source.dead_letters
    for letter in dead:
        assert (letter.head_end, letter.adapter_type) == (SOURCE, "multispeak")
        assert letter.reason_code == "MALFORMED_XML"
        assert letter.content_type == "text/xml"
        assert letter.payload.startswith(b"<") and b"GetLPReadingsByMeterIDIntervalData" in letter.payload
        with pytest.raises(etree.XMLSyntaxError):
            etree.fromstring(letter.payload)
    assert source.reads_committed == METERS * len(run.ends())
