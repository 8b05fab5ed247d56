"""End-to-end ingest benchmark: canonical batches through gRPC into the store.

For each store (SQLite file, PostgreSQL) it prints:
- end-to-end reads/s: a client process streams ReadingBatches (meter-day blocks
  of 96 x 15-minute intervals) over gRPC (IngestService.StreamBatches) to a hub
  in this process, which validates, merges and commits them;
- the raw store baseline measured in the same run: the same channel-day rows
  written with a bare executemany (SQLite) or COPY (PostgreSQL), nothing else;
- the ratio end-to-end / raw.

    python -m bench.ingest                       # both stores, 20,000 meters x 1 day
    python -m bench.ingest --store sqlite --sqlite-dir var/bench
    python -m bench.ingest --store postgres --postgres-url postgresql://postgres@127.0.0.1:5432/test

SQLite files are created in a temporary directory (or --sqlite-dir) and removed
afterwards; on PostgreSQL each run works in fresh schemas that are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from sqlalchemy import create_engine, make_url, text

from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from meterhub.v1 import model_pb2 as pb
from store.bulk import bulk_insert
from store.engine import open_engine, store_url
from store.schema import interval_blocks, metadata

POSTGRES_URL = os.environ.get("MH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY = datetime(2026, 1, 1, tzinfo=UTC)
SLOTS = 96
RT = pb.ReadingType(commodity=pb.COMMODITY_ELECTRICITY, kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY,
                    unit=pb.UNIT_WATT_HOUR, flow_direction=pb.FLOW_DIRECTION_DELIVERED,
                    accumulation=pb.ACCUMULATION_DELTA)


def meter_id(i: int) -> str:
    return f"B{i:07d}"


def build_batches(meters: int, days: int, per_batch: int) -> list[bytes]:
    """Serialized StreamBatchesRequests, each with per_batch meter-days."""
    rng = np.random.default_rng(7)
    out = []
    blocks = [(m, d) for d in range(days) for m in range(meters)]
    for start in range(0, len(blocks), per_batch):
        batch = pb.ReadingBatch(idempotency_key=f"bench-{start}", source=pb.Source(head_end="bench"))
        for m, d in blocks[start:start + per_batch]:
            block = batch.interval_blocks.add(meter_id=meter_id(m), reading_type=RT, interval_seconds=900,
                                              values=rng.integers(0, 2000, SLOTS).tolist())
            block.first_interval_end_time.FromDatetime(DAY + timedelta(days=d, minutes=15))
        out.append(ing.StreamBatchesRequest(batch=batch).SerializeToString())
    return out


def client_process(target: str, payloads: list[bytes], result: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> None:
        async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 1 << 26)]) as ch:
            stub = ing_grpc.IngestServiceStub(ch)
            requests = [ing.StreamBatchesRequest.FromString(p) for p in payloads]
            t0 = time.perf_counter()

            async def gen() -> AsyncIterator[ing.StreamBatchesRequest]:
                for r in requests:
                    yield r

            response = await stub.StreamBatches(gen())
            result.put((time.perf_counter() - t0, response.outcome.intervals_new))

    asyncio.run(run())


async def end_to_end(store: str, meters: int, days: int, per_batch: int) -> tuple[float, int]:
    payloads = build_batches(meters, days, per_batch)
    config = HubConfig(store=store, grpc=GrpcConfig(listen="127.0.0.1:0"), queue_size=8)
    async with Hub(config) as hub, grpc.aio.insecure_channel(hub.grpc_target) as ch:
        admin = adm_grpc.AdminServiceStub(ch)
        for start in range(0, meters, 10_000):
            await admin.UpsertMeters(adm.UpsertMetersRequest(
                meters=[adm.Meter(meter_id=meter_id(i)) for i in range(start, min(meters, start + 10_000))]))
        ctx = multiprocessing.get_context("spawn")
        result: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
        proc = ctx.Process(target=client_process, args=(hub.grpc_target, payloads, result))
        proc.start()
        elapsed, stored = await asyncio.to_thread(result.get)
        await asyncio.to_thread(proc.join)
    return elapsed, stored


def raw_baseline(store: str, meters: int, days: int, per_batch: int) -> float:
    """The same channel-day rows, written bare: one transaction per batch, no VEE."""
    engine = open_engine(store, create=False)
    metadata.create_all(engine, tables=[interval_blocks])
    rng = np.random.default_rng(7)
    rows_all = []
    for d in range(days):
        for m in range(meters):
            values = rng.integers(0, 2000, SLOTS).astype("<i8").tobytes()
            rows_all.append((m + 1, 20454 + d, 1, 900, values, bytes(SLOTS * 4), "bench", 0))
    columns = ["channel_id", "day", "version", "interval_seconds", "values", "qualities", "head_end", "update_time_us"]
    t0 = time.perf_counter()
    for start in range(0, len(rows_all), per_batch):
        with engine.begin() as conn:
            bulk_insert(conn, interval_blocks, columns, rows_all[start:start + per_batch])
    elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def postgres_store(base_url: str) -> tuple[str, str]:
    """A fresh schema on the server, and a store URL whose connections use it."""
    schema = f"mh_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(store_url(base_url))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(store_url(base_url)).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(base_url: str, schema: str) -> None:
    admin = create_engine(store_url(base_url))
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=20_000, help="meters (default 20,000)")
    parser.add_argument("--days", type=int, default=1, help="days of 15-minute data per meter (default 1)")
    parser.add_argument("--batch-meters", type=int, default=2_000, help="meter-days per batch (default 2,000)")
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"], default=None,
                        help="store to measure; repeat for both (default: sqlite and postgres)")
    parser.add_argument("--sqlite-dir", type=Path, default=None,
                        help="directory for the SQLite store files (default: a temporary directory)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="PostgreSQL server URL (default: $MH_BENCH_POSTGRES_URL or %(default)s)")
    args = parser.parse_args()
    reads = args.meters * args.days * SLOTS
    print(f"ingest benchmark: {args.meters:,} meters x {args.days} day(s) x {SLOTS} intervals = {reads:,} reads, "
          f"{args.batch_meters:,} meter-days per batch")
    for kind in args.store or ["sqlite", "postgres"]:
        if args.sqlite_dir is not None:
            args.sqlite_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.sqlite_dir) as tmp:
            if kind == "sqlite":
                e2e_store, raw_store, schemas = str(Path(tmp) / "e2e.sqlite"), str(Path(tmp) / "raw.sqlite"), []
                where = f"SQLite files in {tmp}"
            else:
                (e2e_store, s1), (raw_store, s2) = postgres_store(args.postgres_url), postgres_store(args.postgres_url)
                schemas = [s1, s2]
                where = f"PostgreSQL {make_url(store_url(args.postgres_url)).render_as_string(hide_password=True)}"
            print(f"  {kind:<9} store: {where}", flush=True)
            try:
                elapsed, stored = asyncio.run(end_to_end(e2e_store, args.meters, args.days, args.batch_meters))
                assert stored == reads, f"stored {stored} of {reads}"
                raw = raw_baseline(raw_store, args.meters, args.days, args.batch_meters)
            finally:
                for schema in schemas:
                    drop_schema(args.postgres_url, schema)
        print(f"  {kind:<9} end-to-end (gRPC -> validate -> merge -> VEE -> commit): {reads / elapsed:>12,.0f} reads/s"
              f"  ({elapsed:.2f} s)")
        print(f"  {kind:<9} raw baseline ({'COPY' if kind == 'postgres' else 'executemany'} of the same rows):"
              f"    {reads / raw:>12,.0f} reads/s  ({raw:.2f} s)")
        print(f"  {kind:<9} end-to-end / raw baseline: {raw / elapsed:.3f}", flush=True)


if __name__ == "__main__":
    main()
