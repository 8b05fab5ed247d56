"""ReadingService: list, export and subscribe to stored interval data."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from sqlalchemy import Engine

from gateway.api.pagination import InvalidArgument, decode_token, encode_token, fingerprint, page_size
from gateway.api.status import maps_errors, maps_stream_errors
from gateway.feed import read_feed, reading_type_of, stored_block
from gateway.ingest import SECONDS_PER_DAY
from gateway.pipeline import IngestPipeline
from meterhub.v1 import model_pb2 as pb
from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc
from store import repository as repo

logger = logging.getLogger(__name__)

EXPORT_CHUNK = 500
SUBSCRIBE_POLL_SECONDS = 1.0


def _us(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


class ReadingServicer(rs_grpc.ReadingServiceServicer):
    def __init__(self, engine: Engine, pipeline: IngestPipeline) -> None:
        self._engine = engine
        self._pipeline = pipeline

    def _range(self, f: rs.IntervalBlockFilter) -> tuple[int, int]:
        if not f.HasField("start_time") or not f.HasField("end_time"):
            raise InvalidArgument("filter.start_time and filter.end_time are required")
        start, end = f.start_time.seconds, f.end_time.seconds
        if end <= start:
            raise InvalidArgument("filter.end_time must be after filter.start_time")
        return start, end

    def _page(self, f: rs.IntervalBlockFilter, after: tuple[int, int] | None,
              limit: int) -> list[tuple[tuple[int, int], rs.StoredIntervalBlock]]:
        """((channel_id, day), block) of the next rows after the key, trimmed to the range."""
        start, end = self._range(f)
        # Days holding intervals that end in (start, end].
        first_day = start // SECONDS_PER_DAY
        last_day = (end - 1) // SECONDS_PER_DAY
        with self._engine.connect() as conn:
            channel_ids = repo.find_channels(conn, list(f.meter_ids), f.flow_direction, f.kind)
            channel_ids = [c for c in channel_ids if after is None or c >= after[0]]
            if not channel_ids:
                return []
            rows = repo.query_blocks(conn, channel_ids, first_day, last_day, after, limit)
            infos = repo.channel_infos(conn, sorted({r[0] for r in rows}))
        return [((r[0], r[1]), stored_block(infos[r[0]], r[1], r[2], r[3], r[4], r[5], r[6], start, end))
                for r in rows]

    @maps_errors
    async def ListIntervalBlocks(self, request: rs.ListIntervalBlocksRequest,
                                 context: grpc.aio.ServicerContext[Any, Any]) -> rs.ListIntervalBlocksResponse:
        size = page_size(request.page_size)
        fp = fingerprint(request.filter.SerializeToString(deterministic=True))
        key = decode_token(request.page_token, fp)
        after = (int(key[0]), int(key[1])) if key else None  # type: ignore[call-overload]
        rows = await asyncio.to_thread(self._page, request.filter, after, size + 1)
        response = rs.ListIntervalBlocksResponse()
        if len(rows) > size:
            rows = rows[:size]
            response.next_page_token = encode_token(list(rows[-1][0]), fp)
        response.blocks.extend(block for _key, block in rows if block.block.values)
        return response

    @maps_stream_errors
    async def ExportIntervalBlocks(self, request: rs.ExportIntervalBlocksRequest,
                                   context: grpc.aio.ServicerContext[Any, Any],
                                   ) -> AsyncIterator[rs.ExportIntervalBlocksResponse]:
        after: tuple[int, int] | None = None
        while True:
            rows = await asyncio.to_thread(self._page, request.filter, after, EXPORT_CHUNK)
            if not rows:
                return
            yield rs.ExportIntervalBlocksResponse(blocks=[b for _key, b in rows if b.block.values])
            if len(rows) < EXPORT_CHUNK:
                return
            after = rows[-1][0]

    @maps_stream_errors
    async def SubscribeIntervalBlocks(self, request: rs.SubscribeIntervalBlocksRequest,
                                      context: grpc.aio.ServicerContext[Any, Any],
                                      ) -> AsyncIterator[rs.SubscribeIntervalBlocksResponse]:
        meter_filter = set(request.meter_ids)
        if request.cursor:
            try:
                seq = int(request.cursor)
            except ValueError:
                raise InvalidArgument(f"cursor {request.cursor!r} is not a cursor this service issued") from None
        else:
            seq = await asyncio.to_thread(self._last_seq)
        while True:
            changes = await asyncio.to_thread(read_feed, self._engine, seq, EXPORT_CHUNK)
            for cursor, block in changes:
                seq = cursor
                if meter_filter and block.block.meter_id not in meter_filter:
                    continue
                yield rs.SubscribeIntervalBlocksResponse(block=block, cursor=str(cursor))
            if not changes:
                # Commits in this process wake us at once; the poll covers other instances.
                await self._pipeline.wait_for_commit(SUBSCRIBE_POLL_SECONDS)

    def _last_seq(self) -> int:
        with self._engine.connect() as conn:
            return repo.last_change_seq(conn)

    @maps_errors
    async def ListRegisterReads(self, request: rs.ListRegisterReadsRequest,
                                context: grpc.aio.ServicerContext[Any, Any]) -> rs.ListRegisterReadsResponse:
        if not request.HasField("start_time") or not request.HasField("end_time"):
            raise InvalidArgument("start_time and end_time are required")
        size = page_size(request.page_size)
        fp = fingerprint(list(request.meter_ids), _us(request.start_time), _us(request.end_time))
        key = decode_token(request.page_token, fp)
        after = (int(key[0]), int(key[1])) if key else None  # type: ignore[call-overload]

        def load() -> tuple[list[tuple[int, int, int, int, int]], dict[int, repo.ChannelInfo]]:
            with self._engine.connect() as conn:
                rows = repo.query_register_reads(conn, list(request.meter_ids), _us(request.start_time),
                                                 _us(request.end_time), after, size + 1)
                return rows, repo.channel_infos(conn, sorted({r[0] for r in rows}))

        rows, infos = await asyncio.to_thread(load)
        response = rs.ListRegisterReadsResponse()
        if len(rows) > size:
            rows = rows[:size]
            response.next_page_token = encode_token([rows[-1][0], rows[-1][1]], fp)
        for channel_id, t_us, value, quality, version in rows:
            info = infos[channel_id]
            read = pb.RegisterRead(meter_id=info.meter_id, reading_type=reading_type_of(info), value=value,
                                   quality=quality, meter_multiplier_applied=True)
            read.read_time.FromMicroseconds(t_us)
            response.reads.add(read=read, channel_id=channel_id, version=version)
        return response

    @maps_errors
    async def ListMeterEvents(self, request: rs.ListMeterEventsRequest,
                              context: grpc.aio.ServicerContext[Any, Any]) -> rs.ListMeterEventsResponse:
        if not request.HasField("start_time") or not request.HasField("end_time"):
            raise InvalidArgument("start_time and end_time are required")
        size = page_size(request.page_size)
        fp = fingerprint(list(request.meter_ids), _us(request.start_time), _us(request.end_time))
        key = decode_token(request.page_token, fp)
        after_id = int(key[0]) if key else 0  # type: ignore[call-overload]

        def load() -> list[tuple[int, str, int, int, str, str]]:
            with self._engine.connect() as conn:
                return repo.query_events(conn, list(request.meter_ids), _us(request.start_time),
                                         _us(request.end_time), after_id, size + 1)

        rows = await asyncio.to_thread(load)
        response = rs.ListMeterEventsResponse()
        if len(rows) > size:
            rows = rows[:size]
            response.next_page_token = encode_token([rows[-1][0]], fp)
        for _id, meter_id, t_us, event_type, cim_code, details in rows:
            ev = response.events.add(meter_id=meter_id, type=event_type, cim_code=cim_code)  # type: ignore[arg-type]
            ev.event_time.FromMicroseconds(t_us)
            ev.details.update(json.loads(details))
        return response
