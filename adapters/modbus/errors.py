"""Errors of the Modbus adapter: one class per Modbus exception code, plus
transport failures (timeouts, refused or dropped connections)."""

from __future__ import annotations

from adapters.errors import AdapterError, ProtocolError, TransportError
from gateway.errors import StatusCode


class ModbusError(AdapterError):
    """Root of the Modbus adapter's errors."""

    reason = "MODBUS_ERROR"


class ModbusProtocolError(ProtocolError, ModbusError):
    """A response that does not fit what was asked (wrong register count, bad value)."""

    reason = "MODBUS_PROTOCOL_ERROR"


class ModbusTransportError(TransportError, ModbusError):
    """The connection to the Modbus server failed."""

    reason = "MODBUS_TRANSPORT_ERROR"


class ModbusTimeout(ModbusTransportError):
    """The server did not answer within the timeout."""

    status = StatusCode.DEADLINE_EXCEEDED
    reason = "MODBUS_TIMEOUT"


class ModbusDisconnected(ModbusTransportError):
    """The connection was refused or dropped."""

    reason = "MODBUS_DISCONNECTED"


class ModbusExceptionResponse(ModbusError):
    """The device answered with a Modbus exception response; ``exception_code``
    is the wire code of the subclass."""

    status = StatusCode.UNAVAILABLE
    reason = "MODBUS_EXCEPTION"
    exception_code = 0

    def __init__(self, message: str, *, reason: str | None = None,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)


class IllegalFunction(ModbusExceptionResponse):
    status = StatusCode.FAILED_PRECONDITION
    reason = "MODBUS_ILLEGAL_FUNCTION"
    exception_code = 0x01


class IllegalDataAddress(ModbusExceptionResponse):
    status = StatusCode.FAILED_PRECONDITION
    reason = "MODBUS_ILLEGAL_DATA_ADDRESS"
    exception_code = 0x02


class IllegalDataValue(ModbusExceptionResponse):
    status = StatusCode.FAILED_PRECONDITION
    reason = "MODBUS_ILLEGAL_DATA_VALUE"
    exception_code = 0x03


class ServerDeviceFailure(ModbusExceptionResponse):
    reason = "MODBUS_SERVER_DEVICE_FAILURE"
    exception_code = 0x04


class Acknowledge(ModbusExceptionResponse):
    reason = "MODBUS_ACKNOWLEDGE"
    exception_code = 0x05


class ServerDeviceBusy(ModbusExceptionResponse):
    reason = "MODBUS_SERVER_DEVICE_BUSY"
    exception_code = 0x06


class NegativeAcknowledge(ModbusExceptionResponse):
    reason = "MODBUS_NEGATIVE_ACKNOWLEDGE"
    exception_code = 0x07


class MemoryParityError(ModbusExceptionResponse):
    reason = "MODBUS_MEMORY_PARITY_ERROR"
    exception_code = 0x08


class GatewayPathUnavailable(ModbusExceptionResponse):
    reason = "MODBUS_GATEWAY_PATH_UNAVAILABLE"
    exception_code = 0x0A


class GatewayTargetNoResponse(ModbusExceptionResponse):
    reason = "MODBUS_GATEWAY_TARGET_NO_RESPONSE"
    exception_code = 0x0B


EXCEPTION_CLASSES: dict[int, type[ModbusExceptionResponse]] = {
    cls.exception_code: cls
    for cls in (IllegalFunction, IllegalDataAddress, IllegalDataValue, ServerDeviceFailure, Acknowledge,
                ServerDeviceBusy, NegativeAcknowledge, MemoryParityError, GatewayPathUnavailable,
                GatewayTargetNoResponse)
}


def exception_for_code(code: int, message: str) -> ModbusExceptionResponse:
    """The error for a Modbus exception code; unknown codes keep the base class."""
    cls = EXCEPTION_CLASSES.get(code, ModbusExceptionResponse)
    return cls(message, metadata={"exception_code": str(code)})
