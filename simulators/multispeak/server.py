"""The head-end: an MR_Server SOAP endpoint over a deterministic fleet, with fault injection
and the asynchronous callbacks (CB_Server) of InitiateMeterReadingsByMeterID.

Requests are parsed with the adapter's hardened parser and decoded by zeep from our WSDL
subset; responses are serialised by zeep from the same WSDL.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from adapters.multispeak.errors import MultiSpeakProtocolError
from adapters.multispeak.http_server import HttpRequest, HttpResponse, HttpServer
from adapters.multispeak.soap import CB_SERVER, MR_SERVER, MessageHeader, MultiSpeakCodec, error_objects
from simulators.multispeak.fleet import FleetData, wh_text

logger = logging.getLogger(__name__)

STATUS_DELIMITER = ","
INTERVAL_DELIMITER = ";"
PROFILE_ID = "LP15"
XXE_PAYLOAD = (b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
               b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&xxe;'
               b"</soap:Body></soap:Envelope>")


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection; rates are probabilities per interval, block or response."""

    # Interval values left empty in the delimited string (the adapter flags them MISSING).
    missing_interval_rate: float = 0.0
    # Blocks whose first value is not a number (the adapter dead-letters that block only).
    bad_block_rate: float = 0.0
    # Responses cut in half (not well-formed XML).
    malformed_rate: float = 0.0
    # Responses replaced by a soap:Server fault.
    soap_fault_rate: float = 0.0
    # Responses replaced by an XXE document (a DTD with an external entity).
    xxe_rate: float = 0.0
    # Responses delayed by slow_seconds.
    slow_rate: float = 0.0
    slow_seconds: float = 0.0


@dataclass
class SimulatorStats:
    requests: int = 0
    faults_sent: int = 0
    callbacks_sent: int = 0
    callback_errors: list[str] = field(default_factory=list)


class HeadEndSimulator:
    def __init__(self, meters: tuple[str, ...], *, host: str = "127.0.0.1", port: int = 0,
                 interval_minutes: int = 15, start: datetime | None = None, end: datetime | None = None,
                 user: str = "", password: str = "", blocks_per_page: int = 4, faults: Faults | None = None,
                 seed: int = 1, ssl_context: ssl.SSLContext | None = None,
                 callback_ssl_context: ssl.SSLContext | None = None, callback_user: str = "",
                 callback_password: str = "", clock: Callable[[], datetime] | None = None,
                 max_body_bytes: int = 1024 * 1024) -> None:
        self.meters = meters
        self._known = frozenset(meters)
        self.data = FleetData(interval_minutes * 60)
        self.start = start
        self.end = end
        self.user = user
        self.password = password
        self.blocks_per_page = blocks_per_page
        self.faults = faults or Faults()
        self._random = random.Random(seed)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.mr = MultiSpeakCodec(MR_SERVER, max_bytes=max_body_bytes)
        self.cb = MultiSpeakCodec(CB_SERVER, max_bytes=max_body_bytes)
        self.header = MessageHeader(app_name="meterhub-multispeak-sim", app_version="0.1.0", company="meterhub")
        self._callback_header = MessageHeader(user=callback_user, password=callback_password,
                                              app_name="meterhub-multispeak-sim", app_version="0.1.0")
        self._callback_verify: ssl.SSLContext | bool = callback_ssl_context or True
        self.server = HttpServer(self.handle, host=host, port=port, max_body_bytes=max_body_bytes,
                                 ssl_context=ssl_context, error_response=self._server_fault)
        self.stats = SimulatorStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._host = host

    @property
    def url(self) -> str:
        return f"{self.server.scheme}://{self._host}:{self.server.port}/MR_Server.asmx"

    async def __aenter__(self) -> HeadEndSimulator:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.stop()

    async def wait_callbacks(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- dispatch ---------------------------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse:
        self.stats.requests += 1
        if request.method != "POST":
            return HttpResponse(405, b"SOAP endpoint: POST only", "text/plain")
        try:
            message = self.mr.parse_message(request.body)
        except MultiSpeakProtocolError as exc:
            return self._fault("Client", f"{exc.reason}: {exc.message}")
        if self.user and not (hmac.compare_digest(message.header.user, self.user)
                              and hmac.compare_digest(message.header.password, self.password)):
            return self._fault("Client.Authentication", "UserID / Pwd not accepted")
        handler = {
            "PingURL": self._ping,
            "GetLPReadingsByMeterIDIntervalData": self._lp_interval_data,
            "GetLPReadingsByMeterIDFormattedBlock": self._lp_formatted_block,
            "GetReadingsByMeterID": self._readings,
            "InitiateMeterReadingsByMeterID": self._initiate,
        }.get(message.operation)
        if handler is None:
            return self._fault("Client", f"operation {message.operation} is not supported")
        try:
            params = self.mr.decode_element(message.body)
        except MultiSpeakProtocolError as exc:
            return self._fault("Client", f"{exc.reason}: {exc.message}")
        injected = await self._inject()
        if injected is not None:
            return injected
        try:
            return handler(params)
        except _ClientError as exc:
            return self._fault("Client", str(exc))

    async def _inject(self) -> HttpResponse | None:
        f = self.faults
        r = self._random.random
        if f.slow_rate and r() < f.slow_rate:
            await asyncio.sleep(f.slow_seconds)
        if f.soap_fault_rate and r() < f.soap_fault_rate:
            self.stats.faults_sent += 1
            return self._fault("Server", "simulated head-end failure (fault injection)")
        if f.xxe_rate and r() < f.xxe_rate:
            self.stats.faults_sent += 1
            return HttpResponse(200, XXE_PAYLOAD)
        return None

    def _maybe_malformed(self, body: bytes) -> HttpResponse:
        if self.faults.malformed_rate and self._random.random() < self.faults.malformed_rate:
            self.stats.faults_sent += 1
            return HttpResponse(200, body[: len(body) // 2])
        return HttpResponse(200, body)

    def _fault(self, code: str, text: str) -> HttpResponse:
        return HttpResponse(500, self.mr.build_fault(code, text))

    def _server_fault(self, exc: Exception) -> HttpResponse:
        """A request the simulator failed on (logged by the HTTP server): soap:Server, as a head-end would."""
        return self._fault("Server", "the head-end simulator failed to process the request")

    # -- operations -------------------------------------------------------------------------------

    def _ping(self, params: Any) -> HttpResponse:
        return HttpResponse(200, self.mr.build_response("PingURL", self.header, PingURLResult=None))

    def _meter(self, value: Any) -> str:
        meter_id = (value["_value_1"] or "").strip() if value is not None else ""
        if meter_id not in self._known:
            raise _ClientError(f"unknown meter {meter_id!r}")
        return meter_id

    def _clip(self, start: datetime, stop: datetime) -> tuple[datetime, datetime]:
        if start.tzinfo is None or stop.tzinfo is None:
            raise _ClientError("dates need a UTC offset")
        start, stop = start.astimezone(UTC), stop.astimezone(UTC)
        if self.start is not None:
            start = max(start, self.start)
        limit = min(self.end, self._clock()) if self.end is not None else self._clock()
        return start, min(stop, limit)

    def _day_blocks(self, meter_id: str, start: datetime, stop: datetime) -> list[dict[str, Any]]:
        blocks = []
        f = self.faults
        for lo, hi in self.data.day_windows(start, stop):
            ends = self.data.ends(lo, hi)
            if not ends:
                continue
            tokens = []
            for end in ends:
                if f.missing_interval_rate and self.data.chance(meter_id, end, "missing") < f.missing_interval_rate:
                    tokens.append("")
                else:
                    tokens.append(wh_text(self.data.interval_wh(meter_id, end)))
            if f.bad_block_rate and self.data.chance(meter_id, ends[0], "bad") < f.bad_block_rate:
                tokens[0] = "1.2.3"
            blocks.append({
                "profileID": PROFILE_ID,
                "meterID": {"_value_1": meter_id, "meterNo": meter_id, "serviceType": "Electric"},
                "intervalStart": ends[0] - timedelta(seconds=self.data.interval_seconds),
                "dB": {"chs": {"ch": [{"idx": 1, "d": INTERVAL_DELIMITER.join(tokens)}]}},
            })
        return blocks

    def interval_data(self, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        minutes = self.data.interval_seconds // 60
        return {
            "statusDelimiter": STATUS_DELIMITER, "intervalDelimiter": INTERVAL_DELIMITER,
            "profiles": {"profile": [{
                "profileID": PROFILE_ID, "name": "15-minute kWh",
                "intervalLength": {"_value_1": minutes, "units": "Minutes"},
                "channels": {"channel": [{"index": 1, "fieldName": "kWh", "fieldDescription": "kWh delivered",
                                          "units": "kWh"}]}}]},
            "blocks": {"block": blocks},
        }

    def _page(self, meter_id: str, items: list[Any], last_received: str | None) -> tuple[list[Any], MessageHeader]:
        offset = 0
        if last_received:
            prefix, _, index = last_received.rpartition("@")
            if prefix != meter_id or not index.isdigit():
                raise _ClientError(f"lastReceived {last_received!r} is not a cursor of this meter")
            offset = int(index)
        page = items[offset: offset + self.blocks_per_page]
        sent = offset + len(page)
        header = MessageHeader(app_name=self.header.app_name, app_version=self.header.app_version,
                               company=self.header.company, objects_remaining=len(items) - sent,
                               last_sent=f"{meter_id}@{sent}")
        return page, header

    def _lp_interval_data(self, params: Any) -> HttpResponse:
        meter_id = self._meter(params["meterID"])
        start, stop = self._clip(params["profileStartDate"], params["profileEndDate"])
        blocks = self._day_blocks(meter_id, start, stop)
        page, header = self._page(meter_id, blocks, params["lastReceived"])
        result = {"intervalData": [self.interval_data(page)]} if page else None
        body = self.mr.build_response("GetLPReadingsByMeterIDIntervalData", header,
                                      GetLPReadingsByMeterIDIntervalDataResult=result)
        return self._maybe_malformed(body)

    def _lp_formatted_block(self, params: Any) -> HttpResponse:
        meter_id = self._meter(params["meterID"])
        start, stop = self._clip(params["profileStartDate"], params["profileEndDate"])
        blocks = []
        for lo, hi in self.data.day_windows(start, stop):
            records = [f"{meter_id},{end.isoformat().replace('+00:00', 'Z')},"
                       f"{wh_text(self.data.interval_wh(meter_id, end))}," for end in self.data.ends(lo, hi)]
            if records:
                blocks.append({"separator": ",", "contentNounType": "intervalData", "contentID": meter_id,
                               "valSyntax": {"syntaxItem": [
                                   {"fieldName": "MeterID", "position": 0},
                                   {"fieldName": "IntervalEnd", "position": 1},
                                   {"fieldName": "kWh", "position": 2, "uom": "kWh"},
                                   {"fieldName": "Status", "position": 3}]},
                               "valueList": {"val": records}})
        page, header = self._page(meter_id, blocks, params["lastReceived"])
        body = self.mr.build_response("GetLPReadingsByMeterIDFormattedBlock", header,
                                      GetLPReadingsByMeterIDFormattedBlockResult={"formattedBlock": page} if page
                                      else None)
        return self._maybe_malformed(body)

    def meter_reading(self, meter_id: str, at: datetime) -> dict[str, Any]:
        step = self.data.interval_seconds
        end = datetime.fromtimestamp(int(at.timestamp()) // step * step, UTC)
        return {"objectID": f"{meter_id}@{int(end.timestamp())}",
                "meterID": {"_value_1": meter_id, "meterNo": meter_id, "serviceType": "Electric"},
                "readingValues": {"readingValue": [{
                    "units": "kWh", "value": wh_text(self.data.register_wh(meter_id, end)),
                    "readingType": "kWh", "fieldName": "PosKWh", "name": "kWh delivered register",
                    "measurementPeriod": "Current", "timeStamp": end, "readingStatusCode": {"_value_1": "Valid"}}]}}

    def _readings(self, params: Any) -> HttpResponse:
        meter_id = self._meter(params["meterID"])
        _, stop = self._clip(params["startDate"], params["endDate"])
        result = {"meterReading": [self.meter_reading(meter_id, stop)]}
        body = self.mr.build_response("GetReadingsByMeterID", self.header, GetReadingsByMeterIDResult=result)
        return self._maybe_malformed(body)

    def _initiate(self, params: Any) -> HttpResponse:
        url = params["responseURL"]
        transaction_id = params["transactionID"] or ""
        requested = [(m["_value_1"] or "").strip() for m in (params["meterIDs"] or {"meterID": []})["meterID"]]
        known = [m for m in requested if m in self._known]
        errors = [(m, "unknown meter") for m in requested if m not in self._known]
        if not url:
            raise _ClientError("responseURL is required")
        if known:
            task = asyncio.get_running_loop().create_task(self._call_back(url, transaction_id, known))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        result = error_objects(errors, self._clock()) if errors else None
        return HttpResponse(200, self.mr.build_response("InitiateMeterReadingsByMeterID", self.header,
                                                        InitiateMeterReadingsByMeterIDResult=result))

    # -- callbacks ---------------------------------------------------------------------------------

    def notifications(self, transaction_id: str, meters: list[str], now: datetime) -> list[tuple[str, bytes]]:
        """ReadingChangedNotification (registers now) and IntervalDataNotification (the last whole day)."""
        header = self._callback_header
        day_end = FleetData.day_start(now)
        blocks = [b for m in meters for b in self._day_blocks(m, day_end - timedelta(days=1), day_end)]
        reading_changed = self._request("ReadingChangedNotification", header,
                                        changedMeterReads={"meterReading": [self.meter_reading(m, now)
                                                                            for m in meters]},
                                        transactionID=transaction_id)
        interval = self._request("IntervalDataNotification", header, intervalReads=self.interval_data(blocks),
                                 transactionID=transaction_id)
        return [("ReadingChangedNotification", reading_changed), ("IntervalDataNotification", interval)]

    def _request(self, operation: str, header: MessageHeader, **params: Any) -> bytes:
        return self.cb.build_request(operation, header, **params)

    async def _call_back(self, url: str, transaction_id: str, meters: list[str]) -> None:
        await asyncio.sleep(0.01)
        async with httpx.AsyncClient(verify=self._callback_verify, timeout=30.0, trust_env=False) as client:
            for operation, body in self.notifications(transaction_id, meters, self._clock()):
                try:
                    response = await client.post(url, content=body, headers={
                        "Content-Type": "text/xml; charset=utf-8",
                        "SOAPAction": f'"{self.cb.soap_action(operation)}"'})
                    self.stats.callbacks_sent += 1
                    if response.status_code != 200:
                        self.stats.callback_errors.append(f"{operation}: HTTP {response.status_code}")
                except httpx.HTTPError as exc:
                    self.stats.callback_errors.append(f"{operation}: {exc}")
                    logger.warning("callback %s to %s failed: %s", operation, url, exc)


class _ClientError(Exception):
    """A request the head-end refuses with soap:Client."""
