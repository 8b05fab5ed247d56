"""Billing benchmark: determinants of one service point-month, and a whole bill cycle.

On the embedded SQLite store (default) or PostgreSQL it generates a month of
15-minute data for N service points (one meter each; every tenth point
net-metered with a received channel, every hundredth with a meter exchange
mid-month), written straight into the store's tables, then prints:

- single service point-month, GetBillingDeterminants over gRPC on loopback:
  p50 / p99 latency (and the same computation in process, without gRPC);
- the whole cycle, BillingService.StreamBillCycle over gRPC: seconds and
  service points per second;
- the raw baseline in the same run: a bare SELECT of the month's channel-day
  rows with a numpy sum per row (the I/O floor any billing pass pays), and
  the ratio.

    python -m bench.billing                        # 100,000 service points x 30 days, SQLite
    python -m bench.billing --service-points 10000 --store postgres

Targets from the issue: p99 under 5 ms per service point-month on the
embedded store; a 100,000-point cycle in under 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from sqlalchemy import Engine, create_engine, make_url, text

from gateway.billing import BillingPeriod, BillingPolicy, CycleFailure, TariffCalendar
from gateway.billing.config import parse_billing_settings
from gateway.billing.loading import compute_chunk
from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import billing_service_pb2 as bill
from meterhub.v1 import billing_service_pb2_grpc as bill_grpc
from meterhub.v1 import model_pb2 as pb
from store import schema as s
from store.bulk import bulk_insert
from store.engine import open_engine

PERIOD_START = datetime(2026, 10, 1, 4, tzinfo=UTC)  # local midnight, America/New_York (EDT)
TARIFF = "residential_tou"
SLOTS = 96
WRITE_CHUNK = 2_000  # service points per insert transaction


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def generate(engine: Engine, points: int, days: int, seed: int) -> int:
    """Writes the fleet; returns the channel-day rows written."""
    rng = np.random.default_rng(seed)
    first_day = int(PERIOD_START.timestamp()) // 86400
    # The period starts at 04:00 UTC; the month's last local day ends in the day after.
    day_numbers = np.arange(first_day, first_day + days + 1, dtype=np.int64)
    exchange_us = int((PERIOD_START + timedelta(days=days // 2)).timestamp()) * 1_000_000
    long_ago_us = int((PERIOD_START - timedelta(days=400)).timestamp()) * 1_000_000
    rows_written = 0
    meter_pk = 0
    channel_id = 0
    for lo in range(0, points, WRITE_CHUNK):
        hi = min(lo + WRITE_CHUNK, points)
        meters, channels, blocks, sps, installs = [], [], [], [], []
        for i in range(lo, hi):
            sp = f"SP{i:07d}"
            net = i % 10 == 0
            exchange = i % 100 == 1
            sps.append((sp, "ACCT", "America/New_York", TARIFF, int(net), 0))
            meter_ids = [f"M{i:07d}"] + ([f"M{i:07d}X"] if exchange else [])
            for n, meter_id in enumerate(meter_ids):
                meter_pk += 1
                meters.append((meter_pk, meter_id, 1, 1, "residential", 0))
                start_us = long_ago_us if n == 0 else exchange_us
                remove_us = exchange_us if exchange and n == 0 else 0
                installs.append((meter_id, start_us, sp, remove_us, 0, 0, 0))
                flows = [pb.FLOW_DIRECTION_DELIVERED] + ([pb.FLOW_DIRECTION_RECEIVED] if net else [])
                for flow in flows:
                    channel_id += 1
                    channels.append((channel_id, meter_pk, f"1.1.1.{flow}.1", 900, pb.COMMODITY_ELECTRICITY,
                                     pb.MEASUREMENT_KIND_ACTIVE_ENERGY, pb.UNIT_WATT_HOUR, flow,
                                     pb.ACCUMULATION_DELTA, 0, "", ""))
                    scale = 40 if flow == pb.FLOW_DIRECTION_RECEIVED else 300
                    values = rng.integers(0, scale, size=(len(day_numbers), SLOTS), dtype=np.int64)
                    qualities = np.full((len(day_numbers), SLOTS), pb.QUALITY_FLAG_VALIDATED, dtype="<i4")
                    for r, day in enumerate(day_numbers.tolist()):
                        blocks.append((channel_id, day, 1, 900, values[r].astype("<i8").tobytes(),
                                       qualities[r].tobytes(), "bench", 0))
        with engine.begin() as conn:
            bulk_insert(conn, s.meters, ["id", "meter_id", "status", "multiplier", "meter_class", "update_time_us"],
                        meters)
            bulk_insert(conn, s.channels, ["id", "meter_pk", "reading_type_key", "interval_seconds", "commodity",
                                           "kind", "unit", "flow_direction", "accumulation",
                                           "power_of_ten_multiplier", "cim_code", "device_channel"], channels)
            bulk_insert(conn, s.interval_blocks, ["channel_id", "day", "version", "interval_seconds", "values",
                                                  "qualities", "head_end", "update_time_us"], blocks)
            bulk_insert(conn, s.service_points, ["service_point_id", "account_id", "time_zone", "tariff",
                                                 "net_metered", "update_time_us"], sps)
            bulk_insert(conn, s.meter_installs, ["meter_id", "install_time_us", "service_point_id",
                                                 "remove_time_us", "start_read_wh", "final_read_wh",
                                                 "update_time_us"], installs)
        rows_written += len(blocks)
        out(f"  generated {hi:,} / {points:,} service points ({rows_written:,} channel-day rows)")
    return rows_written


def raw_baseline(engine: Engine, days: int) -> tuple[float, int, int]:
    """Seconds to SELECT every channel-day row of the month and sum each with numpy."""
    first_day = int(PERIOD_START.timestamp()) // 86400
    total = 0
    rows = 0
    started = time.perf_counter()
    with engine.connect() as conn:
        result = conn.execute(text('SELECT channel_id, day, "values" FROM interval_blocks WHERE day >= :a '
                                   "AND day <= :b"), {"a": first_day, "b": first_day + days})
        for _cid, _day, values in result:
            total += int(np.frombuffer(values, dtype="<i8").sum())
            rows += 1
    return time.perf_counter() - started, rows, total


def grpc_client(target: str, picks: list[str], start_s: int, end_s: int) -> tuple[list[float], int, int, float]:
    """In the client process: time single requests, then stream the whole cycle."""
    message = bill.BillingPeriod()
    message.start_time.FromSeconds(start_s)
    message.end_time.FromSeconds(end_s)
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = bill_grpc.BillingServiceStub(channel)
        latencies = []
        for sp in picks:
            started = time.perf_counter()
            response = stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(service_point_id=sp,
                                                                                      period=message))
            latencies.append(time.perf_counter() - started)
            assert response.determinants.counts.expected > 0
        started = time.perf_counter()
        streamed = billable = 0
        for item in stub.StreamBillCycle(bill.StreamBillCycleRequest(period=message)):
            streamed += 1
            billable += item.determinants.billable
        return latencies, streamed, billable, time.perf_counter() - started


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(engine: Engine, store: str, points: int, period: BillingPeriod, samples: int,
                  seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    picks = [f"SP{int(i):07d}" for i in rng.integers(0, points, size=samples)]
    settings = parse_billing_settings({})
    calendars = {name: TariffCalendar(t) for name, t in settings.tariffs.items()}
    policy = BillingPolicy()

    in_process = []
    for sp in picks:
        started = time.perf_counter()
        with engine.connect() as conn:
            (result,) = compute_chunk(conn, [sp], period, calendars, policy)
            assert not isinstance(result, CycleFailure), result
        in_process.append(time.perf_counter() - started)
    out(f"single service point-month, in process: p50 {statistics.median(in_process) * 1e3:.2f} ms, "
        f"p99 {percentile(in_process, 0.99) * 1e3:.2f} ms ({samples} samples)")

    config = HubConfig(store=store, grpc=GrpcConfig(listen="127.0.0.1:0"), billing=settings)
    # The client is a process of its own, as a billing system is: its decoding
    # does not share the hub's interpreter.
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client:
        async with Hub(config, engine=engine) as hub:
            over_grpc, streamed, billable, cycle = await asyncio.get_running_loop().run_in_executor(
                client, grpc_client, hub.grpc_target, picks, period.start_s, period.end_s)
    out(f"single service point-month, GetBillingDeterminants over gRPC: "
        f"p50 {statistics.median(over_grpc) * 1e3:.2f} ms, p99 {percentile(over_grpc, 0.99) * 1e3:.2f} ms "
        "(target: p99 under 5 ms)")
    out(f"bill cycle, StreamBillCycle over gRPC: {streamed:,} service points in {cycle:.1f} s "
        f"({streamed / cycle:,.0f} points/s, {billable:,} billable; target: 100,000 in under 120 s)")
    if streamed != points:
        raise SystemExit(f"cycle streamed {streamed} of {points} service points")
    raw_s, raw_rows, _total = raw_baseline(engine, (period.end_s - period.start_s) // 86400)
    out(f"raw baseline, bare SELECT of the month's {raw_rows:,} channel-day rows + numpy sum: {raw_s:.1f} s; "
        f"cycle / raw = {cycle / raw_s:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.billing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service-points", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30, help="billing period length (default 30)")
    parser.add_argument("--samples", type=int, default=1000, help="single-point requests timed (default 1000)")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sqlite-dir", type=Path, default=None, help="where the SQLite file goes (default: temp)")
    parser.add_argument("--sqlite-file", type=Path, default=None,
                        help="keep the generated store in this file and reuse it when it exists (same options)")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    period = BillingPeriod(PERIOD_START, PERIOD_START + timedelta(days=args.days))
    with tempfile.TemporaryDirectory(dir=args.sqlite_dir) as tmp:
        schema = ""
        reuse = False
        if args.store == "sqlite":
            location = str(args.sqlite_file or Path(tmp) / "billing.sqlite")
            reuse = args.sqlite_file is not None and args.sqlite_file.exists()
            engine = open_engine(location)
        else:
            schema = f"mh_bench_{uuid.uuid4().hex[:10]}"
            url = args.postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
            with create_engine(url).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            # The schema travels in the URL: bill cycle workers open the store from it.
            location = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
                hide_password=False)
            engine = create_engine(location)
            s.metadata.create_all(engine)
        try:
            out(f"billing bench: {args.service_points:,} service points x {args.days} days of 15-minute data, "
                f"{args.store} store, tariff {TARIFF}")
            started = time.perf_counter()
            if reuse:
                out(f"  reusing {location}")
            else:
                generate(engine, args.service_points, args.days, args.seed)
            if engine.dialect.name == "postgresql":
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE"))
            out(f"  data written in {time.perf_counter() - started:.1f} s")
            asyncio.run(measure(engine, location, args.service_points, period, args.samples, args.seed))
        finally:
            engine.dispose()
            if schema:
                with create_engine(url).begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
