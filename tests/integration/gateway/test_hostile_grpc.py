"""Malformed and oversized input at the gRPC endpoint: clear errors, dead
letters, good data around it still lands, and the hub keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from gateway.api.status import error_info
from gateway.config import GrpcConfig, HubConfig
from gateway.hub import MAX_MESSAGE_BYTES, Hub
from meterhub.v1 import admin_service_pb2 as adm
from meterhub.v1 import admin_service_pb2_grpc as adm_grpc
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import ingest_service_pb2_grpc as ing_grpc
from tests.support.batches import DAY, batch, interval_block


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    async with Hub(HubConfig(store=str(tmp_path / "h.sqlite"), grpc=GrpcConfig(listen="127.0.0.1:0"))) as hub:
        options = [("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]
        async with grpc.aio.insecure_channel(hub.grpc_target, options=options) as ch:
            await adm_grpc.AdminServiceStub(ch).UpsertMeters(adm.UpsertMetersRequest(meters=[adm.Meter(meter_id="M1")]))
            yield ch


def raw_submit(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary("/meterhub.v1.IngestService/SubmitBatch",
                               response_deserializer=ing.SubmitBatchResponse.FromString)


async def dead_letters(channel: grpc.aio.Channel) -> list[adm.DeadLetter]:
    return list((await adm_grpc.AdminServiceStub(channel).ListDeadLetters(adm.ListDeadLettersRequest())).dead_letters)


async def test_malformed_protobuf_is_rejected_with_reason_and_kept(channel: grpc.aio.Channel) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f\x00garbage"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_submit(channel)(garbage)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "MALFORMED_PROTOBUF"  # type: ignore[union-attr]
    (dead,) = await dead_letters(channel)
    assert dead.payload == garbage
    assert dead.reason_code == "MALFORMED_PROTOBUF"


async def test_garbage_mid_stream_keeps_the_batches_before_it(channel: grpc.aio.Channel) -> None:
    good = ing.StreamBatchesRequest(batch=batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 96))).SerializeToString()
    stream = channel.stream_unary("/meterhub.v1.IngestService/StreamBatches",
                                  response_deserializer=ing.StreamBatchesResponse.FromString)

    async def requests() -> AsyncIterator[bytes]:
        yield good
        yield b"\xff\xff\xff"

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream(requests())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The first batch was committed before the garbage arrived.
    again = await ing_grpc.IngestServiceStub(channel).SubmitBatch(ing.SubmitBatchRequest(
        batch=batch(interval_block("M1", DAY + timedelta(minutes=15), [1] * 96))))
    assert again.outcome.intervals_unchanged == 96


async def test_oversized_message_is_refused_and_the_hub_keeps_serving(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_submit(channel)(b"\x0a" + b"\x00" * (MAX_MESSAGE_BYTES + 10))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    outcome = await ing_grpc.IngestServiceStub(channel).SubmitBatch(ing.SubmitBatchRequest(
        batch=batch(interval_block("M1", DAY + timedelta(minutes=15), [2] * 4))))
    assert outcome.outcome.intervals_new == 4


async def test_absurd_block_claims_are_rejected_before_work(channel: grpc.aio.Channel) -> None:
    block = interval_block("M1", DAY + timedelta(minutes=1), [1] * 600_000, interval=60)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ing_grpc.IngestServiceStub(channel).SubmitBatch(ing.SubmitBatchRequest(batch=batch(block)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exceed the limit" in (err.value.details() or "")
