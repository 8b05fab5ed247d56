"""End to end: the C12.22 meter simulator on loopback TCP -> the c1222 adapter the real hub
starts from a ``[sources.<name>] type = "c1222"`` table -> ingest, VEE and the store (SQLite
and PostgreSQL) -> gRPC ReadingService / AdminService over loopback.

Expected values come from the simulator's consumption model (``SimulatedMeter.intervals``),
never from what the adapter produced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import Engine, func, select

from adapters.c1222.tables import ChannelStatus, CommonStatus
from gateway.config import load_config
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from simulators.c1222.meter import FaultRates, MeterSpec, SimulatedMeter
from simulators.c1222.server import FleetConfig, FleetServer
from store import repository as repo
from store import schema as s
from tests.support.readings import all_interval_blocks
from tests.support.waiting import eventually as wait_until
from tests.support.waiting import timestamp

SOURCE = "c1222-north"
METERS = 3
DAYS = 2
STEP = 900
# Disjoint per-interval fault shares (the model draws one number per interval for all of them).
FAULTS = FaultRates(gap=0.03, power_fail=0.03, clock_set=0.02, overflow=0.02)
# Quality bits a meter can report; the rest (VALIDATED, FAILED_*, ESTIMATED...) are the hub's VEE.
SOURCE_BITS = (pb.QUALITY_FLAG_POWER_FAIL | pb.QUALITY_FLAG_CLOCK_SET | pb.QUALITY_FLAG_DST_ACTIVE
               | pb.QUALITY_FLAG_OVERFLOW | pb.QUALITY_FLAG_PARTIAL_INTERVAL | pb.QUALITY_FLAG_LONG_INTERVAL
               | pb.QUALITY_FLAG_SKIPPED_INTERVAL | pb.QUALITY_FLAG_TEST_MODE | pb.QUALITY_FLAG_DEVICE_ERROR)
LAND_SECONDS = 30.0
HUB_ESTIMATE_METHODS = (pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED | pb.QUALITY_FLAG_ESTIMATE_LIKE_DAY
                        | pb.QUALITY_FLAG_ESTIMATE_ZERO_FILL | pb.QUALITY_FLAG_ESTIMATE_SCALED)


def _frozen_now() -> datetime:
    """The meters' frozen clock: just after a UTC midnight that has passed, so every LP day
    is complete. The adapter started by the hub uses the real clock for its look-back, so the
    simulated history must sit in the recent past."""
    midnight = (datetime.now(UTC) - timedelta(minutes=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(seconds=7)


@dataclass
class Running:
    hub: Hub
    fleet: FleetServer
    channel: grpc.aio.Channel
    now: datetime
    meters: list[SimulatedMeter]

    @property
    def first_day(self) -> datetime:
        return self.now.replace(second=0) - timedelta(days=DAYS)


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, seconds: float = LAND_SECONDS) -> None:
    await wait_until(probe, what, seconds)


Stored = dict[tuple[str, int], dict[int, tuple[int, int]]]  # (meter, flow) -> end -> (value, quality)


async def stored_intervals(run: Running) -> tuple[Stored, dict[tuple[str, int], pb.ReadingType], list[int]]:
    """Every stored interval of the fleet's history through ListIntervalBlocks (all pages),
    the reading type of each channel and the version of each channel-day."""
    request = rs.ListIntervalBlocksRequest(page_size=7, filter=rs.IntervalBlockFilter(
        meter_ids=[m.id for m in run.meters], start_time=timestamp(run.first_day), end_time=timestamp(run.now)))
    values: Stored = {}
    types: dict[tuple[str, int], pb.ReadingType] = {}
    versions: list[int] = []
    for item in await all_interval_blocks(run.channel, request):
        block = item.block
        key = (block.meter_id, block.reading_type.flow_direction)
        types[key] = block.reading_type
        versions.append(item.version)
        assert block.interval_seconds == STEP
        first = block.first_interval_end_time.seconds
        per = values.setdefault(key, {})
        for i, value in enumerate(block.values):
            per[first + i * STEP] = (value, block.qualities[i])
    return values, types, versions


async def stored_registers(run: Running) -> list[pb.RegisterRead]:
    readings = rs_grpc.ReadingServiceStub(run.channel)
    reply = await readings.ListRegisterReads(rs.ListRegisterReadsRequest(
        meter_ids=[m.id for m in run.meters], start_time=timestamp(run.first_day), end_time=timestamp(run.now + timedelta(hours=1)),
        page_size=1000))
    return [r.read for r in reply.reads]


def _expected_quality(common: npt.NDArray[np.uint8], status: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """The source quality bits of one channel, from the simulator's own fault record
    (independent of the adapter's nibble decoding)."""
    q = np.zeros(len(status), dtype=np.int64)
    q[(common & CommonStatus.POWER_FAIL) != 0] |= pb.QUALITY_FLAG_POWER_FAIL
    q[(common & (CommonStatus.CLOCK_SET_FORWARD | CommonStatus.CLOCK_SET_BACKWARD)) != 0] |= \
        pb.QUALITY_FLAG_CLOCK_SET
    q[status == ChannelStatus.PARTIAL] |= pb.QUALITY_FLAG_PARTIAL_INTERVAL
    q[status == ChannelStatus.SKIPPED] |= pb.QUALITY_FLAG_SKIPPED_INTERVAL
    q[status == ChannelStatus.OVERFLOW] |= pb.QUALITY_FLAG_OVERFLOW
    return q


async def _landed(run: Running) -> bool:
    values, _types, _versions = await stored_intervals(run)
    want = DAYS * 86_400 // STEP
    if len(values) != 2 * METERS or any(len(v) != want for v in values.values()):
        return False
    return len(await stored_registers(run)) == 2 * METERS


@pytest.fixture
async def running(engine: Engine, tmp_path: Path) -> AsyncIterator[Running]:
    now = _frozen_now()
    spec = MeterSpec(lp_start=now - timedelta(days=DAYS), faults=FAULTS)
    async with FleetServer(FleetConfig(METERS, spec, lambda: now), "127.0.0.1", 0) as fleet:
        config_file = tmp_path / "hub.toml"
        # The store is the engine fixture's (SQLite in tmp_path, or a PostgreSQL schema of its
        # own), handed to the hub; the source is configured as an operator would.
        config_file.write_text(f"""
[grpc]
listen = "127.0.0.1:0"

[sources.{SOURCE}]
type = "c1222"
fleet = {{ host = "127.0.0.1", port = {fleet.port}, count = {METERS} }}
lookback_days = {DAYS + 3}
poll_interval_seconds = 0.05
timeout_seconds = 5
retries = 1
backoff_initial_seconds = 0.01
""", encoding="utf-8")
        config = load_config(config_file)
        meters = [SimulatedMeter(n, spec) for n in range(1, METERS + 1)]
        # Meters are known before the source's first poll (else its batches are rejected).
        with engine.begin() as conn:
            repo.upsert_meters(conn, [(m.id, adm.METER_STATUS_ACTIVE, 1, "residential") for m in meters], 0)
        async with Hub(config, engine=engine) as hub, grpc.aio.insecure_channel(hub.grpc_target) as channel:
            run = Running(hub, fleet, channel, now, meters)
            await eventually(lambda: _landed(run), "every interval and register of the fleet")
            yield run


async def test_intervals_and_registers_land_with_exact_values_and_units(running: Running) -> None:
    values, types, versions = await stored_intervals(running)
    first_end = int(running.first_day.timestamp()) + STEP
    for meter in running.meters:
        model = meter.intervals(first_end, DAYS * 86_400 // STEP)
        skipped = model.channel_status == ChannelStatus.SKIPPED
        for c, (flow, multiplier) in enumerate(((pb.FLOW_DIRECTION_DELIVERED, -1), (pb.FLOW_DIRECTION_RECEIVED, 0))):
            rt = types[(meter.id, flow)]
            assert (rt.commodity, rt.kind, rt.unit, rt.accumulation) == (
                pb.COMMODITY_ELECTRICITY, pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR, pb.ACCUMULATION_DELTA)
            # ST62: SCALAR 2 / DIVISOR 10 on channel 1 -> counts of 0.1 Wh; channel 2 is plain Wh.
            assert rt.power_of_ten_multiplier == multiplier
            scalar = meter.spec.scalars[c] * 10 ** (-multiplier) // meter.spec.divisors[c]
            stored = values[(meter.id, flow)]
            assert sorted(stored) == model.ends.tolist()
            for i, end in enumerate(model.ends.tolist()):
                value, quality = stored[end]
                if skipped[i, c]:
                    continue  # a gap: the hub's VEE may have estimated it (see the fault test)
                assert value == int(model.values[i, c]) * scalar, (meter.id, flow, end)
                assert not quality & (pb.QUALITY_FLAG_MISSING | pb.QUALITY_FLAG_ESTIMATED), (meter.id, flow, end)
    # One batch per meter wrote each channel-day once.
    assert versions and set(versions) == {1}

    registers = await stored_registers(running)
    by_key = {(r.meter_id, r.reading_type.flow_direction): r for r in registers}
    assert len(by_key) == len(registers) == 2 * METERS
    for meter in running.meters:
        # ST23 summations: everything the LP recorded since it began, in Wh, at the meter's clock.
        lp_start = int(meter.spec.first_day.timestamp())
        history = meter.intervals(lp_start + STEP, (int(running.now.timestamp()) - lp_start) // STEP)
        for c, flow in enumerate((pb.FLOW_DIRECTION_DELIVERED, pb.FLOW_DIRECTION_RECEIVED)):
            read = by_key[(meter.id, flow)]
            want = int(history.values[:, c].sum()) * meter.spec.scalars[c] // meter.spec.divisors[c]
            assert read.value == want
            assert read.read_time.ToDatetime(tzinfo=UTC) == running.now
            rt = read.reading_type
            assert (rt.unit, rt.power_of_ten_multiplier, rt.accumulation) == (
                pb.UNIT_WATT_HOUR, 0, pb.ACCUMULATION_CUMULATIVE)

    dead = await adm_grpc.AdminServiceStub(running.channel).ListDeadLetters(adm.ListDeadLettersRequest())
    assert not dead.dead_letters


async def test_injected_faults_reach_the_store_as_quality_flags(running: Running) -> None:
    values, _types, _versions = await stored_intervals(running)
    first_end = int(running.first_day.timestamp()) + STEP
    seen = {"power_fail": 0, "clock_set": 0, "overflow": 0, "gap": 0}
    for meter in running.meters:
        model = meter.intervals(first_end, DAYS * 86_400 // STEP)
        for c, flow in enumerate((pb.FLOW_DIRECTION_DELIVERED, pb.FLOW_DIRECTION_RECEIVED)):
            want = _expected_quality(model.common, model.channel_status[:, c])
            stored = values[(meter.id, flow)]
            got = np.array([stored[end][1] for end in model.ends.tolist()], dtype=np.int64)
            gaps = model.channel_status[:, c] == ChannelStatus.SKIPPED
            # Intervals with a reading keep exactly the flags the meter set on them.
            assert (got[~gaps] & SOURCE_BITS).tolist() == want[~gaps].tolist(), (meter.id, flow)
            assert not np.any(got[~gaps] & (pb.QUALITY_FLAG_MISSING | pb.QUALITY_FLAG_ESTIMATED))
            # A gap carries no reading: it is stored missing, or estimated by VEE and marked so.
            missing = (got[gaps] & pb.QUALITY_FLAG_MISSING) != 0
            estimated = (got[gaps] & pb.QUALITY_FLAG_ESTIMATED) != 0
            assert np.all(missing ^ estimated), (meter.id, flow)
            assert np.all((got[gaps][estimated] & HUB_ESTIMATE_METHODS) != 0)
            seen["power_fail"] += int(np.count_nonzero(got & pb.QUALITY_FLAG_POWER_FAIL))
            seen["clock_set"] += int(np.count_nonzero(got & pb.QUALITY_FLAG_CLOCK_SET))
            seen["overflow"] += int(np.count_nonzero(got & pb.QUALITY_FLAG_OVERFLOW))
            seen["gap"] += int(np.count_nonzero(gaps))
    assert all(seen.values()), f"every fault kind must occur in the run: {seen}"


async def test_a_skipped_interval_keeps_its_source_flag(running: Running) -> None:
    values, _types, _versions = await stored_intervals(running)
    first_end = int(running.first_day.timestamp()) + STEP
    for meter in running.meters:
        model = meter.intervals(first_end, DAYS * 86_400 // STEP)
        stored = values[(meter.id, pb.FLOW_DIRECTION_DELIVERED)]
        for i in np.flatnonzero(model.channel_status[:, 0] == ChannelStatus.SKIPPED).tolist():
            assert stored[int(model.ends[i])][1] & pb.QUALITY_FLAG_SKIPPED_INTERVAL, (meter.id, i)


async def test_a_second_poll_cycle_stores_nothing_twice(running: Running, engine: Engine) -> None:
    before = await stored_intervals(running)
    registers_before = await stored_registers(running)
    admin = adm_grpc.AdminServiceStub(running.channel)
    (source,) = (await admin.ListSources(adm.ListSourcesRequest())).sources
    assert (source.head_end, source.adapter_type) == (SOURCE, "c1222")
    # Every interval that carried a reading, and every register read, was committed exactly once.
    first_end = int(running.first_day.timestamp()) + STEP
    readings = sum(int(np.count_nonzero(m.intervals(first_end, DAYS * 86_400 // STEP).channel_status
                                        != ChannelStatus.SKIPPED)) for m in running.meters)
    assert source.reads_committed == readings + 2 * METERS
    assert source.last_interval_end_time.ToDatetime(tzinfo=UTC) == running.now.replace(second=0)

    # Let two more whole poll cycles run: the source keeps polling every 50 ms, and a cycle
    # ends only after its batches are committed, so once a third cycle has opened a session
    # the second one after this point is done.
    sessions = running.fleet.sessions_served

    async def two_more_cycles() -> bool:
        return running.fleet.sessions_served >= sessions + 2 * METERS + 1

    await eventually(two_more_cycles, "two more poll cycles")

    assert await stored_intervals(running) == before
    assert await stored_registers(running) == registers_before
    (source,) = (await admin.ListSources(adm.ListSourcesRequest())).sources
    assert source.reads_committed == readings + 2 * METERS
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(s.interval_block_history)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(s.register_reads)).scalar_one() == 2 * METERS
