"""VEE throughput: the full default rule set over synthetic channel-days.

    python -m bench.vee                 # 48 million reads (15-minute channel-days)
    python -m bench.vee --reads 2e6     # quick
    python -m bench.vee --quick

Data is generated in chunks (memory stays bounded); each chunk carries gaps
(short and long), spikes, outages, zero runs, register deltas for every
channel-day and one day of history per channel with gaps. Prints reads/s of
VeeEngine.run on one core, a raw baseline over the same arrays (one numpy
pass: MISSING mask + row sums) and the ratio vee / raw.
"""

from __future__ import annotations

import argparse
import os
import time

# One core: set before numpy loads its BLAS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from vee import History, RegisterSpans, VeeBatch, VeeContext, VeeEngine, default_config
from vee import flags as f

SLOTS = 96
DAY0 = 20_000


def make_chunk(rng: np.random.Generator, rows: int, channel_base: int) -> tuple[VeeBatch, VeeContext]:
    channels = channel_base + np.arange(rows, dtype=np.int64)
    days = np.full(rows, DAY0 + 28, dtype=np.int64)
    shape = 50 + 40 * np.sin(np.linspace(0, 2 * np.pi, SLOTS, endpoint=False))
    values = (shape[None, :] * rng.uniform(0.5, 2.0, (rows, 1))).astype(np.int64) + rng.integers(0, 20, (rows, SLOTS))
    qualities = np.zeros((rows, SLOTS), dtype=np.int64)
    # 2 % of rows get a short gap, 0.5 % a long one, 0.5 % an outage, 0.5 % a spike, 0.2 % a zero run.
    pick = rng.random(rows)
    short = np.flatnonzero(pick < 0.02)
    qualities[short, 40:44] = f.MISSING
    long_rows = np.flatnonzero((pick >= 0.02) & (pick < 0.025))
    qualities[long_rows, 10:30] = f.MISSING
    outage = np.flatnonzero((pick >= 0.025) & (pick < 0.03))
    qualities[outage, 60:70] = f.MISSING | f.POWER_FAIL
    spikes = np.flatnonzero((pick >= 0.03) & (pick < 0.035))
    values[spikes, 80] = 5000
    zero = np.flatnonzero((pick >= 0.035) & (pick < 0.037))
    values[zero, :60] = 0
    values[qualities & f.MISSING != 0] = 0
    batch = VeeBatch(
        interval_seconds=900, channel_ids=channels, days=days, values=values, qualities=qualities,
        active=np.ones(rows, dtype=np.bool_), flow_directions=np.ones(rows, dtype=np.int64),
    )
    start = days * 86400
    registers = RegisterSpans(channels, start, start + 86400, values.sum(axis=1))
    gap_rows = np.concatenate((short, long_rows, outage))
    hist_days = 7
    h_ch = np.repeat(channels[gap_rows], hist_days)
    h_day = np.tile(np.arange(DAY0 + 28 - hist_days, DAY0 + 28, dtype=np.int64), len(gap_rows))
    h_val = np.repeat(values[gap_rows], hist_days, axis=0) + 1
    history = History(h_ch, h_day, h_val, np.zeros_like(h_val))
    return batch, VeeContext(history=history, registers=registers)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vee", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=float, default=48e6, help="reads to process (default 48e6)")
    parser.add_argument("--chunk-rows", type=int, default=20_000, help="channel-days per run (default 20000)")
    parser.add_argument("--quick", action="store_true", help="2 million reads")
    args = parser.parse_args()
    total_reads = int(2e6 if args.quick else args.reads)
    rows_total = max(1, total_reads // SLOTS)
    engine = VeeEngine(default_config())
    rng = np.random.default_rng(1)
    vee_seconds = raw_seconds = 0.0
    done = items = estimated = 0
    while done < rows_total:
        rows = min(args.chunk_rows, rows_total - done)
        batch, ctx = make_chunk(rng, rows, done)
        t0 = time.perf_counter()
        missing = (batch.qualities & f.MISSING) != 0
        checksum = int(np.where(missing, 0, batch.values).sum(axis=1).sum())
        t1 = time.perf_counter()
        result = engine.run(batch, ctx)
        t2 = time.perf_counter()
        raw_seconds += t1 - t0
        vee_seconds += t2 - t1
        items += len(result.items)
        estimated += int(result.estimated_rows.sum())
        done += rows
        del checksum
    reads = done * SLOTS
    print(f"reads: {reads:,} in {done:,} channel-days of 96 (chunks of {args.chunk_rows:,})")
    print(f"vee (full default rule set): {reads / vee_seconds:,.0f} reads/s ({vee_seconds:.2f} s)")
    print(f"raw baseline (missing mask + row sums): {reads / raw_seconds:,.0f} reads/s ({raw_seconds:.2f} s)")
    print(f"vee / raw baseline: {raw_seconds / vee_seconds:.3f}")
    print(f"exception items: {items:,}; channel-days estimated: {estimated:,}")


if __name__ == "__main__":
    main()
