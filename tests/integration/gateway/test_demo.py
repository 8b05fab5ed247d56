"""`meterhub demo` end to end with small fleets: every simulator starts, every
fleet is read completely through its adapter, and the summary is printed."""

from __future__ import annotations

import io
from pathlib import Path

from gateway.demo import FLEETS, prepare_workdir, run_demo


async def test_demo_reads_every_fleet_and_summarises(tmp_path: Path) -> None:
    out = io.StringIO()
    workdir = tmp_path / "demo"
    prepare_workdir(workdir)
    code = await run_demo(workdir, meters=60, fleet_meters=5, days=1, out=out)
    text = out.getvalue()
    assert code == 0, text
    for name, _kind in FLEETS:
        assert name in text
    assert "Reads stored per source" in text
    assert "Rejected payloads" in text
    assert "Sample query through gRPC" in text
    assert "exception items opened" in text
    # The demo ends with real determinants: one service point per fleet plus a
    # meter exchange, every one complete and billable.
    billing = text.split("BillingService.StreamBillCycle(", 1)[1].splitlines()
    assert billing[0].startswith(f"{len(FLEETS) + 1} service points")
    rows = [line.split() for line in billing[2:2 + len(FLEETS) + 1]]
    assert [r[0] for r in rows] == [f"SP-{name.upper()}" for name, _ in FLEETS] + ["SP-EXCHANGE"]
    assert all(r[-1] == "yes" for r in rows), billing
    assert rows[-1][1:3] == ["MQTT-000002,", "MQTT-000003"]
    assert all(float(r[2 if r[0] != "SP-EXCHANGE" else 3].replace(",", "")) > 0 for r in rows)
    assert (workdir / "hub.toml").is_file()
