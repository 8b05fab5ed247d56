"""The narrow port the gateway hands each adapter, and the adapter plugin contract.

Adapters never touch the store or VEE: they submit canonical batches (awaiting
the commit), ask a channel's watermark so polling reads only what is new, and
hand undecodable input to the dead-letter store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from meterhub.v1 import model_pb2


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    """What a committed batch changed (mirrors meterhub.v1.IngestOutcome)."""

    intervals_new: int = 0
    intervals_revised: int = 0
    intervals_unchanged: int = 0
    register_reads_new: int = 0
    register_reads_unchanged: int = 0
    meter_events_new: int = 0
    duplicate_batch: bool = False


class IngestPort(Protocol):
    """What an adapter may ask of the hub."""

    async def submit(self, batch: model_pb2.ReadingBatch) -> SubmitOutcome:
        """Store the batch atomically; returns only after commit.

        Raises gateway.errors.IngestRejected (unknown meter, misaligned interval,
        malformed batch): nothing of the batch was written.
        """
        ...

    async def watermark(self, meter_id: str, reading_type: model_pb2.ReadingType,
                        interval_seconds: int) -> datetime | None:
        """End time (UTC) of the last stored interval of the channel, or None."""
        ...

    async def dead_letter(self, payload: bytes, *, reason_code: str, reason: str,
                          content_type: str = "application/octet-stream") -> None:
        """Keep rejected bytes with the reason, for an operator to inspect."""
        ...


class Adapter(Protocol):
    """A running source of batches."""

    async def run(self) -> None:
        """Read until cancelled. Must survive peer errors (retry with backoff)."""
        ...


class AdapterFactory(Protocol):
    """The object an entry point in group ``meterhub.adapters`` names.

    ``config`` is the source's table from hub.toml (its ``type`` key included);
    the factory validates it and raises gateway.errors.ConfigError naming the
    wrong key. ``name`` is the head-end name to put in ReadingBatch.source.
    """

    def __call__(self, name: str, config: Mapping[str, Any], port: IngestPort) -> Adapter: ...
