"""`meterhub demo`: the hub with its simulators, on the embedded SQLite store.

Starts the hub, starts each simulated fleet (MQTT head-end first, then the
meter and head-end simulators of the other protocols), reads them through
their adapters, shows progress, and ends with what was stored, what was
rejected and why, and a sample query answered through the gRPC API.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import grpc
import numpy as np

from gateway.config import GrpcConfig, HubConfig, SourceConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import billing_service_pb2 as bill
from meterhub.v1 import billing_service_pb2_grpc as bill_grpc
from meterhub.v1 import cis_service_pb2 as cis
from meterhub.v1 import cis_service_pb2_grpc as cis_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from meterhub.v1 import vee_service_pb2 as vee
from meterhub.v1 import vee_service_pb2_grpc as vee_grpc
from simulators.base import DemoFleet, DemoFleetFactory

# (source name, simulator package) in the order the demo starts them.
FLEETS = (
    ("mqtt-headend", "mqtt"),
    ("dlms-meters", "dlms"),
    ("c1222-meters", "c1222"),
    ("multispeak-headend", "multispeak"),
    ("cim-headend", "cim"),
    ("modbus-submeters", "modbus"),
)
STALL_SECONDS = 20.0
# After a live-read fleet's day is over: time for its last batch to commit.
LIVE_GRACE_SECONDS = 5.0
MAX_SECONDS = 240.0


@dataclass
class RunningFleet:
    name: str
    kind: str
    fleet: DemoFleet


class Console:
    """What the demo shows a person: plain lines on stdout."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self._out = out

    def line(self, text: str = "") -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def status(self, text: str) -> None:
        if self._out.isatty():
            self._out.write("\r" + text.ljust(100))
        else:
            self._out.write(text + "\n")
        self._out.flush()


def prepare_workdir(workdir: Path) -> None:
    """A fresh folder per run, so the figures shown are this run's."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)


def _demo_start(days: int) -> datetime:
    """Whole days ending at the last UTC midnight, so every fleet has complete days."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


async def run_demo(workdir: Path, *, meters: int, fleet_meters: int, days: int,
                   only: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    console = Console(out)
    store = workdir / "meterhub.sqlite"
    start = _demo_start(days)
    console.line(f"meterhub demo: store {store}, data from {start:%Y-%m-%d} for {days} day(s), 15-minute intervals")
    config = HubConfig(store=str(store), grpc=GrpcConfig(listen="127.0.0.1:0"), queue_size=32)
    # The fleets' stack is entered first so it closes last: adapters stop before their simulators.
    async with contextlib.AsyncExitStack() as stack, Hub(config) as hub, \
            grpc.aio.insecure_channel(hub.grpc_target) as channel:
        console.line(f"hub listening for gRPC on {hub.grpc_target}")
        admin = adm_grpc.AdminServiceStub(channel)
        running: list[RunningFleet] = []
        selected = [(name, kind) for name, kind in FLEETS if not only or name in only or kind in only]
        expected_fleets = len(selected)
        for name, kind in selected:
            try:
                module = importlib.import_module(f"simulators.{kind}.demo")
            except ImportError as exc:
                console.line(f"  {name}: simulator not available ({exc})")
                continue
            factory: DemoFleetFactory = module.demo_fleet
            size = meters if kind == "mqtt" else fleet_meters
            try:
                fleet = await stack.enter_async_context(
                    factory(meters=size, start=start, days=days, interval_minutes=15))
            except Exception as exc:  # noqa: BLE001 - one fleet failing must not end the demo
                console.line(f"  {name}: could not start its simulator: {exc}")
                continue
            await admin.UpsertMeters(adm.UpsertMetersRequest(
                meters=[adm.Meter(meter_id=m, meter_class="residential") for m in fleet.meter_ids]))
            settings: dict[str, Any] = dict(fleet.adapter_config)
            hub.add_adapter(name, hub.create_adapter(SourceConfig(name, str(settings["type"]), settings)))
            running.append(RunningFleet(name, kind, fleet))
            console.line(f"  {name}: {len(fleet.meter_ids)} {kind} meters, "
                         f"expecting {fleet.expected_intervals:,} interval reads")
        if not running:
            console.line("no simulator could be started")
            return 1
        complete = await _watch_progress(console, admin, running)
        await _summarise(console, channel, running, start)
        await _summarise_billing(console, channel, running, start, days)
        _write_export_config(workdir, store)
        console.line(f"  export the cycle: meterhub billing export --config {workdir / 'hub.toml'} "
                     f"--start {start:%Y-%m-%d} --end {start + timedelta(days=days):%Y-%m-%d} --format csv")
    return 0 if complete and len(running) == expected_fleets else 1


def _write_export_config(workdir: Path, store: Path) -> None:
    """A hub.toml beside the demo store, for `meterhub billing export`."""
    (workdir / "hub.toml").write_text(f'[hub]\nstore = "{store.resolve()}"\n', encoding="utf-8")


DEMO_TARIFF = "residential_tou"
DEMO_ZONE = "America/New_York"


def _demo_cis_records(running: Sequence[RunningFleet], start: datetime) -> tuple[list[cis.SyncRecordsRequest],
                                                                                    list[str]]:
    """One account and service point per fleet (its first meter), and a meter
    exchange at noon on the first day on the second and third meters of the first
    fleet that has them, all on the bundled residential TOU tariff."""
    records = [cis.SyncRecordsRequest(account=cis.Account(account_id="DEMO-ACCT", name="Demo customers",
                                                          active=True))]
    points: list[str] = []

    def point(sp: str) -> None:
        records.append(cis.SyncRecordsRequest(service_point=cis.ServicePoint(
            service_point_id=sp, account_id="DEMO-ACCT", time_zone=DEMO_ZONE, tariff=DEMO_TARIFF)))
        points.append(sp)

    def install(meter: str, sp: str, since: datetime, until: datetime | None = None) -> None:
        m = cis.MeterInstall(meter_id=meter, service_point_id=sp, multiplier=1, meter_class="residential")
        m.install_time.FromDatetime(since)
        if until is not None:
            m.remove_time.FromDatetime(until)
        records.append(cis.SyncRecordsRequest(meter_install=m))

    long_ago = start - timedelta(days=365)
    for f in running:
        sp = f"SP-{f.name.upper()}"
        point(sp)
        install(f.fleet.meter_ids[0], sp, long_ago)
    exchange = next((f for f in running if len(f.fleet.meter_ids) >= 3), None)
    if exchange is not None:
        noon = start + timedelta(hours=12)
        point("SP-EXCHANGE")
        install(exchange.fleet.meter_ids[1], "SP-EXCHANGE", long_ago, noon)
        install(exchange.fleet.meter_ids[2], "SP-EXCHANGE", noon)
    return records, points


async def _summarise_billing(console: Console, channel: grpc.aio.Channel, running: Sequence[RunningFleet],
                             start: datetime, days: int) -> None:
    """CIS sync of a few service points, then their bill cycle through BillingService."""
    records, points = _demo_cis_records(running, start)

    async def stream() -> Any:
        for r in records:
            yield r

    await cis_grpc.CisServiceStub(channel).SyncRecords(stream())
    request = bill.StreamBillCycleRequest(service_point_ids=points)
    request.period.start_time.FromDatetime(start)
    request.period.end_time.FromDatetime(start + timedelta(days=days))
    console.line()
    console.line(f"Billing determinants through gRPC: BillingService.StreamBillCycle({len(points)} service points, "
                 f"tariff {DEMO_TARIFF}, {start:%Y-%m-%d} + {days} day(s))")
    console.line(f"  {'service point':<26}{'meters':<30}{'kWh':>10}{'on-peak':>10}{'mid-peak':>10}"
                 f"{'off-peak':>10}{'max kW':>9}  {'intervals a/e/m':<17}billable")
    async for item in bill_grpc.BillingServiceStub(channel).StreamBillCycle(request):
        if item.error:
            console.line(f"  {item.service_point_id:<26}error: {item.error}")
            continue
        d = item.determinants
        kwh = {b.period: float(b.delivered_kwh) for b in d.buckets}
        counts = f"{d.counts.actual}/{d.counts.estimated}/{d.counts.missing}"
        demand = float(d.max_demand.kw) if d.HasField("max_demand") else 0.0
        meters = ", ".join(d.meter_ids)
        console.line(f"  {d.service_point_id:<26}{meters[:29]:<30}{float(d.total_delivered_kwh):>10,.3f}"
                     f"{kwh.get('on_peak', 0):>10,.3f}{kwh.get('mid_peak', 0):>10,.3f}"
                     f"{kwh.get('off_peak', 0):>10,.3f}{demand:>9,.2f}  {counts:<17}"
                     + ("yes" if d.billable else "no: " + "; ".join(d.not_billable_reasons)))


async def _source_reads(admin: adm_grpc.AdminServiceStub) -> dict[str, adm.SourceStatus]:
    response = await admin.ListSources(adm.ListSourcesRequest())
    return {s.head_end: s for s in response.sources}


async def _watch_progress(console: Console, admin: adm_grpc.AdminServiceStub, running: list[RunningFleet]) -> bool:
    """Show progress until every fleet delivered what it should (True) or stalled (False)."""
    started = last_change = time.monotonic()
    last_total = -1
    expected = {f.name: f.fleet.expected_intervals for f in running}
    while True:
        await asyncio.sleep(1.0)
        sources = await _source_reads(admin)
        done = {n: sources[n].reads_committed if n in sources else 0 for n in expected}
        total = sum(done.values())
        now = time.monotonic()
        rate = total / max(now - started, 1e-9)
        parts = " | ".join(f"{n.split('-')[0]} {min(done[n], expected[n]) * 100 // max(expected[n], 1)}%"
                           for n in expected)
        console.status(f"[{now - started:5.1f}s] {total:>10,} reads stored ({rate:,.0f}/s)  {parts}")
        if total != last_total:
            last_total, last_change = total, now
        finished = {f.name for f in running if done[f.name] >= expected[f.name]
                    or (f.fleet.live_until is not None and time.time() > f.fleet.live_until + LIVE_GRACE_SECONDS)}
        if len(finished) == len(running):
            console.line()
            for f in running:
                if done[f.name] < expected[f.name]:
                    console.line(f"  {f.name}: {done[f.name]:,} of {expected[f.name]:,} intervals read; polls missed "
                                 "while the hub was busy cannot be read again (these meters keep no history), "
                                 "so VEE estimated them")
            return True
        if now - last_change > STALL_SECONDS or now - started > MAX_SECONDS:
            console.line()
            console.line("  (some sources delivered less than expected; the summary shows what arrived)")
            return False


async def _summarise(console: Console, channel: grpc.aio.Channel, running: list[RunningFleet],
                     start: datetime) -> None:
    admin = adm_grpc.AdminServiceStub(channel)
    readings = rs_grpc.ReadingServiceStub(channel)
    sources = await _source_reads(admin)
    console.line()
    console.line("Reads stored per source")
    console.line(f"  {'source':<22}{'type':<12}{'batches':>9}{'reads':>12}{'rejected':>10}{'dead letters':>14}")
    for f in running:
        s = sources.get(f.name)
        if s is None:
            console.line(f"  {f.name:<22}{f.kind:<12}{'-':>9}{0:>12}{'-':>10}{'-':>14}")
            continue
        console.line(f"  {f.name:<22}{f.kind:<12}{s.batches_committed:>9,}{s.reads_committed:>12,}"
                     f"{s.batches_rejected:>10,}{s.dead_letters:>14,}")
    dead = await admin.ListDeadLetters(adm.ListDeadLettersRequest(page_size=20))
    console.line()
    console.line(f"Rejected payloads (dead-letter store, first {len(dead.dead_letters)})")
    for d in dead.dead_letters:
        console.line(f"  #{d.id} {d.head_end}: {d.reason_code}: {d.reason[:90]} ({len(d.payload)} bytes kept)")
    if not dead.dead_letters:
        console.line("  none")
    await _summarise_vee(console, readings, vee_grpc.ExceptionServiceStub(channel), start)
    first = running[0].fleet.meter_ids[0]
    request = rs.ListIntervalBlocksRequest(filter=rs.IntervalBlockFilter(meter_ids=[first]), page_size=5)
    request.filter.start_time.FromDatetime(start)
    request.filter.end_time.FromDatetime(start + timedelta(days=1))
    page = await readings.ListIntervalBlocks(request)
    console.line()
    console.line(f"Sample query through gRPC: ReadingService.ListIntervalBlocks(meter_ids=[{first!r}], "
                 f"{start:%Y-%m-%d})")
    for stored in page.blocks:
        b = stored.block
        rt = b.reading_type
        unit = pb.Unit.Name(rt.unit).removeprefix("UNIT_").lower()
        flagged = sum(1 for q in b.qualities if q & ~pb.QUALITY_FLAG_VALIDATED)
        console.line(f"  {b.meter_id} {pb.FlowDirection.Name(rt.flow_direction).removeprefix('FLOW_DIRECTION_')}"
                     f" {unit} x10^{rt.power_of_ten_multiplier}: {len(b.values)} intervals from "
                     f"{b.first_interval_end_time.ToDatetime():%H:%M}, total {sum(b.values):,}, "
                     f"{len(b.values) - flagged} validated clean, {flagged} flagged, version {stored.version}")
        console.line(f"    first values: {list(b.values[:8])}")
    if not page.blocks:
        console.line("  (no blocks stored for that meter)")


async def _summarise_vee(console: Console, readings: rs_grpc.ReadingServiceStub,
                         exceptions: vee_grpc.ExceptionServiceStub, start: datetime) -> None:
    """What VEE did: intervals validated, estimated by method, suspect; items opened by rule."""
    request = rs.ExportIntervalBlocksRequest()
    request.filter.start_time.FromDatetime(start - timedelta(days=1))
    request.filter.end_time.FromDatetime(start + timedelta(days=2))
    counts: Counter[str] = Counter()
    labels = (("validated", pb.QUALITY_FLAG_VALIDATED), ("suspect", pb.QUALITY_FLAG_SUSPECT),
              ("missing", pb.QUALITY_FLAG_MISSING), ("interpolated", pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED),
              ("like-day", pb.QUALITY_FLAG_ESTIMATE_LIKE_DAY), ("zero-filled", pb.QUALITY_FLAG_ESTIMATE_ZERO_FILL))
    async for response in readings.ExportIntervalBlocks(request):
        for stored in response.blocks:
            q = np.asarray(stored.block.qualities, dtype=np.int64)
            counts["intervals"] += len(q)
            for name, bit in labels:
                counts[name] += int(np.count_nonzero(q & bit))
    rules: Counter[str] = Counter()
    states: Counter[int] = Counter()
    token = ""
    while True:
        page = await exceptions.ListExceptions(vee.ListExceptionsRequest(page_size=1000, page_token=token))
        rules.update(i.rule for i in page.items if i.state != vee.EXCEPTION_STATE_RESOLVED)
        states.update(i.state for i in page.items)
        token = page.next_page_token
        if not token:
            break
    console.line()
    console.line("VEE (validation, estimation) on the stored intervals")
    console.line(f"  {counts['intervals']:,} intervals: {counts['validated']:,} validated, "
                 f"{counts['suspect']:,} suspect, {counts['missing']:,} still missing")
    console.line(f"  estimates made: {counts['interpolated']:,} interpolated, {counts['like-day']:,} like-day, "
                 f"{counts['zero-filled']:,} zero-filled (outages)")
    resolved = states[vee.EXCEPTION_STATE_RESOLVED]
    console.line(f"  exception items opened: {sum(states.values()):,}, of which {resolved:,} resolved by "
                 "re-validation when late data arrived")
    console.line("  open items by rule: " + (", ".join(f"{rule} {n:,}" for rule, n in rules.most_common()) or "none"))
