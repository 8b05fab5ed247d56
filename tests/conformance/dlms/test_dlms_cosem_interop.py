"""Interop: the independent ``dlms-cosem`` client (test-only dependency) reads our
simulator over real TCP - clock, energy register, load profile by range - without
security, with LLS and with HLS-GMAC (suite 0, general-glo-ciphering).

dlms-cosem blocks on its socket, so it runs in a worker thread while the
simulator serves from the event loop.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dlms_cosem import client as dlms_client
from dlms_cosem import cosem, enumerations, security, utils
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.time import datetime_from_bytes

from adapters.dlms.codec import Mechanism
from adapters.dlms.security import Keys
from simulators.dlms.server import MeterFleet, SimulatorConfig

NOW = datetime(2026, 3, 3, 0, 0, 7, tzinfo=UTC)
HISTORY = datetime(2026, 3, 1, tzinfo=UTC)
KEYS = Keys(bytes(range(16)), bytes(range(0xD0, 0xE0)))
CLOCK = cosem.CosemAttribute(enumerations.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0, 255), 2)
IMPORT = cosem.CosemAttribute(enumerations.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0, 255), 2)
PROFILE = cosem.CosemAttribute(enumerations.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0, 255), 2)


def frozen() -> datetime:
    return NOW


def read_with_dlms_cosem(port: int, authentication: Any, **client_args: Any) -> tuple[Any, Any, Any]:
    io = BlockingTcpIO(host="127.0.0.1", port=port, timeout=5)
    transport = TcpTransport(client_logical_address=16, server_logical_address=1, io=io)
    client = dlms_client.DlmsClient(transport=transport, authentication=authentication, **client_args)
    with client.session() as session:
        clock = utils.parse_as_dlms_data(session.get(CLOCK))
        register = utils.parse_as_dlms_data(session.get(IMPORT))
        descriptor = RangeDescriptor(
            restricting_object=CaptureObject(cosem_attribute=cosem.CosemAttribute(
                enumerations.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0, 255), 2), data_index=0),
            from_value=datetime(2026, 3, 2, 6, 0, tzinfo=UTC), to_value=datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
        buffer = utils.parse_as_dlms_data(session.get(PROFILE, access_descriptor=descriptor))
    return clock, register, buffer


@pytest.mark.parametrize("mode", ["none", "lls", "hls-gmac"])
async def test_dlms_cosem_reads_our_simulator(mode: str) -> None:
    mechanism = {"none": Mechanism.NONE, "lls": Mechanism.LLS, "hls-gmac": Mechanism.HLS_GMAC}[mode]
    sim = SimulatorConfig(meters=1, history_start=HISTORY, mechanism=mechanism, password=b"secret12",
                          keys=KEYS if mode == "hls-gmac" else None)
    client_args: dict[str, Any] = {}
    if mode == "none":
        authentication: Any = security.NoSecurityAuthentication()
    elif mode == "lls":
        authentication = security.LowLevelSecurityAuthentication(secret=b"secret12")
    else:
        authentication = security.HighLevelSecurityGmacAuthentication(challenge_length=16)
        client_args = {"encryption_key": KEYS.encryption, "authentication_key": KEYS.authentication,
                       "client_system_title": b"DLMSCOSM"}
    async with MeterFleet(sim, clock=frozen) as fleet:
        endpoint = fleet.endpoints[0]
        clock, register, buffer = await asyncio.wait_for(
            asyncio.to_thread(read_with_dlms_cosem, endpoint.port, authentication, **client_args), 30)
    meter_time, _status = datetime_from_bytes(clock)
    assert meter_time.replace(tzinfo=UTC) == NOW.replace(microsecond=0)
    imported, _exported = fleet.model.registers(endpoint.meter_id, NOW)
    assert register == imported
    start = int(datetime(2026, 3, 2, 6, 0, tzinfo=UTC).timestamp())
    rows = fleet.model.rows(endpoint.meter_id, start, start + 6 * 3600)
    assert len(buffer) == len(rows) == 25
    for entry, end, status, imp, exp in zip(buffer, rows.ends, rows.status, rows.import_wh, rows.export_wh,
                                            strict=True):
        stamp, _ = datetime_from_bytes(entry[0])
        assert stamp.replace(tzinfo=UTC) == datetime.fromtimestamp(int(end), UTC)
        assert entry[1:] == [int(status), int(imp), int(exp)]
    assert datetime.fromtimestamp(int(rows.ends[0]), UTC) == datetime(2026, 3, 2, 6, tzinfo=UTC)
    assert datetime.fromtimestamp(int(rows.ends[-1]), UTC) - timedelta(hours=6) == datetime(2026, 3, 2, 6,
                                                                                              tzinfo=UTC)
