from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.cim import CimAdapter, create_adapter
from simulators.cim.fleet import Fleet
from tests.support.net import free_port
from tests.support.recording_port import RecordingPort

START = datetime(2026, 11, 1, tzinfo=UTC)
AdapterRunner = Callable[..., Any]


@pytest.fixture
def port() -> RecordingPort:
    return RecordingPort()


@pytest.fixture
def fleet() -> Fleet:
    return Fleet(20, START, 1)


@asynccontextmanager
async def running(config: dict[str, Any], port: RecordingPort) -> AsyncIterator[CimAdapter]:
    adapter = create_adapter("cim-test", {"type": "cim", **config}, port)
    task = asyncio.create_task(adapter.run())
    await asyncio.wait_for(adapter.started.wait(), 5)
    try:
        yield adapter
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def endpoint_config() -> dict[str, Any]:
    return {"listen": f"127.0.0.1:{free_port()}"}


def url_of(adapter: CimAdapter) -> str:
    assert adapter.endpoint is not None
    return f"http://127.0.0.1:{adapter.endpoint.server.port}/cim/MeterReadings"


def stored_intervals(port: RecordingPort) -> int:
    return sum(len(b.values) for batch in port.batches for b in batch.interval_blocks)
