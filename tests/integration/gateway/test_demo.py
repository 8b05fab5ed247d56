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
