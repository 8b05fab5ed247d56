"""Reading stored data back through the gRPC API in tests."""

from __future__ import annotations

import grpc

from meterhub.v1 import reading_service_pb2 as rs
from meterhub.v1 import reading_service_pb2_grpc as rs_grpc


async def all_interval_blocks(channel: grpc.aio.Channel,
                              request: rs.ListIntervalBlocksRequest) -> list[rs.StoredIntervalBlock]:
    """Every page of ListIntervalBlocks for ``request`` (its page_token is advanced)."""
    readings = rs_grpc.ReadingServiceStub(channel)
    blocks: list[rs.StoredIntervalBlock] = []
    while True:
        page = await readings.ListIntervalBlocks(request)
        blocks.extend(page.blocks)
        if not page.next_page_token:
            return blocks
        request.page_token = page.next_page_token
