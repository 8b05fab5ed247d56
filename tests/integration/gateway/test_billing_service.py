"""BillingService over real gRPC, on reads that went through ingest and VEE,
on SQLite and PostgreSQL.

Three days (Mon 2026-11-02 to Thu 2026-11-05, America/New_York) of two service
points: SP-EXCH has its meter exchanged mid-period; SP-SOLAR is net-metered
and has a four-interval gap that VEE fills. Expected determinants are
computed here, interval by interval with zoneinfo, independently of the
engine's arrays.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from sqlalchemy import Engine

from gateway.api.status import error_info
from gateway.billing.config import parse_billing_settings
from gateway.cli import main as cli_main
from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import billing_service_pb2 as bill
from meterhub.v1 import billing_service_pb2_grpc as bill_grpc
from meterhub.v1 import cis_service_pb2 as cis
from meterhub.v1 import cis_service_pb2_grpc as cis_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from meterhub.v1 import model_pb2 as pb
from tests.support.batches import batch, interval_block

ZONE = ZoneInfo("America/New_York")
START = datetime(2026, 11, 2, tzinfo=ZONE).astimezone(UTC)
END = datetime(2026, 11, 5, tzinfo=ZONE).astimezone(UTC)
EXCHANGE = datetime(2026, 11, 3, 12, tzinfo=ZONE).astimezone(UTC)
INTERVALS = int((END - START).total_seconds()) // 900
GAP = range(100, 104)  # SP-SOLAR delivered intervals VEE must estimate
CPP_DAY = "2026-11-04"
TARIFF = {
    "time_zone": "America/New_York",
    "periods": ["on_peak", "off_peak", "critical_peak"],
    "default_period": "off_peak",
    "demand": {"window_minutes": 15, "rolling": False},
    "tou": [
        {"period": "on_peak", "day_types": ["weekday"], "hours": [["17:00", "21:00"]]},
        {"period": "critical_peak", "day_types": ["critical_peak"], "hours": [["14:00", "18:00"]]},
    ],
}
RECEIVED = pb.ReadingType(
    commodity=pb.COMMODITY_ELECTRICITY, kind=pb.MEASUREMENT_KIND_ACTIVE_ENERGY, unit=pb.UNIT_WATT_HOUR,
    flow_direction=pb.FLOW_DIRECTION_RECEIVED, accumulation=pb.ACCUMULATION_DELTA)


def delivered(meter: str, k: int) -> int:
    """Wh of interval k (from START): varied, never zero, no spikes."""
    base = {"M-OLD": 180, "M-NEW": 210, "SOLAR-1": 150}[meter]
    return base + (k * 37) % 97 + (60 if 68 <= k % 96 <= 84 else 0)


def received(k: int) -> int:
    hour = (k % 96) // 4  # hours since local midnight (EST all period)
    return 40 + (k * 13) % 50 if 11 <= hour < 15 else 0


def interval_start(k: int) -> datetime:
    return START + timedelta(seconds=900 * k)


def period_of(k: int, cpp: bool) -> str:
    local = interval_start(k).astimezone(ZONE)
    minutes = local.hour * 60 + local.minute
    if cpp and local.date().isoformat() == CPP_DAY and 14 * 60 <= minutes < 18 * 60:
        return "critical_peak"
    if local.weekday() < 5 and 17 * 60 <= minutes < 21 * 60:
        return "on_peak"
    return "off_peak"


def exchange_k() -> int:
    return int((EXCHANGE - START).total_seconds()) // 900


def hub_config(store: str) -> HubConfig:
    return HubConfig(store=store, grpc=GrpcConfig(listen="127.0.0.1:0"),
                     billing=parse_billing_settings({"tariffs": {"test_tou": TARIFF}}))


@pytest.fixture
async def hub(engine: Engine, tmp_path: Path) -> AsyncIterator[Hub]:
    async with Hub(hub_config(str(tmp_path / "unused")), engine=engine) as running:
        await load_fixture(running.grpc_target)
        yield running


@pytest.fixture
async def sqlite_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub on its own SQLite file, which `meterhub billing export` then reads."""
    async with Hub(hub_config(str(tmp_path / "hub.sqlite"))) as running:
        await load_fixture(running.grpc_target)
        yield running


def install(meter: str, sp: str, start: datetime, end: datetime | None = None) -> cis.SyncRecordsRequest:
    m = cis.MeterInstall(meter_id=meter, service_point_id=sp, multiplier=1)
    m.install_time.FromDatetime(start)
    if end is not None:
        m.remove_time.FromDatetime(end)
    return cis.SyncRecordsRequest(meter_install=m)


async def load_fixture(target: str) -> None:
    records = [
        cis.SyncRecordsRequest(account=cis.Account(account_id="A-1", name="Jones", active=True)),
        cis.SyncRecordsRequest(service_point=cis.ServicePoint(
            service_point_id="SP-EXCH", account_id="A-1", time_zone="America/New_York", tariff="test_tou")),
        cis.SyncRecordsRequest(service_point=cis.ServicePoint(
            service_point_id="SP-SOLAR", account_id="A-1", time_zone="America/New_York", tariff="test_tou",
            net_metered=True)),
        install("M-OLD", "SP-EXCH", START - timedelta(days=300), EXCHANGE),
        install("M-NEW", "SP-EXCH", EXCHANGE),
        install("SOLAR-1", "SP-SOLAR", START - timedelta(days=30)),
    ]

    async def stream() -> AsyncIterator[cis.SyncRecordsRequest]:
        for r in records:
            yield r

    x = exchange_k()
    gap_q = [pb.QUALITY_FLAG_MISSING if k in GAP else 0 for k in range(INTERVALS)]
    batches = [
        batch(interval_block("M-OLD", interval_start(1), [delivered("M-OLD", k) for k in range(x)]), key="old"),
        batch(interval_block("M-NEW", interval_start(x + 1),
                             [delivered("M-NEW", k) for k in range(x, INTERVALS)]), key="new"),
        batch(interval_block("SOLAR-1", interval_start(1),
                             [0 if k in GAP else delivered("SOLAR-1", k) for k in range(INTERVALS)],
                             qualities=gap_q),
              interval_block("SOLAR-1", interval_start(1), [received(k) for k in range(INTERVALS)],
                             reading_type=RECEIVED), key="solar"),
    ]
    async with grpc.aio.insecure_channel(target) as channel:
        await cis_grpc.CisServiceStub(channel).SyncRecords(stream())
        ingest = ing_grpc.IngestServiceStub(channel)
        for b in batches:
            await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=b))


def period() -> bill.BillingPeriod:
    p = bill.BillingPeriod()
    p.start_time.FromDatetime(START)
    p.end_time.FromDatetime(END)
    return p


def buckets(d: bill.BillingDeterminants) -> dict[str, tuple[int, int, int]]:
    assert all(b.remainder_den == 1 for b in d.buckets), "assign policy: whole Wh"
    return {b.period: (b.delivered_wh, b.received_wh, b.net_wh) for b in d.buckets}


def expected_buckets(values: Sequence[int], recv: Sequence[int], cpp: bool) -> dict[str, tuple[int, int, int]]:
    out = {p: [0, 0] for p in ("on_peak", "off_peak", "critical_peak")}
    for k in range(INTERVALS):
        out[period_of(k, cpp)][0] += values[k]
        out[period_of(k, cpp)][1] += recv[k]
    return {p: (d, r, d - r) for p, (d, r) in out.items()}


async def all_intervals(stub: bill_grpc.BillingServiceStub, sp: str) -> list[bill.BillingInterval]:
    out: list[bill.BillingInterval] = []
    token = ""
    while True:
        page = await stub.ListBillingIntervals(bill.ListBillingIntervalsRequest(
            service_point_id=sp, period=period(), page_size=97, page_token=token))
        out.extend(page.intervals)
        token = page.next_page_token
        if not token:
            return out


async def test_meter_exchange_is_stitched_into_one_exact_period(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = bill_grpc.BillingServiceStub(channel)
        d = (await stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(
            service_point_id="SP-EXCH", period=period()))).determinants
        records = await all_intervals(stub, "SP-EXCH")
    x = exchange_k()
    values = [delivered("M-OLD" if k < x else "M-NEW", k) for k in range(INTERVALS)]
    assert list(d.meter_ids) == ["M-OLD", "M-NEW"]
    assert d.tariff == "test_tou"
    assert d.total_delivered_wh == sum(values) and d.total_received_wh == 0
    assert Decimal(d.total_delivered_kwh) == Decimal(sum(values)) / 1000
    assert buckets(d) == expected_buckets(values, [0] * INTERVALS, cpp=False)
    assert all(Decimal(b.delivered_kwh) * 1000 == b.delivered_wh for b in d.buckets)
    peak = max(range(INTERVALS), key=lambda k: (values[k], -k))
    assert d.max_demand.watts == values[peak] * 4
    assert Decimal(d.max_demand.kw) == Decimal(values[peak] * 4) / 1000
    assert d.max_demand.interval_end_time.ToDatetime(UTC) == interval_start(peak + 1)
    assert d.max_demand.period == period_of(peak, cpp=False)
    assert (d.counts.expected, d.counts.actual, d.counts.estimated, d.counts.missing) == (INTERVALS, INTERVALS, 0, 0)
    assert d.completeness_ppm == 1_000_000
    assert d.billable, list(d.not_billable_reasons)
    # The five fields TOU billing needs, per interval, from the meter installed then.
    assert len(records) == INTERVALS
    assert [r.meter_id for r in records] == ["M-OLD"] * x + ["M-NEW"] * (INTERVALS - x)
    assert [r.value_wh for r in records] == values
    assert [r.interval_start_time.ToDatetime(UTC) for r in records] == [interval_start(k) for k in range(INTERVALS)]
    assert all(r.interval_end_time.ToSeconds() - r.interval_start_time.ToSeconds() == 900 for r in records)
    assert {r.vee_status for r in records} == {"actual"}
    assert [r.rate_period for r in records] == [period_of(k, cpp=False) for k in range(INTERVALS)]


async def test_net_metered_point_with_an_estimated_gap(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = bill_grpc.BillingServiceStub(channel)
        d = (await stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(
            service_point_id="SP-SOLAR", period=period()))).determinants
        records = await all_intervals(stub, "SP-SOLAR")
    delivered_records = [r for r in records if r.flow_direction == pb.FLOW_DIRECTION_DELIVERED]
    received_records = [r for r in records if r.flow_direction == pb.FLOW_DIRECTION_RECEIVED]
    assert len(delivered_records) == len(received_records) == INTERVALS
    estimated = [k for k, r in enumerate(delivered_records) if r.vee_status == "estimated"]
    assert estimated == list(GAP), "VEE interpolated the gap and billing sees the estimates"
    before, after = delivered("SOLAR-1", GAP[0] - 1), delivered("SOLAR-1", GAP[-1] + 1)
    for k in GAP:
        assert min(before, after) <= delivered_records[k].value_wh <= max(before, after)
    values = [delivered_records[k].value_wh if k in GAP else delivered("SOLAR-1", k) for k in range(INTERVALS)]
    recv = [received(k) for k in range(INTERVALS)]
    assert [r.value_wh for r in received_records] == recv
    assert d.total_delivered_wh == sum(values)
    assert d.total_received_wh == sum(recv) > 0
    assert d.total_net_wh == sum(values) - sum(recv)
    assert d.net_metered and Decimal(d.total_net_kwh) == Decimal(sum(values) - sum(recv)) / 1000
    assert buckets(d) == expected_buckets(values, recv, cpp=False)
    # Channel-intervals: both flows count.
    assert (d.counts.expected, d.counts.estimated, d.counts.missing) == (2 * INTERVALS, len(GAP), 0)
    assert d.counts.actual == 2 * INTERVALS - len(GAP)
    assert d.completeness_ppm == 1_000_000
    # VEE's estimates are billable by default ([billing] estimates_billable).
    assert d.billable, list(d.not_billable_reasons)


async def test_critical_peak_events_move_energy_into_the_critical_period(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = bill_grpc.BillingServiceStub(channel)
        set_response = await stub.SetCriticalPeakEvents(bill.SetCriticalPeakEventsRequest(
            tariff="test_tou", event_dates=[CPP_DAY, CPP_DAY]))
        d = (await stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(
            service_point_id="SP-EXCH", period=period()))).determinants
    assert set_response.event_days == 1
    x = exchange_k()
    values = [delivered("M-OLD" if k < x else "M-NEW", k) for k in range(INTERVALS)]
    expected = expected_buckets(values, [0] * INTERVALS, cpp=True)
    assert expected["critical_peak"][0] > 0
    assert buckets(d) == expected


async def test_bill_cycle_streams_every_point_and_reports_failures_in_line(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = bill_grpc.BillingServiceStub(channel)
        every = [m async for m in stub.StreamBillCycle(bill.StreamBillCycleRequest(period=period()))]
        named = [m async for m in stub.StreamBillCycle(bill.StreamBillCycleRequest(
            period=period(), service_point_ids=["SP-SOLAR", "SP-NOPE", "SP-EXCH"]))]
        single = (await stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(
            service_point_id="SP-SOLAR", period=period()))).determinants
    assert [m.service_point_id for m in every] == ["SP-EXCH", "SP-SOLAR"]
    assert all(m.HasField("determinants") and not m.error for m in every)
    assert [m.service_point_id for m in named] == ["SP-SOLAR", "SP-NOPE", "SP-EXCH"]
    assert named[1].error.startswith("UNKNOWN_SERVICE_POINT") and not named[1].HasField("determinants")
    assert named[0].determinants == single == every[1].determinants


async def test_bad_requests_get_precise_statuses(hub: Hub) -> None:
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        stub = bill_grpc.BillingServiceStub(channel)
        cases = [
            (stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(service_point_id="SP-EXCH")),
             grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            (stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(service_point_id="SP-NOPE",
                                                                             period=period())),
             grpc.StatusCode.NOT_FOUND, "UNKNOWN_SERVICE_POINT"),
            (stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(
                service_point_id="SP-EXCH", period=period(), tariff="no-such-tariff")),
             grpc.StatusCode.NOT_FOUND, "UNKNOWN_TARIFF"),
            (stub.SetCriticalPeakEvents(bill.SetCriticalPeakEventsRequest(tariff="test_tou",
                                                                          event_dates=["2026-13-01"])),
             grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        ]
        reversed_period = bill.BillingPeriod(start_time=period().end_time, end_time=period().start_time)
        cases.append((stub.GetBillingDeterminants(bill.GetBillingDeterminantsRequest(
            service_point_id="SP-EXCH", period=reversed_period)),
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_BILLING_PERIOD"))
        for call, code, reason in cases:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await call
            assert failure.value.code() == code, failure.value.details()
            info = error_info(failure.value)
            assert info is not None and info.reason == reason


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_cycle_exports_as_csv_and_json_from_the_cli(sqlite_hub: Hub, tmp_path: Path, fmt: str) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(f'[hub]\nstore = "{sqlite_hub.config.store}"\n'
                      f"[billing.tariffs.test_tou]\n{tariff_toml()}", encoding="utf-8")
    out = tmp_path / f"cycle.{fmt}"
    args = ["billing", "export", "--config", str(config), "--start", "2026-11-02", "--end", "2026-11-05",
            "--time-zone", "America/New_York", "--format", fmt, "--output", str(out)]
    assert await asyncio.to_thread(cli_main, args) == 0
    x = exchange_k()
    exch_total = sum(delivered("M-OLD" if k < x else "M-NEW", k) for k in range(INTERVALS))
    text = out.read_text(encoding="utf-8")
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["service_point_id"] for r in rows} == {"SP-EXCH", "SP-SOLAR"}
        totals = {r["service_point_id"]: r for r in rows if r["rate_period"] == "TOTAL"}
        assert Decimal(totals["SP-EXCH"]["delivered_kwh"]) == Decimal(exch_total) / 1000
        assert totals["SP-EXCH"]["billable"] == "true"
        assert totals["SP-EXCH"]["meter_ids"] == "M-OLD M-NEW"
        # One row per TOU period plus the total, per service point.
        assert len(rows) == 2 * 4
    else:
        by_id = {i["service_point_id"]: i for i in json.loads(text)}
        assert set(by_id) == {"SP-EXCH", "SP-SOLAR"}
        assert by_id["SP-EXCH"]["total_delivered_wh"] == str(exch_total)
        assert by_id["SP-EXCH"]["meter_ids"] == ["M-OLD", "M-NEW"]
        assert by_id["SP-SOLAR"]["net_metered"] is True


def tariff_toml() -> str:
    """TARIFF as TOML, for a hub.toml."""
    rules = "".join(f'[[billing.tariffs.test_tou.tou]]\nperiod = "{r["period"]}"\nday_types = {json.dumps(r["day_types"])}\n'
                    f"hours = {json.dumps(r['hours'])}\n" for r in TARIFF["tou"])  # type: ignore[attr-defined]
    return (f'time_zone = "{TARIFF["time_zone"]}"\nperiods = {json.dumps(TARIFF["periods"])}\n'
            f'default_period = "{TARIFF["default_period"]}"\n'
            "[billing.tariffs.test_tou.demand]\nwindow_minutes = 15\nrolling = false\n" + rules)


async def test_cycle_on_worker_processes_equals_the_in_process_cycle(hub: Hub, engine: Engine,
                                                                    tmp_path: Path) -> None:
    request = bill.StreamBillCycleRequest(period=period())
    async with grpc.aio.insecure_channel(hub.grpc_target) as channel:
        on_workers = [m async for m in bill_grpc.BillingServiceStub(channel).StreamBillCycle(request)]
    assert hub.config.billing.cycle_workers > 0
    config = HubConfig(store=str(tmp_path / "unused"), grpc=GrpcConfig(listen="127.0.0.1:0"),
                       billing=parse_billing_settings({"tariffs": {"test_tou": TARIFF}, "cycle_workers": 0}))
    async with Hub(config, engine=engine) as in_process, grpc.aio.insecure_channel(in_process.grpc_target) as ch:
        here = [m async for m in bill_grpc.BillingServiceStub(ch).StreamBillCycle(request)]
    assert here == on_workers and len(here) == 2
