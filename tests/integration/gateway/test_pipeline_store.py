"""The ingest pipeline against a real store, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, func, select

from gateway.errors import IngestRejected, MisalignedInterval, UnknownMeter
from gateway.ingest import StageOutcome
from gateway.pipeline import IngestPipeline
from meterhub.v1 import model_pb2 as pb
from store import repository as repo
from store import schema as s
from tests.support.batches import DAY, KWH_DELIVERED, batch, interval_block


@pytest.fixture
async def pipeline(engine: Engine) -> AsyncIterator[IngestPipeline]:
    with engine.begin() as conn:
        repo.upsert_meters(conn, [("M1", 1, 1, "res"), ("M2", 1, 1, "res"), ("CT", 1, 80, "ci")], 0)
    p = IngestPipeline(engine, queue_size=4)
    await p.start()
    yield p
    await p.stop()


def stored_day(engine: Engine, meter_id: str, day_index: int = 0) -> tuple[int, np.ndarray, np.ndarray]:
    day = int(DAY.timestamp()) // 86400 + day_index
    with engine.connect() as conn:
        row = conn.execute(
            select(s.interval_blocks.c.version, s.interval_blocks.c["values"], s.interval_blocks.c.qualities)
            .join(s.channels, s.channels.c.id == s.interval_blocks.c.channel_id)
            .join(s.meters, s.meters.c.id == s.channels.c.meter_pk)
            .where(s.meters.c.meter_id == meter_id, s.interval_blocks.c.day == day)
        ).one()
    return row[0], np.frombuffer(row[1], "<i8"), np.frombuffer(row[2], "<i4")


def count(engine: Engine, table: s.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_a_day_is_stored_as_one_channel_day_row(pipeline: IngestPipeline, engine: Engine) -> None:
    values = list(range(96))
    outcome = await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), values)))
    assert outcome.intervals_new == 96
    version, stored, qualities = stored_day(engine, "M1")
    assert version == 1
    assert stored.tolist() == values
    assert not np.any(qualities & pb.QUALITY_FLAG_MISSING)
    assert count(engine, s.interval_blocks) == 1


async def test_same_batch_twice_is_stored_once(pipeline: IngestPipeline, engine: Engine) -> None:
    b = batch(interval_block("M1", DAY + timedelta(minutes=15), [5] * 96), key="batch-1")
    first = await pipeline.submit(b)
    again = await pipeline.submit(b)
    assert not first.duplicate_batch
    assert again.duplicate_batch
    assert again.intervals_new == first.intervals_new == 96
    assert stored_day(engine, "M1")[0] == 1
    assert count(engine, s.block_changes) == 1


async def test_same_reads_in_another_batch_are_unchanged(pipeline: IngestPipeline, engine: Engine) -> None:
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [5] * 96), key="a"))
    outcome = await pipeline.submit(batch(interval_block("M1", DAY + timedelta(hours=2), [5] * 8), key="b"))
    assert (outcome.intervals_new, outcome.intervals_unchanged, outcome.intervals_revised) == (0, 8, 0)
    assert stored_day(engine, "M1")[0] == 1
    assert count(engine, s.interval_block_history) == 0


async def test_changed_value_makes_a_new_version_and_keeps_history(pipeline: IngestPipeline, engine: Engine) -> None:
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [5] * 96)))
    outcome = await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=30), [9])))
    assert outcome.intervals_revised == 1
    version, values, _ = stored_day(engine, "M1")
    assert version == 2
    assert values[1] == 9
    with engine.connect() as conn:
        hist = conn.execute(select(s.interval_block_history)).one()
    assert hist.version == 1
    assert np.frombuffer(hist.values, "<i8")[1] == 5
    assert hist.superseded_by == "test"


async def test_late_and_out_of_order_data_is_accepted(pipeline: IngestPipeline, engine: Engine) -> None:
    # The afternoon arrives before the morning; both land in one row without history.
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(hours=12, minutes=15), [2] * 48)))
    _, values, qualities = stored_day(engine, "M1")
    assert np.all(qualities[:48] & pb.QUALITY_FLAG_MISSING)
    outcome = await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 48)))
    assert outcome.intervals_new == 48
    version, values, qualities = stored_day(engine, "M1")
    assert values.tolist() == [1] * 48 + [2] * 48
    assert not np.any(qualities & pb.QUALITY_FLAG_MISSING)
    assert version == 2
    assert count(engine, s.interval_block_history) == 0


async def test_block_across_midnight_splits_into_days(pipeline: IngestPipeline, engine: Engine) -> None:
    # 23:45-24:00 is the last slot of day 0; 00:00-00:15 the first of day 1.
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(days=1), [7, 8])))
    assert stored_day(engine, "M1", 0)[1][95] == 7
    assert stored_day(engine, "M1", 1)[1][0] == 8


async def test_unit_and_multiplier_are_normalised(pipeline: IngestPipeline, engine: Engine) -> None:
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [1000])))  # Wh, channel scale 0
    kwh = pb.ReadingType()
    kwh.CopyFrom(KWH_DELIVERED)
    kwh.power_of_ten_multiplier = 3  # 2 kWh
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=30), [2], reading_type=kwh)))
    assert stored_day(engine, "M1")[1][:2].tolist() == [1000, 2000]
    # CT meter: dial values times 80 unless the source already applied it.
    await pipeline.submit(batch(interval_block("CT", DAY + timedelta(minutes=15), [3])))
    await pipeline.submit(batch(interval_block("CT", DAY + timedelta(minutes=30), [240], multiplier_applied=True)))
    assert stored_day(engine, "CT")[1][:2].tolist() == [240, 240]


async def test_finer_resolution_than_channel_is_rejected_not_rounded(pipeline: IngestPipeline) -> None:
    kwh = pb.ReadingType()
    kwh.CopyFrom(KWH_DELIVERED)
    kwh.power_of_ten_multiplier = 3
    await pipeline.submit(batch(interval_block("M2", DAY + timedelta(minutes=15), [1], reading_type=kwh)))
    with pytest.raises(IngestRejected) as err:
        await pipeline.submit(batch(interval_block("M2", DAY + timedelta(minutes=30), [1500])))
    assert err.value.reason == "PRECISION_LOSS"


async def test_unknown_meter_rejects_the_whole_batch(pipeline: IngestPipeline, engine: Engine) -> None:
    good = interval_block("M1", DAY + timedelta(minutes=15), [1] * 4)
    bad = interval_block("NOPE", DAY + timedelta(minutes=15), [1] * 4)
    with pytest.raises(UnknownMeter) as err:
        await pipeline.submit(batch(good, bad, key="mixed"))
    assert "NOPE" in err.value.message
    assert err.value.reason == "UNKNOWN_METER"
    assert count(engine, s.interval_blocks) == 0
    assert count(engine, s.channels) == 0
    assert count(engine, s.ingested_batches) == 0
    # The good block alone still lands afterwards: nothing was half-written.
    assert (await pipeline.submit(batch(good))).intervals_new == 4


async def test_misaligned_interval_is_rejected(pipeline: IngestPipeline, engine: Engine) -> None:
    with pytest.raises(MisalignedInterval) as err:
        await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=7), [1])))
    assert "not aligned" in err.value.message
    with pytest.raises(MisalignedInterval):
        await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [1], interval=7 * 60)))
    assert count(engine, s.interval_blocks) == 0


async def test_malformed_blocks_are_rejected_with_the_reason(pipeline: IngestPipeline) -> None:
    cases = [
        (interval_block("M1", DAY + timedelta(minutes=15), [1, 2], qualities=[0]), "qualities for 2 values"),
        (interval_block("M1", DAY + timedelta(minutes=15), [1], qualities=[1 << 40]), "not QualityFlag"),
        (interval_block("", DAY + timedelta(minutes=15), [1]), "meter_id is empty"),
        (interval_block("M1", DAY + timedelta(minutes=15), []), "no values"),
    ]
    for block, message in cases:
        with pytest.raises(IngestRejected) as err:
            await pipeline.submit(batch(block))
        assert message in err.value.message


@pytest.mark.parametrize("first_end", [DAY.replace(year=1969) + timedelta(minutes=15),
                                       DAY.replace(year=9999) + timedelta(minutes=15)], ids=["1969", "9999"])
async def test_intervals_outside_the_storable_days_are_rejected(pipeline: IngestPipeline, engine: Engine,
                                                                first_end: datetime) -> None:
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [5] * 4)))
    # Channel-days are keyed channel * 10^6 + day: a day outside [0, 10^6) used to land in another
    # channel (here M1's), or fail the commit as if the store were down.
    with pytest.raises(IngestRejected, match="fall outside the storable range"):
        await pipeline.submit(batch(interval_block("M2", first_end, [6] * 4)))
    assert count(engine, s.interval_blocks) == 1


async def test_text_longer_than_its_column_is_rejected_on_every_dialect(pipeline: IngestPipeline) -> None:
    long_code = pb.ReadingType()
    long_code.CopyFrom(KWH_DELIVERED)
    long_code.device_channel = "x" * 65
    event = pb.MeterEvent(meter_id="M1", type=pb.METER_EVENT_TYPE_TAMPER, cim_code="3" * 65)
    event.event_time.FromDatetime(DAY)
    for bad, message in [
        (batch(interval_block("M1", DAY + timedelta(minutes=15), [1]), key="k" * 257), "idempotency_key is longer"),
        (batch(interval_block("M1", DAY + timedelta(minutes=15), [1], reading_type=long_code)),
         "device_channel is longer than 64"),
        (pb.ReadingBatch(meter_events=[event]), "cim_code is longer than 64"),
        (batch(interval_block("M1", DAY + timedelta(minutes=15), [1]), head_end="h" * 129),
         "source.head_end is longer than 128"),
    ]:
        with pytest.raises(IngestRejected, match=message):
            await pipeline.submit(bad)


async def test_registers_and_events_are_idempotent(pipeline: IngestPipeline, engine: Engine) -> None:
    b = pb.ReadingBatch(source=pb.Source(head_end="t", adapter_type="test"))
    reg_type = pb.ReadingType()
    reg_type.CopyFrom(KWH_DELIVERED)
    reg_type.accumulation = pb.ACCUMULATION_CUMULATIVE
    rr = b.register_reads.add(meter_id="M1", reading_type=reg_type, value=123456)
    rr.read_time.FromDatetime(DAY)
    ev = b.meter_events.add(meter_id="M1", type=pb.METER_EVENT_TYPE_POWER_FAIL, details={"phase": "A"})
    ev.event_time.FromDatetime(DAY)
    first = await pipeline.submit(b)
    assert (first.register_reads_new, first.meter_events_new) == (1, 1)
    again = await pipeline.submit(b)
    assert (again.register_reads_new, again.register_reads_unchanged, again.meter_events_new) == (0, 1, 0)
    b.register_reads[0].value = 123460
    assert (await pipeline.submit(b)).register_reads_new == 1
    assert count(engine, s.register_read_history) == 1


async def test_watermark_is_the_last_stored_interval_end(pipeline: IngestPipeline) -> None:
    assert await pipeline.watermark("M1", KWH_DELIVERED, 900) is None
    await pipeline.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 10)))
    assert await pipeline.watermark("M1", KWH_DELIVERED, 900) == DAY + timedelta(minutes=150)


async def test_full_queue_makes_submitters_wait(engine: Engine) -> None:
    """With the writer held inside a batch, a queue of 2 takes 2 more batches;
    the next submitter waits until the writer moves on."""
    import asyncio
    import threading

    with engine.begin() as conn:
        repo.upsert_meters(conn, [("M1", 1, 1, "res")], 0)
    release = threading.Event()
    entered = threading.Event()

    def hold(conn, days, now_us):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(10)
        return StageOutcome(days.values, days.qualities)

    p = IngestPipeline(engine, queue_size=2, stage=hold)
    await p.start()
    try:
        tasks = [asyncio.create_task(p.submit(batch(interval_block("M1", DAY + timedelta(minutes=15 * (i + 1)), [i]))))
                 for i in range(4)]
        await asyncio.to_thread(entered.wait, 10)
        await asyncio.sleep(0.1)
        assert p.queue_depth == 2  # one batch in the writer, two queued, the fourth is waiting to enqueue
        assert not any(t.done() for t in tasks)
        release.set()
        outcomes = await asyncio.gather(*tasks)
    finally:
        release.set()
        await p.stop()
    assert sum(o.intervals_new for o in outcomes) == 4
    assert stored_day(engine, "M1")[1][:4].tolist() == [0, 1, 2, 3]


async def test_a_batch_that_fails_for_a_non_store_reason_is_refused_not_retried(engine: Engine) -> None:
    """A defect triggered by one batch's content (here: a stage plug-in that
    fails on meter M2) refuses that batch as INGEST_FAILED, writes nothing of
    it, and the pipeline goes on with the next batch; sources dead-letter a
    refusal instead of redelivering it forever."""
    from gateway.errors import IngestFailed
    from gateway.ingest import ChannelDays

    def fragile_stage(conn: Connection, days: ChannelDays, now_us: int) -> StageOutcome:
        meters = {m for (m,) in conn.execute(select(s.meters.c.meter_id).join(
            s.channels, s.channels.c.meter_pk == s.meters.c.id).where(
            s.channels.c.id.in_([int(x) for x in days.channel_ids])))}
        if "M2" in meters:
            raise ValueError("stage defect")
        return StageOutcome(days.values, days.qualities)

    with engine.begin() as conn:
        repo.upsert_meters(conn, [("M1", 1, 1, "res"), ("M2", 1, 1, "res")], 0)
    p = IngestPipeline(engine, queue_size=4, stage=fragile_stage)
    await p.start()
    try:
        await p.submit(batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 4), key="ok-1"))
        with pytest.raises(IngestFailed) as refused:
            await p.submit(batch(interval_block("M1", DAY + timedelta(hours=1, minutes=15), [2] * 4),
                                 interval_block("M2", DAY + timedelta(minutes=15), [3] * 4), key="bad"))
        assert refused.value.reason == "INGEST_FAILED" and "ValueError: stage defect" in refused.value.message
        outcome = await p.submit(batch(interval_block("M1", DAY + timedelta(hours=2, minutes=15), [4] * 4),
                                       key="ok-2"))
        assert outcome.intervals_new == 4
    finally:
        await p.stop()
    _version, values, _q = stored_day(engine, "M1")
    assert values[:4].tolist() == [1] * 4
    assert values[4:8].tolist() == [0] * 4, "nothing of the refused batch is written"
    assert values[8:12].tolist() == [4] * 4
    with engine.connect() as conn:
        keys = {k for (k,) in conn.execute(select(s.ingested_batches.c.idempotency_key))}
    assert keys == {"ok-1", "ok-2"}
