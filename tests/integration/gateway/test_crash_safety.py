"""Kill the hub (SIGKILL) in the middle of heavy ingest, restart it, let the
sources redeliver, and check that every read is stored exactly once and that
nothing acknowledged was lost. SIGTERM drains in-flight batches."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from sqlalchemy import select

from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from store import schema as s
from store.engine import open_engine
from tests.integration.gateway.test_cli_serve import wait_serving
from tests.support.batches import DAY, batch, interval_block
from tests.support.net import free_port

SOURCES = 3
METERS_PER_SOURCE = 40
DAYS = 6


def expected_value(meter: int, day: int, slot: int) -> int:
    return (meter * 7 + day * 13 + slot) % 500


def source_batches(source: int) -> list[ing.SubmitBatchRequest]:
    """One batch per (source, day): every meter of the source for that day."""
    out = []
    for day in range(DAYS):
        blocks = [interval_block(f"S{source}-M{m}", DAY + timedelta(days=day, minutes=15),
                                 [expected_value(m, day, k) for k in range(96)]) for m in range(METERS_PER_SOURCE)]
        out.append(ing.SubmitBatchRequest(batch=batch(*blocks, key=f"s{source}-d{day}", head_end=f"src{source}")))
    return out


class HubProcess:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.config = workdir / "hub.toml"
        self.config.write_text(f'[hub]\nstore = "hub.sqlite"\nqueue_size = 4\n[grpc]\nlisten = "127.0.0.1:{self.port}"\n')
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_serving(self.target, time.monotonic() + 30)

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path)
    yield hub
    if hub.proc is not None:
        hub.proc.kill()
        hub.proc.wait()


async def deliver(target: str, source: int, acked: set[str], stop_after_kill: asyncio.Event,
                  some_acked: asyncio.Event | None = None) -> None:
    """A source that sends its batches in order and redelivers any it has no ack for."""
    pending = source_batches(source)
    while pending:
        request = pending[0]
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                stub = ing_grpc.IngestServiceStub(channel)
                while pending:
                    request = pending[0]
                    await stub.SubmitBatch(request, timeout=30)
                    acked.add(request.batch.idempotency_key)
                    pending.pop(0)
                    if some_acked is not None and len(acked) >= 3:
                        some_acked.set()
        except grpc.aio.AioRpcError:
            # Hub gone: wait for it to come back, then redeliver from the first unacked batch.
            await stop_after_kill.wait()
            await asyncio.sleep(0.2)


def check_store(workdir: Path) -> None:
    engine = open_engine(str(workdir / "hub.sqlite"), create=False)
    with engine.connect() as conn:
        rows = conn.execute(select(s.meters.c.meter_id, s.interval_blocks.c.day, s.interval_blocks.c.version,
                                   s.interval_blocks.c["values"], s.interval_blocks.c.qualities)
                            .join(s.channels, s.channels.c.meter_pk == s.meters.c.id)
                            .join(s.interval_blocks, s.interval_blocks.c.channel_id == s.channels.c.id)).all()
        history = conn.execute(select(s.interval_block_history.c.id)).all()
    engine.dispose()
    first_day = int(DAY.timestamp()) // 86400
    assert len(rows) == SOURCES * METERS_PER_SOURCE * DAYS
    for meter_id, day, version, values, qualities in rows:
        m = int(meter_id.split("-M")[1])
        expected = [expected_value(m, day - first_day, k) for k in range(96)]
        assert np.frombuffer(values, "<i8").tolist() == expected, (meter_id, day)
        assert not np.any(np.frombuffer(qualities, "<i4") & 1)
        assert version == 1, "a redelivered identical batch must not create a new version"
    assert history == []


async def register_meters(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await adm_grpc.AdminServiceStub(channel).UpsertMeters(adm.UpsertMetersRequest(meters=[
            adm.Meter(meter_id=f"S{src}-M{m}") for src in range(SOURCES) for m in range(METERS_PER_SOURCE)]))


async def test_sigkill_mid_ingest_loses_nothing_and_duplicates_nothing(hub_process: HubProcess, tmp_path: Path) -> None:
    await asyncio.to_thread(hub_process.start)
    await register_meters(hub_process.target)
    acked: set[str] = set()
    restarted = asyncio.Event()
    some_acked = asyncio.Event()
    sources = [asyncio.create_task(deliver(hub_process.target, i, acked, restarted, some_acked))
               for i in range(SOURCES)]
    # Let some batches commit, then kill the hub while the others are in flight.
    await asyncio.wait_for(some_acked.wait(), 60)
    acked_before_kill = set(acked)
    assert hub_process.signal(signal.SIGKILL) == -signal.SIGKILL
    assert len(acked_before_kill) < SOURCES * DAYS, "the kill must land mid-ingest"
    await asyncio.to_thread(hub_process.start)
    restarted.set()
    await asyncio.wait_for(asyncio.gather(*sources), 120)
    assert acked >= acked_before_kill
    assert len(acked) == SOURCES * DAYS
    assert hub_process.signal(signal.SIGTERM) == 0
    await asyncio.to_thread(check_store, tmp_path)


async def test_sigterm_drains_in_flight_batches(hub_process: HubProcess, tmp_path: Path) -> None:
    await asyncio.to_thread(hub_process.start)
    await register_meters(hub_process.target)
    requests = [r for src in range(SOURCES) for r in source_batches(src)]
    async with grpc.aio.insecure_channel(hub_process.target) as channel:
        stub = ing_grpc.IngestServiceStub(channel)
        calls = [asyncio.ensure_future(stub.SubmitBatch(r, timeout=60)) for r in requests]
        await asyncio.sleep(0.3)
        stop = asyncio.create_task(asyncio.to_thread(hub_process.signal, signal.SIGTERM))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert await stop == 0
    committed = [r for r in results if isinstance(r, ing.SubmitBatchResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(committed) + len(refused) == len(requests)
    assert committed, "batches in flight at SIGTERM must be committed and answered"
    engine = open_engine(str(tmp_path / "hub.sqlite"), create=False)
    with engine.connect() as conn:
        stored_keys = {k for (k,) in conn.execute(select(s.ingested_batches.c.idempotency_key))}
    engine.dispose()
    # Every answered batch is in the store; nothing half-written.
    assert {r.batch.idempotency_key for r, res in zip(requests, results, strict=True)
            if isinstance(res, ing.SubmitBatchResponse)} <= stored_keys
