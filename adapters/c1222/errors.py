"""Errors of the C12.22 / C12.19 stack.

Every C12.22 response code other than ``ok`` has its own class carrying the wire
code, so callers can catch exactly the refusal they care about.
"""

from __future__ import annotations

from typing import ClassVar

from adapters.errors import ProtocolError, TransportError
from gateway.errors import StatusCode

# Content types of the received bytes an error keeps (RFC 2046 ``type`` parameter).
APDU_CONTENT_TYPE = "application/octet-stream; type=c1222-apdu"
TABLES_CONTENT_TYPE = "application/octet-stream; type=c1219-table-reads"


class C1222Error(ProtocolError):
    """Root of the C12.22 protocol errors (malformed APDU, EPSEM or table).

    ``raw`` holds the received bytes the error is about, for the dead-letter store:
    an APDU (or the unframed bytes buffered when none could be delimited) with
    ``raw_content_type`` APDU_CONTENT_TYPE, or the C12.19 table reads of the session
    (:func:`adapters.c1222.tables.encode_table_reads`) with TABLES_CONTENT_TYPE.
    """

    reason = "C1222_PROTOCOL_ERROR"
    raw: bytes = b""
    raw_content_type: str = APDU_CONTENT_TYPE

    def keep_raw(self, raw: bytes, content_type: str = APDU_CONTENT_TYPE) -> None:
        """Attach the received bytes, unless an inner layer already attached more precise ones."""
        if not self.raw and raw:
            self.raw = bytes(raw)
            self.raw_content_type = content_type


class MalformedApdu(C1222Error):
    """Bytes that are not a well-formed C12.22 ACSE APDU."""

    reason = "C1222_MALFORMED_APDU"


class MalformedEpsem(C1222Error):
    """An EPSEM envelope or service that violates C12.22."""

    reason = "C1222_MALFORMED_EPSEM"


class FrameTooLarge(C1222Error):
    """A length claim above the configured cap (refused before allocating)."""

    reason = "C1222_FRAME_TOO_LARGE"


class SecurityError(C1222Error):
    """Security mode 1/2 processing failed."""

    status = StatusCode.UNAUTHENTICATED
    reason = "C1222_SECURITY_ERROR"


class AuthenticationFailed(SecurityError):
    """The EAX' MAC of a received message does not verify."""

    reason = "C1222_MAC_MISMATCH"


class UnknownKey(SecurityError):
    """The message names a key id we do not hold."""

    reason = "C1222_UNKNOWN_KEY"


class TableError(C1222Error):
    """C12.19 table data that cannot be decoded (short, inconsistent, bad checksum)."""

    reason = "C1219_TABLE_ERROR"


class ChecksumMismatch(TableError):
    """A read response whose table-data checksum does not match its data."""

    reason = "C1219_CHECKSUM_MISMATCH"


class UnsupportedFormat(TableError):
    """A C12.19 format (time, NI or interval format) this codec does not implement."""

    reason = "C1219_UNSUPPORTED_FORMAT"


class UnexpectedResponse(C1222Error):
    """A response that does not answer the request we sent (invocation id, count)."""

    reason = "C1222_UNEXPECTED_RESPONSE"


class C1222Timeout(TransportError):
    """No response within the deadline."""

    status = StatusCode.DEADLINE_EXCEEDED
    reason = "C1222_TIMEOUT"


class C1222ConnectionError(TransportError):
    """The TCP connection failed or was closed by the peer."""

    reason = "C1222_CONNECTION_FAILED"


class ResponseError(C1222Error):
    """A C12.22 <nok> response; ``code`` is the wire response code."""

    code: ClassVar[int] = -1
    reason = "C1222_RESPONSE_ERROR"

    def __init__(self, message: str, *, detail: bytes = b"", remote: bool = True) -> None:
        super().__init__(message, remote=remote, metadata={"response_code": f"0x{self.code:02X}"})
        self.detail = detail


class ErrorResponse(ResponseError):
    code = 0x01
    reason = "C1222_ERR"


class ServiceNotSupported(ResponseError):
    code = 0x02
    status = StatusCode.UNIMPLEMENTED
    reason = "C1222_SNS"


class InsufficientSecurityClearance(ResponseError):
    code = 0x03
    status = StatusCode.PERMISSION_DENIED
    reason = "C1222_ISC"


class OperationNotPossible(ResponseError):
    code = 0x04
    status = StatusCode.FAILED_PRECONDITION
    reason = "C1222_ONP"


class InappropriateActionRequested(ResponseError):
    code = 0x05
    reason = "C1222_IAR"


class DeviceBusy(ResponseError):
    code = 0x06
    status = StatusCode.UNAVAILABLE
    reason = "C1222_BSY"


class DataNotReady(ResponseError):
    code = 0x07
    status = StatusCode.UNAVAILABLE
    reason = "C1222_DNR"


class DataLocked(ResponseError):
    code = 0x08
    status = StatusCode.FAILED_PRECONDITION
    reason = "C1222_DLK"


class RenegotiateRequest(ResponseError):
    code = 0x09
    reason = "C1222_RNO"


class InvalidServiceSequenceState(ResponseError):
    code = 0x0A
    status = StatusCode.FAILED_PRECONDITION
    reason = "C1222_ISSS"


class SecurityMechanismError(ResponseError):
    code = 0x0B
    status = StatusCode.UNAUTHENTICATED
    reason = "C1222_SME"


class UnknownApplicationTitle(ResponseError):
    code = 0x0C
    status = StatusCode.NOT_FOUND
    reason = "C1222_UAT"


class NetworkTimeout(ResponseError):
    code = 0x0D
    status = StatusCode.DEADLINE_EXCEEDED
    reason = "C1222_NETT"


class NetworkNotReachable(ResponseError):
    code = 0x0E
    status = StatusCode.UNAVAILABLE
    reason = "C1222_NETR"


class RequestTooLarge(ResponseError):
    """Carries the peer's maximum request size (``max_size``) when it sent one."""

    code = 0x0F
    status = StatusCode.RESOURCE_EXHAUSTED
    reason = "C1222_RQTL"

    @property
    def max_size(self) -> int | None:
        return int.from_bytes(self.detail[:4], "big") if len(self.detail) >= 4 else None


class ResponseTooLarge(ResponseError):
    """Carries the peer's maximum response size (``max_size``) when it sent one."""

    code = 0x10
    status = StatusCode.RESOURCE_EXHAUSTED
    reason = "C1222_RSTL"

    @property
    def max_size(self) -> int | None:
        return int.from_bytes(self.detail[:4], "big") if len(self.detail) >= 4 else None


class SegmentationNotPossible(ResponseError):
    code = 0x11
    reason = "C1222_SGNP"


class SegmentationError(ResponseError):
    code = 0x12
    reason = "C1222_SGERR"


class UnknownResponseCode(ResponseError):
    """A <nok> code outside 0x01-0x12 (reserved or manufacturer-defined)."""

    reason = "C1222_UNKNOWN_RESPONSE_CODE"

    def __init__(self, message: str, *, wire_code: int, detail: bytes = b"", remote: bool = True) -> None:
        super().__init__(message, detail=detail, remote=remote)
        self.wire_code = wire_code
        self.metadata["response_code"] = f"0x{wire_code:02X}"


RESPONSE_ERRORS: dict[int, type[ResponseError]] = {
    cls.code: cls
    for cls in (
        ErrorResponse, ServiceNotSupported, InsufficientSecurityClearance, OperationNotPossible,
        InappropriateActionRequested, DeviceBusy, DataNotReady, DataLocked, RenegotiateRequest,
        InvalidServiceSequenceState, SecurityMechanismError, UnknownApplicationTitle, NetworkTimeout,
        NetworkNotReachable, RequestTooLarge, ResponseTooLarge, SegmentationNotPossible, SegmentationError,
    )
}
# Codes whose <nok> carries a u32 size after the code byte.
SIZED_RESPONSE_CODES = frozenset({RequestTooLarge.code, ResponseTooLarge.code})


def response_error(code: int, detail: bytes = b"", *, remote: bool = True) -> ResponseError:
    """The error instance for a <nok> response code."""
    cls = RESPONSE_ERRORS.get(code)
    if cls is None:
        return UnknownResponseCode(f"C12.22 response code 0x{code:02X}", wire_code=code, detail=detail,
                                   remote=remote)
    return cls(f"C12.22 response {cls.reason.removeprefix('C1222_')} (0x{code:02X})", detail=detail, remote=remote)
