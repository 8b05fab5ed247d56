"""Outbound integrations: stored data pushed to other systems as it commits.

Each sink follows the change feed (the same one ReadingService.Subscribe
serves) from a cursor kept in the store, so a restart resumes where it left
off and a peer that is down delays delivery instead of losing it.

    [outbound.mdm-cim]
    type = "cim"                  # IEC 61968-9 MeterReadings `created` events
    url = "https://mdm.example/cim"
    binding = "soap11"
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, select

from gateway.errors import ConfigError
from gateway.feed import read_feed
from gateway.pipeline import IngestPipeline
from store import schema as s

logger = logging.getLogger(__name__)

BLOCKS_PER_EVENT = 200
RETRY_SECONDS = (1.0, 60.0)


def _cursor(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(select(s.outbound_cursors.c.seq).where(s.outbound_cursors.c.name == name)).scalar()
    return int(value or 0)


def _save_cursor(engine: Engine, name: str, seq: int) -> None:
    c = s.outbound_cursors
    with engine.begin() as conn:
        if conn.execute(c.update().where(c.c.name == name).values(seq=seq)).rowcount == 0:
            conn.execute(c.insert().values(name=name, seq=seq))


class CimOutbound:
    """Sends committed blocks as `created` MeterReadings events."""

    def __init__(self, name: str, settings: Mapping[str, Any], engine: Engine, pipeline: IngestPipeline) -> None:
        from adapters.cim import EventSender, parse_outbound_config

        table = {k: v for k, v in settings.items() if k != "type"}
        self.name = name
        self._sender = EventSender(parse_outbound_config(table))
        self._engine = engine
        self._pipeline = pipeline

    async def run(self) -> None:
        seq = await asyncio.to_thread(_cursor, self._engine, self.name)
        delay = RETRY_SECONDS[0]
        try:
            while True:
                feed = await asyncio.to_thread(read_feed, self._engine, seq, BLOCKS_PER_EVENT)
                if not feed:
                    await self._pipeline.wait_for_commit(1.0)
                    continue
                try:
                    await self._sender.send([stored.block for _cursor_seq, stored in feed])
                except Exception as exc:  # noqa: BLE001 - any failure: keep the cursor, retry later
                    logger.warning("outbound %s: delivery failed (%s); retrying in %.0f s", self.name, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_SECONDS[1])
                    continue
                delay = RETRY_SECONDS[0]
                seq = feed[-1][0]
                await asyncio.to_thread(_save_cursor, self._engine, self.name, seq)
        finally:
            await self._sender.close()


def build_outbound(name: str, settings: Mapping[str, Any], engine: Engine, pipeline: IngestPipeline) -> CimOutbound:
    kind = settings.get("type")
    if kind == "cim":
        return CimOutbound(name, settings, engine, pipeline)
    raise ConfigError(f"outbound.{name}.type must be \"cim\", got {kind!r}", metadata={"key": f"outbound.{name}.type"})
