"""Errors of the DLMS/COSEM adapter.

Wire-level codes (data-access-result, state and service errors, association
diagnostics) live on the classes and instances that carry them.
"""

from __future__ import annotations

from adapters.errors import AdapterError, ProtocolError, TransportError
from gateway.errors import StatusCode


class DlmsError(AdapterError):
    """Root of the DLMS adapter's errors."""

    reason = "DLMS_ERROR"


class DlmsProtocolError(ProtocolError):
    """Bytes that violate IEC 62056 (framing, BER, A-XDR, xDLMS).

    The instance reason tells which rule: DLMS_TRUNCATED, DLMS_LENGTH_TOO_LARGE,
    DLMS_UNKNOWN_TAG, DLMS_BAD_WRAPPER, DLMS_BAD_VALUE, DLMS_UNEXPECTED_APDU...
    """

    reason = "DLMS_PROTOCOL_ERROR"


class DlmsFrameTooLarge(DlmsProtocolError):
    """A length claim above our cap, refused before any allocation."""

    reason = "DLMS_LENGTH_TOO_LARGE"


class DlmsTransportError(TransportError):
    """The TCP connection failed, timed out, or the peer closed it."""

    reason = "DLMS_TRANSPORT_ERROR"


class DlmsSecurityError(DlmsError):
    """Ciphering could not be applied or removed (tag mismatch, replayed counter)."""

    status = StatusCode.PERMISSION_DENIED
    reason = "DLMS_SECURITY_ERROR"


class DlmsAuthenticationFailed(DlmsSecurityError):
    """The peer failed LLS or HLS authentication."""

    reason = "DLMS_AUTHENTICATION_FAILED"


class DlmsAssociationRejected(DlmsError):
    """The meter answered the AARQ with an AARE whose result is not accepted."""

    status = StatusCode.PERMISSION_DENIED
    reason = "DLMS_ASSOCIATION_REJECTED"

    def __init__(self, message: str, *, result: int, diagnostic: int) -> None:
        super().__init__(message, metadata={"result": str(result), "diagnostic": str(diagnostic)})
        self.result = result
        self.diagnostic = diagnostic


class DlmsExceptionResponse(DlmsProtocolError):
    """The peer answered with an EXCEPTION-Response (state error, service error)."""

    reason = "DLMS_EXCEPTION_RESPONSE"

    def __init__(self, message: str, *, state_error: int, service_error: int) -> None:
        super().__init__(message, metadata={"state_error": str(state_error), "service_error": str(service_error)})
        self.state_error = state_error
        self.service_error = service_error


class DlmsConfirmedServiceError(DlmsProtocolError):
    """The peer answered with a Confirmed-ServiceError (service, error group, value)."""

    reason = "DLMS_CONFIRMED_SERVICE_ERROR"

    def __init__(self, message: str, *, service: int, error_group: int, value: int) -> None:
        super().__init__(message, metadata={"service": str(service), "error_group": str(error_group),
                                            "value": str(value)})
        self.service = service
        self.error_group = error_group
        self.value = value


class DlmsDataAccessError(DlmsError):
    """A Get returned a data-access-result other than success. ``code`` is the wire value."""

    status = StatusCode.FAILED_PRECONDITION
    reason = "DLMS_DATA_ACCESS_ERROR"
    code = 250

    def __init__(self, message: str) -> None:
        super().__init__(message, metadata={"data_access_result": str(self.code)})


class DlmsHardwareFault(DlmsDataAccessError):
    reason = "DLMS_HARDWARE_FAULT"
    code = 1


class DlmsTemporaryFailure(DlmsDataAccessError):
    status = StatusCode.UNAVAILABLE
    reason = "DLMS_TEMPORARY_FAILURE"
    code = 2


class DlmsReadWriteDenied(DlmsDataAccessError):
    status = StatusCode.PERMISSION_DENIED
    reason = "DLMS_READ_WRITE_DENIED"
    code = 3


class DlmsObjectUndefined(DlmsDataAccessError):
    status = StatusCode.NOT_FOUND
    reason = "DLMS_OBJECT_UNDEFINED"
    code = 4


class DlmsObjectClassInconsistent(DlmsDataAccessError):
    reason = "DLMS_OBJECT_CLASS_INCONSISTENT"
    code = 9


class DlmsObjectUnavailable(DlmsDataAccessError):
    status = StatusCode.UNAVAILABLE
    reason = "DLMS_OBJECT_UNAVAILABLE"
    code = 11


class DlmsTypeUnmatched(DlmsDataAccessError):
    reason = "DLMS_TYPE_UNMATCHED"
    code = 12


class DlmsScopeOfAccessViolated(DlmsDataAccessError):
    reason = "DLMS_SCOPE_OF_ACCESS_VIOLATED"
    code = 13


class DlmsDataBlockUnavailable(DlmsDataAccessError):
    reason = "DLMS_DATA_BLOCK_UNAVAILABLE"
    code = 14


class DlmsLongGetAborted(DlmsDataAccessError):
    reason = "DLMS_LONG_GET_ABORTED"
    code = 15


class DlmsNoLongGetInProgress(DlmsDataAccessError):
    reason = "DLMS_NO_LONG_GET_IN_PROGRESS"
    code = 16


DATA_ACCESS_ERRORS: tuple[type[DlmsDataAccessError], ...] = (
    DlmsHardwareFault, DlmsTemporaryFailure, DlmsReadWriteDenied, DlmsObjectUndefined,
    DlmsObjectClassInconsistent, DlmsObjectUnavailable, DlmsTypeUnmatched, DlmsScopeOfAccessViolated,
    DlmsDataBlockUnavailable, DlmsLongGetAborted, DlmsNoLongGetInProgress,
)


def data_access_error(code: int, what: str) -> DlmsDataAccessError:
    """The error for a data-access-result code (other-reason and unknown codes share the base)."""
    for cls in DATA_ACCESS_ERRORS:
        if cls.code == code:
            return cls(f"{what}: data-access-result {code} ({cls.reason})")
    return DlmsDataAccessError(f"{what}: data-access-result {code}")
