"""The watched drop directory: files end in done/ or failed/ with a reason."""

from __future__ import annotations

import os
from pathlib import Path

from adapters.cim import create_adapter
from adapters.cim.adapter import DropDirectory
from simulators.cim.faults import FaultPlan
from simulators.cim.fleet import Fleet
from simulators.cim.headend import HeadEnd
from tests.integration.cim.conftest import START, stored_intervals
from tests.support.recording_port import RecordingPort


def drop(directory: Path, port: RecordingPort) -> DropDirectory:
    adapter = create_adapter("files", {"type": "cim", "drop_dir": str(directory), "drop_poll_seconds": 0.01,
                                       "batch_max_reads": 500}, port)
    assert adapter.drop is not None
    return adapter.drop


async def test_files_are_ingested_and_moved_to_done(tmp_path: Path, port: RecordingPort) -> None:
    fleet = Fleet(30, START, 2)
    written = HeadEnd(fleet).write_files(tmp_path, meters_per_file=12)
    watcher = drop(tmp_path, port)
    assert await watcher.scan_once() == 0  # first sighting: the writer may still be busy
    assert await watcher.scan_once() == len(written) == 6
    assert sorted(os.listdir(watcher.done)) == sorted(p.name for p in written)
    assert not any(name.endswith(".xml") for name in os.listdir(tmp_path))
    assert stored_intervals(port) == fleet.meters * fleet.intervals_per_meter
    assert port.interval_values("CIM-000030") == fleet.expected("CIM-000030")
    assert len(port.batches) > len(written)  # batch_max_reads splits files into several batches


async def test_bad_readings_land_the_rest_and_the_file_goes_to_failed(tmp_path: Path, port: RecordingPort,
                                                                      fleet: Fleet) -> None:
    faults = FaultPlan({"bad-quality": 0.25}, seed=5)
    HeadEnd(fleet, faults=faults).write_files(tmp_path, meters_per_file=100)
    watcher = drop(tmp_path, port)
    await watcher.scan_once()
    await watcher.scan_once()
    (failed,) = [p for p in watcher.failed.iterdir() if p.suffix == ".xml"]
    reason = (watcher.failed / f"{failed.name}.reason").read_text()
    damaged = faults.log.damaged_meters
    assert f"{len(damaged)} problem(s); {fleet.meters - len(damaged)} MeterReadings were ingested" in reason
    assert "BAD_QUALITY_CODE" in reason and "ReadingQualityType '1.4'" in reason
    for meter in fleet.meter_ids:
        assert port.interval_values(meter) == ({} if meter in damaged else fleet.expected(meter))
    assert len(port.dead_letters) == len(damaged)


async def test_malformed_file_keeps_what_came_before_the_break(tmp_path: Path, port: RecordingPort,
                                                               fleet: Fleet) -> None:
    (path,) = HeadEnd(fleet).write_files(tmp_path, meters_per_file=100)
    data = path.read_bytes()
    cut = data.index(b"CIM-000011")  # inside the 11th MeterReading
    path.write_bytes(data[:cut] + b"<<garbage")
    watcher = drop(tmp_path, port)
    await watcher.scan_once()
    await watcher.scan_once()
    reason = (watcher.failed / f"{path.name}.reason").read_text()
    assert "XML_MALFORMED" in reason and "10 MeterReadings were ingested" in reason
    assert sorted({b.meter_id for batch in port.batches for b in batch.interval_blocks}) == list(fleet.meter_ids[:10])
    (dead,) = port.dead_letters
    assert dead.reason_code == "XML_MALFORMED"
    assert dead.payload == data[:cut] + b"<<garbage"
    assert "10 MeterReadings taken before it" in dead.reason


async def test_xxe_file_is_refused(tmp_path: Path, port: RecordingPort) -> None:
    (tmp_path / "evil.xml").write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY s SYSTEM "file:///etc/passwd">]>'
        b'<MeterReadings xmlns="http://iec.ch/TC57/2011/MeterReadings#">&s;</MeterReadings>')
    watcher = drop(tmp_path, port)
    await watcher.scan_once()
    await watcher.scan_once()
    assert "XML_FORBIDDEN" in (watcher.failed / "evil.xml.reason").read_text()
    assert port.batches == []
