"""Our adapter reads our simulator into the real hub; gRPC gives back what the meters generated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.dlms import DlmsAdapter, parse_config
from gateway.config import GrpcConfig, HubConfig
from gateway.hub import Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from simulators.dlms.model import Faults
from simulators.dlms.server import MeterFleet, SimulatorConfig

NOW = datetime(2026, 3, 3, 0, 0, 7, tzinfo=UTC)
HISTORY = datetime(2026, 3, 1, tzinfo=UTC)


def frozen() -> datetime:
    return NOW


async def test_simulator_to_hub_to_grpc(tmp_path: Path) -> None:
    sim = SimulatorConfig(meters=3, history_start=HISTORY, faults=Faults(power_fail_rate=0.03))
    hub_config = HubConfig(store=str(tmp_path / "hub.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"))
    async with MeterFleet(sim, clock=frozen) as fleet, Hub(hub_config) as hub, \
            grpc.aio.insecure_channel(hub.grpc_target) as channel:
        meters = [e.meter_id for e in fleet.endpoints]
        await adm_grpc.AdminServiceStub(channel).UpsertMeters(
            adm.UpsertMetersRequest(meters=[adm.Meter(meter_id=m) for m in meters]))
        config = parse_config({"type": "dlms", "poll_seconds": 0, "start": HISTORY.isoformat(),
                               "meters": [{"meter_id": e.meter_id, "port": e.port} for e in fleet.endpoints]})
        adapter = DlmsAdapter("dlms-north", config, hub.port_for("dlms-north", "dlms"), clock=frozen)
        await adapter.run()
        # A second poll starts at the hub's watermark and finds nothing new.
        again = await adapter.poll_once()
        assert (again.meters_ok, again.intervals) == (3, 0)

        readings = rs_grpc.ReadingServiceStub(channel)
        request = rs.ListIntervalBlocksRequest(page_size=1000, filter=rs.IntervalBlockFilter(
            meter_ids=meters, flow_direction=pb.FLOW_DIRECTION_DELIVERED))
        request.filter.start_time.FromDatetime(HISTORY)
        request.filter.end_time.FromDatetime(NOW)
        page = await readings.ListIntervalBlocks(request)
        reads = await readings.ListRegisterReads(rs.ListRegisterReadsRequest(
            meter_ids=meters, start_time=_ts(NOW - timedelta(hours=1)), end_time=_ts(NOW + timedelta(hours=1))))

    stored: dict[str, dict[int, tuple[int, int]]] = {}
    for item in page.blocks:
        block = item.block
        first = int(block.first_interval_end_time.seconds)
        for i, value in enumerate(block.values):
            quality = block.qualities[i] if block.qualities else 0
            stored.setdefault(block.meter_id, {})[first + i * block.interval_seconds] = (value, quality)
    for meter in meters:
        rows = fleet.model.rows(meter, int(HISTORY.timestamp()) + 900, int(NOW.timestamp()))
        assert {t: v for t, (v, _q) in stored[meter].items()} == {
            int(t): int(v) for t, v in zip(rows.ends, rows.import_wh, strict=True)}
        power_failed = {int(t) for t, s in zip(rows.ends, rows.status, strict=True) if s & 0x80}
        assert power_failed
        assert {t for t, (_v, q) in stored[meter].items() if q & pb.QUALITY_FLAG_POWER_FAIL} == power_failed
    registers = {(r.read.meter_id, r.read.reading_type.device_channel): r.read.value for r in reads.reads}
    for meter in meters:
        assert registers[(meter, "1.0.1.8.0.255")] == fleet.model.registers(meter, NOW)[0]


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
