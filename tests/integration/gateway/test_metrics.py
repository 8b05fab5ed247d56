"""Prometheus metrics scraped over HTTP from a running hub."""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import timedelta
from pathlib import Path

import grpc

from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from tests.support.batches import DAY, batch, interval_block


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_ingest_counters_latency_and_lag(tmp_path: Path) -> None:
    config = HubConfig(store=str(tmp_path / "h.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"),
                       metrics_listen="127.0.0.1:0")
    async with Hub(config) as hub, grpc.aio.insecure_channel(hub.grpc_target) as channel:
        await adm_grpc.AdminServiceStub(channel).UpsertMeters(adm.UpsertMetersRequest(meters=[adm.Meter(meter_id="M1")]))
        ingest = ing_grpc.IngestServiceStub(channel)
        b = batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 96), head_end="north")
        await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=b))
        await ingest.SubmitBatch(ing.SubmitBatchRequest(batch=b))
        await hub.port_for("north", "test").dead_letter(b"\x00bad", reason_code="MALFORMED_PAYLOAD", reason="x")
        metrics = await asyncio.to_thread(scrape, hub.metrics_port)
    assert metrics['meterhub_reads_ingested_total{head_end="north",outcome="new"}'] == 96
    assert metrics['meterhub_reads_ingested_total{head_end="north",outcome="unchanged"}'] == 96
    assert metrics['meterhub_batches_total{head_end="north",result="committed"}'] == 2
    assert metrics['meterhub_dead_letters_total{head_end="north",reason_code="MALFORMED_PAYLOAD"}'] == 1
    assert metrics["meterhub_ingest_latency_seconds_count"] == 2
    assert metrics["meterhub_store_up"] == 1
    assert metrics['meterhub_head_end_lag_seconds{head_end="north"}'] > 0
