"""Large files stream in bounded memory; bad parts go to the dead-letter store."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

from adapters.cim.normalize import MappingOptions, MeterReadingMapper
from adapters.cim.reader import next_chunk, read_message
from simulators.cim.faults import FaultPlan
from simulators.cim.fleet import Fleet
from simulators.cim.headend import HeadEnd
from tests.integration.cim.conftest import START
from tests.integration.cim.test_drop_dir import drop
from tests.support.recording_port import RecordingPort


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def test_multi_megabyte_file_parses_in_bounded_memory(tmp_path: Path) -> None:
    fleet = Fleet(800, START, 1)
    (path,) = HeadEnd(fleet).write_files(tmp_path, meters_per_file=800)
    size = path.stat().st_size
    assert size > 8 * 1024 * 1024
    rss_before = rss_bytes()
    tracemalloc.start()
    try:
        intervals = 0
        with path.open("rb") as handle:
            items = read_message(handle, MeterReadingMapper(MappingOptions()))
            while True:
                chunk = next_chunk(items, 5000)
                intervals += sum(m.readings.interval_count for m in chunk.mapped)
                if chunk.done:
                    break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = rss_bytes() - rss_before
    assert intervals == fleet.meters * fleet.intervals_per_meter
    # Python-side peak: a chunk of protobufs, never the document.
    assert peak < size / 4, (peak, size)
    # libxml2's tree is invisible to tracemalloc; a whole tree would cost several times the file.
    assert rss_growth < size, (rss_growth, size)


async def test_file_with_bad_readings_lands_the_good_ones(tmp_path: Path) -> None:
    port = RecordingPort()
    fleet = Fleet(200, START, 1)
    faults = FaultPlan({"bad-code": 0.05, "bad-quality": 0.05}, seed=11)
    HeadEnd(fleet, faults=faults).write_files(tmp_path, meters_per_file=200)
    watcher = drop(tmp_path, port)
    await watcher.scan_once()
    await watcher.scan_once()
    damaged = faults.log.damaged_meters
    assert 0 < len(damaged) < 40
    stored = {b.meter_id for batch in port.batches for b in batch.interval_blocks}
    assert stored == set(fleet.meter_ids) - damaged
    assert {d.reason_code for d in port.dead_letters} == {"BAD_READING_TYPE", "BAD_QUALITY_CODE"}
    for dead in port.dead_letters:
        assert dead.payload.startswith(b"<m:MeterReading") and dead.content_type == "application/xml"
        assert "MeterReading #" in dead.reason
    await asyncio.sleep(0)
