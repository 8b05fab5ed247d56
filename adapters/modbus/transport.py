"""The asyncio seam around pymodbus: one TCP connection, bounded waits, and
pymodbus exceptions translated into ours in one place (``map_exceptions``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.logging import Log as PymodbusLog

from adapters.modbus.errors import (
    ModbusDisconnected,
    ModbusError,
    ModbusProtocolError,
    ModbusTimeout,
    ModbusTransportError,
    exception_for_code,
)
from adapters.modbus.registers import Function, ReadRange

logger = logging.getLogger(__name__)

# Slack on top of pymodbus' own timeout before we give up on a request ourselves.
_GUARD_SECONDS = 0.5


def _stop_pymodbus_frame_dumps() -> None:
    """pymodbus keeps the last 20 chunks it received (up to 256 KiB each, every connection
    of the process) and hex-dumps them into each ERROR it logs, such as every request
    timeout: a peer streaming garbage turns one timeout into a log line of tens of MB and
    a second of blocked event loop. Our errors carry the reason; hex dumps belong at DEBUG,
    where pymodbus still logs every frame when its logger is set so."""
    PymodbusLog.MAX_FRAMES = 0
    PymodbusLog.frame_dump.clear()


@contextmanager
def map_exceptions(where: str) -> Iterator[None]:
    """Translate pymodbus and socket errors into ModbusError subclasses."""
    try:
        yield
    except ModbusError:
        raise
    except TimeoutError as exc:
        raise ModbusTimeout(f"{where}: no response") from exc
    except ConnectionException as exc:
        raise ModbusDisconnected(f"{where}: not connected ({exc})") from exc
    except ModbusIOException as exc:
        # pymodbus raises this when a request got no response (or the link dropped).
        raise ModbusTimeout(f"{where}: {exc}") from exc
    except ModbusException as exc:
        raise ModbusProtocolError(f"{where}: {exc}") from exc
    except OSError as exc:
        raise ModbusDisconnected(f"{where}: {exc}") from exc


class ModbusConnection:
    """One TCP connection to a Modbus server (requests on it are serialised by
    pymodbus). Connects lazily; after a connection failure it refuses requests
    until an exponential backoff has passed, so a dead host costs nothing."""

    def __init__(self, host: str, port: int, *, timeout_seconds: float, backoff_seconds: float = 0.1,
                 max_backoff_seconds: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout_seconds = timeout_seconds
        self._backoff = (backoff_seconds, max_backoff_seconds)
        self._client: AsyncModbusTcpClient | None = None
        self._down_until = 0.0
        self._next_backoff = backoff_seconds
        self._where = f"{host}:{port}"
        _stop_pymodbus_frame_dumps()

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        if time.monotonic() < self._down_until:
            raise ModbusDisconnected(f"{self._where}: backing off after a failed connection")
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_seconds, retries=0,
                                      reconnect_delay=0, name=self._where)
        with map_exceptions(self._where):
            ok = await client.connect()
        if not ok:
            client.close()
            self._down_until = time.monotonic() + self._next_backoff
            self._next_backoff = min(self._next_backoff * 2, self._backoff[1]) or self._backoff[1]
            raise ModbusDisconnected(f"{self._where}: connection refused or timed out")
        self._next_backoff = self._backoff[0]
        self._client = client
        return client

    async def read(self, unit: int, read: ReadRange) -> list[int]:
        """The registers of one read request; raises a ModbusError subclass."""
        where = f"{self._where} unit {unit} {read.function.name.lower()} {read.address}+{read.count}"
        client = await self._connected()
        try:
            with map_exceptions(where):
                async with asyncio.timeout(self.timeout_seconds + _GUARD_SECONDS):
                    if read.function is Function.HOLDING:
                        response = await client.read_holding_registers(read.address, count=read.count,
                                                                       device_id=unit)
                    else:
                        response = await client.read_input_registers(read.address, count=read.count, device_id=unit)
        except ModbusTransportError:
            # A late answer on this connection could be taken for the next request's: start afresh.
            self.close()
            raise
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise exception_for_code(code, f"{where}: exception response {code}")
        function = getattr(response, "function_code", read.function.value)
        if function != read.function.value:
            # pymodbus matches a response by transaction id only: another function's registers.
            raise ModbusProtocolError(f"{where}: answered with function {function}")
        registers = list(getattr(response, "registers", []))
        if len(registers) != read.count:
            raise ModbusProtocolError(f"{where}: {len(registers)} registers in the response")
        return registers

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
