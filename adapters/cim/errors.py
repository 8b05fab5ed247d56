"""Errors of the IEC 61968-9 / 61968-100 adapter.

Each class carries ``cim_code``, the ``<category>.<detail>`` error code we put
in a 61968-100 ``Reply/Error/code`` (category 1 partial, 2 message, 3 content,
5 system, following the 61968-100 habit of grouping codes by category), and
``http_status`` for the plain-XML binding.
"""

from __future__ import annotations

from adapters.errors import ProtocolError, TransportError
from gateway.errors import StatusCode


class CimError(ProtocolError):
    """Root of CIM protocol errors (documents that violate 61968-9 / -100)."""

    reason = "CIM_ERROR"
    cim_code = "2.0"
    http_status = 400


class MalformedXml(CimError):
    reason = "XML_MALFORMED"
    cim_code = "2.1"


class ForbiddenXml(CimError):
    """DTDs, entity declarations and external references are never accepted."""

    reason = "XML_FORBIDDEN"
    cim_code = "2.2"


class DocumentTooLarge(CimError):
    status = StatusCode.RESOURCE_EXHAUSTED
    reason = "DOCUMENT_TOO_LARGE"
    cim_code = "2.3"
    http_status = 413


class SchemaInvalid(CimError):
    reason = "SCHEMA_INVALID"
    cim_code = "2.4"


class EnvelopeError(CimError):
    """The 61968-100 envelope is missing a part or names a verb/noun we do not take."""

    reason = "BAD_ENVELOPE"
    cim_code = "2.5"


class UnsupportedMessage(EnvelopeError):
    reason = "UNSUPPORTED_MESSAGE"
    cim_code = "2.6"


class ContentError(CimError):
    """One MeterReading cannot be mapped; others in the same message may still be."""

    reason = "BAD_CONTENT"
    cim_code = "3.0"


class BadReadingType(ContentError):
    reason = "BAD_READING_TYPE"
    cim_code = "3.1"


class BadQualityCode(ContentError):
    reason = "BAD_QUALITY_CODE"
    cim_code = "3.2"


class BadValue(ContentError):
    reason = "BAD_VALUE"
    cim_code = "3.3"


class BadTimestamp(ContentError):
    reason = "BAD_TIMESTAMP"
    cim_code = "3.4"


class MisalignedReading(ContentError):
    reason = "MISALIGNED_INTERVAL"
    cim_code = "3.5"


class ConflictingReading(ContentError):
    reason = "CONFLICTING_INTERVAL"
    cim_code = "3.6"


class MissingMeterId(ContentError):
    reason = "MISSING_METER_ID"
    cim_code = "3.7"


class RejectedByHub(ContentError):
    """Ingest refused the readings (unknown meter, precision loss...)."""

    reason = "REJECTED_BY_HUB"
    cim_code = "3.8"


class ReplyFailed(CimError):
    """The peer answered a request of ours with Reply/Result FAILED."""

    reason = "REPLY_FAILED"
    cim_code = "2.7"

    def __init__(self, message: str, *, codes: tuple[str, ...] = (), remote: bool = True) -> None:
        super().__init__(message, remote=remote, metadata={"codes": ",".join(codes)})
        self.codes = codes


class HttpProtocolError(CimError):
    """HTTP/1.1 framing we cannot accept; ``http_status`` is what we answer."""

    reason = "HTTP_PROTOCOL_ERROR"
    cim_code = "2.8"

    def __init__(self, message: str, *, http_status: int = 400, remote: bool = True) -> None:
        super().__init__(message, remote=remote)
        self.http_status = http_status


class CimTransportError(TransportError):
    """The connection to a head-end or endpoint failed or timed out."""

    reason = "CIM_TRANSPORT_ERROR"


class HttpStatusError(CimTransportError):
    """The peer answered with an HTTP status that carries no 61968-100 reply."""

    reason = "HTTP_STATUS"

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message, metadata={"http_status": str(http_status)})
        self.http_status = http_status
