"""The DLMS/COSEM polling adapter: reads many meters with bounded concurrency.

Per meter and poll, over one association: clock (drift check), energy
registers, profile capture objects and scalers (cached), then load profile
1.0.99.1.0.255 by range from the hub's watermark onward, in chunks of
``max_days_per_read`` days, each submitted as one batch of meter-day blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from adapters.dlms import axdr, normalize, profile
from adapters.dlms.config import DlmsConfig, MeterEndpoint
from adapters.dlms.cosem import (
    CLOCK_OBIS,
    EXPORT_ENERGY_OBIS,
    IMPORT_ENERGY_OBIS,
    AttributeRef,
    CaptureObject,
    ClassId,
    Obis,
    RangeDescriptor,
    ScalerUnit,
    capture_objects_from_data,
    date_time_from_data,
)
from adapters.dlms.errors import (
    DlmsAssociationRejected,
    DlmsConfirmedServiceError,
    DlmsDataAccessError,
    DlmsProtocolError,
    DlmsSecurityError,
    DlmsTemporaryFailure,
    DlmsTransportError,
)
from adapters.dlms.session import SecuritySettings
from adapters.dlms.transport import Association, DlmsClient
from adapters.errors import AdapterError
from adapters.port import IngestPort
from gateway.errors import IngestRejected
from meterhub.v1 import model_pb2 as pb

logger = logging.getLogger(__name__)

ADAPTER_TYPE = "dlms"
REGISTERS = (IMPORT_ENERGY_OBIS, EXPORT_ENERGY_OBIS)


@dataclass(frozen=True, slots=True)
class ProfileMeta:
    capture_objects: tuple[CaptureObject, ...]
    interval_seconds: int
    layout: normalize.ProfileLayout


@dataclass
class PollReport:
    meters_ok: int = 0
    meters_failed: int = 0
    intervals: int = 0
    failures: dict[str, str] = field(default_factory=dict)


class DlmsAdapter:
    def __init__(self, name: str, config: DlmsConfig, port: IngestPort, *,
                 clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.name = name
        self.config = config
        self._port = port
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep
        self._security = SecuritySettings(config.mechanism, config.password, config.keys, config.client_system_title)
        # Per meter: what its profile holds (capture objects rarely change; re-read on error).
        self._profiles: dict[str, ProfileMeta] = {}
        self._register_scalers: dict[tuple[str, Obis], ScalerUnit] = {}

    async def run(self) -> None:
        while True:
            report = await self.poll_once()
            logger.info("%s: poll done, %d meters ok, %d failed, %d intervals", self.name, report.meters_ok,
                        report.meters_failed, report.intervals)
            if self.config.poll_seconds == 0:
                return
            await self._sleep(self.config.poll_seconds)

    async def poll_once(self) -> PollReport:
        report = PollReport()
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(meter: MeterEndpoint) -> None:
            async with limit:
                try:
                    intervals = await self.read_with_retries(meter)
                    report.intervals += intervals
                    report.meters_ok += 1
                except AdapterError as exc:
                    report.meters_failed += 1
                    report.failures[meter.meter_id] = exc.reason

        async with asyncio.TaskGroup() as group:
            for meter in self.config.meters:
                group.create_task(one(meter))
        return report

    async def read_with_retries(self, meter: MeterEndpoint) -> int:
        delay = self.config.backoff_initial_seconds
        for attempt in range(self.config.retries + 1):
            try:
                return await self.read_meter(meter)
            except (DlmsAssociationRejected, DlmsSecurityError) as exc:
                # Wrong credentials do not get better by retrying (and lockouts punish trying).
                logger.error("%s: meter %s refused us: %s", self.name, meter.meter_id, exc)  # noqa: TRY400
                raise
            except (DlmsTransportError, DlmsProtocolError, DlmsTemporaryFailure, DlmsConfirmedServiceError) as exc:
                self._profiles.pop(meter.meter_id, None)
                if attempt == self.config.retries:
                    logger.warning("%s: meter %s failed after %d attempts: %s (%s)", self.name, meter.meter_id,
                                   attempt + 1, exc, exc.reason)
                    raise
                logger.info("%s: meter %s attempt %d failed (%s); retrying in %.1f s", self.name, meter.meter_id,
                            attempt + 1, exc.reason, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.config.backoff_max_seconds)
        raise AssertionError("unreachable")

    def _association(self, meter: MeterEndpoint) -> Association:
        c = self.config
        return Association(meter.host, meter.port, self._security, client_wport=c.client_wport,
                           server_wport=c.server_wport, max_pdu_size=c.max_pdu_size,
                           connect_timeout=c.connect_timeout_seconds, response_timeout=c.response_timeout_seconds,
                           max_response_bytes=c.max_response_bytes)

    async def read_meter(self, meter: MeterEndpoint) -> int:
        """One association: returns the number of interval values submitted."""
        async with self._association(meter) as client:
            now = self._clock().astimezone(UTC)
            meter_time, _status = date_time_from_data(axdr.decode(
                await client.get(AttributeRef(ClassId.CLOCK, CLOCK_OBIS, 2))))
            drift = normalize.clock_drift_event(meter.meter_id, meter_time, now, self.config.clock_tolerance_seconds)
            if drift is not None:
                logger.warning("%s: meter %s clock off by %s s", self.name, meter.meter_id,
                               drift.details["drift_seconds"])
            first = pb.ReadingBatch(meter_events=[drift] if drift is not None else [])
            if self.config.read_registers:
                read_time = now if drift is not None else meter_time
                for obis in REGISTERS:
                    read = await self._register(client, meter.meter_id, obis, read_time)
                    if read is not None:
                        first.register_reads.append(read)
            meta = self._profiles.get(meter.meter_id) or await self._profile_meta(client, meter.meter_id)
            extra_quality = pb.QUALITY_FLAG_CLOCK_SET if drift is not None else 0
            return await self._read_profile(client, meter.meter_id, meta, now, first, extra_quality)

    async def _register(self, client: DlmsClient, meter_id: str, obis: Obis, read_time: datetime
                        ) -> pb.RegisterRead | None:
        key = (meter_id, obis)
        try:
            value = axdr.decode(await client.get(AttributeRef(ClassId.REGISTER, obis, 2))).integer
            scaler = self._register_scalers.get(key)
            if scaler is None:
                scaler = ScalerUnit.from_data(axdr.decode(await client.get(AttributeRef(ClassId.REGISTER, obis, 3))))
                self._register_scalers[key] = scaler
        except DlmsDataAccessError as exc:
            if isinstance(exc, DlmsTemporaryFailure):
                raise
            logger.info("meter %s has no register %s (%s)", meter_id, obis, exc.reason)
            return None
        return normalize.register_read(meter_id, obis, value, scaler, read_time)

    async def _profile_meta(self, client: DlmsClient, meter_id: str) -> ProfileMeta:
        obis = self.config.profile_obis
        captures = capture_objects_from_data(axdr.decode(
            await client.get(AttributeRef(ClassId.PROFILE_GENERIC, obis, 3))))
        period = axdr.decode(await client.get(AttributeRef(ClassId.PROFILE_GENERIC, obis, 4))).integer
        if period <= 0 or 86400 % period:
            raise DlmsProtocolError(f"capture period {period} s does not divide a day", reason="DLMS_BAD_VALUE")
        scalers: dict[Obis, ScalerUnit] = {}
        for capture in captures:
            if capture.class_id in (ClassId.REGISTER, ClassId.EXTENDED_REGISTER) and capture.attribute == 2:
                scalers[capture.obis] = ScalerUnit.from_data(axdr.decode(
                    await client.get(AttributeRef(capture.class_id, capture.obis, 3))))
        try:
            layout = normalize.profile_layout(captures, scalers)
        except ValueError as exc:
            raise DlmsProtocolError(str(exc), reason="DLMS_BAD_PROFILE") from exc
        meta = ProfileMeta(captures, period, layout)
        self._profiles[meter_id] = meta
        return meta

    async def _start(self, meter_id: str, meta: ProfileMeta, now: datetime) -> datetime:
        """End of the last interval we have for every channel (the oldest of them)."""
        marks = [await self._port.watermark(meter_id, rt, meta.interval_seconds) for _, _, rt in meta.layout.channels]
        known = [m for m in marks if m is not None]
        if len(known) == len(marks) and known:
            return min(known).astimezone(UTC)
        if self.config.start is not None:
            default = self.config.start
        else:
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            default = midnight - timedelta(days=self.config.history_days)
        return min([default, *known]) if known else default

    async def _read_profile(self, client: DlmsClient, meter_id: str, meta: ProfileMeta, now: datetime,
                            first: pb.ReadingBatch, extra_quality: int) -> int:
        step = timedelta(seconds=meta.interval_seconds)
        cursor = await self._start(meter_id, meta, now) + step
        chunk = timedelta(days=self.config.max_days_per_read)
        batch: pb.ReadingBatch | None = first
        total = 0
        while cursor <= now or batch is not None:
            end = min(cursor + chunk - step, now)
            out = batch or pb.ReadingBatch()
            batch = None
            if cursor <= end:
                raw = await client.get(AttributeRef(ClassId.PROFILE_GENERIC, self.config.profile_obis, 2),
                                       RangeDescriptor(cursor, end))
                columns = profile.decode_buffer(raw)
                out.interval_blocks.extend(normalize.interval_blocks(
                    meter_id, columns, meta.layout, meta.interval_seconds, extra_quality))
                out.meter_events.extend(normalize.power_fail_events(meter_id, columns, meta.layout))
            cursor = end + step
            if out.interval_blocks or out.register_reads or out.meter_events:
                total += await self._submit(meter_id, out)
        return total

    async def _submit(self, meter_id: str, batch: pb.ReadingBatch) -> int:
        batch.source.head_end = self.name
        batch.source.adapter_type = ADAPTER_TYPE
        intervals = sum(len(b.values) for b in batch.interval_blocks)
        try:
            await self._port.submit(batch)
        except IngestRejected as exc:
            logger.warning("%s: batch of meter %s rejected: %s", self.name, meter_id, exc)
            await self._port.dead_letter(batch.SerializeToString(), reason_code=exc.reason, reason=str(exc),
                                         content_type="application/x-protobuf; messageType=meterhub.v1.ReadingBatch")
            return 0
        return intervals
