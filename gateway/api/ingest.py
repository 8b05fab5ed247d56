"""IngestService: canonical batches pushed straight into the pipeline.

Requests arrive as raw bytes and are parsed here, not by gRPC, so a malformed
protobuf gets INVALID_ARGUMENT with reason MALFORMED_PROTOBUF (instead of
gRPC's generic INTERNAL) and its bytes are kept in the dead-letter store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from adapters.port import SubmitOutcome
from gateway.api.status import maps_errors
from gateway.errors import IngestRejected
from gateway.pipeline import IngestPipeline
from meterhub.v1 import ingest_service_pb2 as ing
from meterhub.v1 import model_pb2 as pb

API_HEAD_END = "grpc"
SERVICE = "meterhub.v1.IngestService"
M = TypeVar("M", bound=Message)


def outcome_message(outcome: SubmitOutcome) -> ing.IngestOutcome:
    return ing.IngestOutcome(
        intervals_new=outcome.intervals_new, intervals_revised=outcome.intervals_revised,
        intervals_unchanged=outcome.intervals_unchanged, register_reads_new=outcome.register_reads_new,
        register_reads_unchanged=outcome.register_reads_unchanged, meter_events_new=outcome.meter_events_new,
        duplicate_batch=outcome.duplicate_batch,
    )


class IngestServicer:
    def __init__(self, pipeline: IngestPipeline) -> None:
        self._pipeline = pipeline

    async def _parse(self, raw: bytes, kind: type[M]) -> M:
        try:
            return kind.FromString(raw)
        except DecodeError as exc:
            await self._pipeline.dead_letter(API_HEAD_END, "grpc", raw, reason_code="MALFORMED_PROTOBUF",
                                             reason=f"not a {kind.DESCRIPTOR.full_name}: {exc}",
                                             content_type="application/x-protobuf")
            raise IngestRejected(f"request is not a valid {kind.DESCRIPTOR.full_name} ({exc}); "
                                 "its bytes were kept in the dead-letter store", reason="MALFORMED_PROTOBUF") from None

    def _batch(self, request: ing.SubmitBatchRequest | ing.StreamBatchesRequest) -> pb.ReadingBatch:
        if not request.HasField("batch"):
            raise IngestRejected("request.batch is required")
        batch = request.batch
        if not batch.source.head_end:
            batch.source.head_end = API_HEAD_END
        if not batch.source.adapter_type:
            batch.source.adapter_type = "grpc"
        return batch

    @maps_errors
    async def SubmitBatch(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> ing.SubmitBatchResponse:
        request = await self._parse(raw, ing.SubmitBatchRequest)
        outcome = await self._pipeline.submit(self._batch(request))
        return ing.SubmitBatchResponse(outcome=outcome_message(outcome))

    @maps_errors
    async def StreamBatches(self, request_iterator: AsyncIterator[bytes],
                            context: grpc.aio.ServicerContext[Any, Any]) -> ing.StreamBatchesResponse:
        total = ing.IngestOutcome()
        committed = 0
        async for raw in request_iterator:
            request = await self._parse(raw, ing.StreamBatchesRequest)
            outcome = outcome_message(await self._pipeline.submit(self._batch(request)))
            for field in ("intervals_new", "intervals_revised", "intervals_unchanged", "register_reads_new",
                          "register_reads_unchanged", "meter_events_new"):
                setattr(total, field, getattr(total, field) + getattr(outcome, field))
            committed += 1
        return ing.StreamBatchesResponse(batches_committed=committed, outcome=total)

    def handler(self) -> grpc.GenericRpcHandler:
        """The service's handlers, taking requests as bytes."""
        return grpc.method_handlers_generic_handler(SERVICE, {
            "SubmitBatch": grpc.unary_unary_rpc_method_handler(
                self.SubmitBatch, response_serializer=ing.SubmitBatchResponse.SerializeToString),
            "StreamBatches": grpc.stream_unary_rpc_method_handler(
                self.StreamBatches, response_serializer=ing.StreamBatchesResponse.SerializeToString),
        })
