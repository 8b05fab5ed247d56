"""Errors of the MultiSpeak adapter: one class per failure a head-end or its documents can cause."""

from __future__ import annotations

from adapters.errors import AdapterError, ProtocolError, TransportError
from gateway.errors import StatusCode


class MultiSpeakError(AdapterError):
    """Root of every MultiSpeak adapter error."""

    reason = "MULTISPEAK_ERROR"


class MultiSpeakProtocolError(ProtocolError, MultiSpeakError):
    """A SOAP document that is not what MultiSpeak v4.1 allows."""

    reason = "MULTISPEAK_PROTOCOL_ERROR"


class MalformedXml(MultiSpeakProtocolError):
    """Bytes that are not well-formed XML, or not a SOAP envelope."""

    reason = "MALFORMED_XML"


class ForbiddenXml(MultiSpeakProtocolError):
    """XML with a DTD, entity declarations or external references (XXE, billion laughs)."""

    reason = "XML_FORBIDDEN"


class XmlTooLarge(MultiSpeakProtocolError):
    """A document or HTTP body above the configured size cap."""

    status = StatusCode.RESOURCE_EXHAUSTED
    reason = "XML_TOO_LARGE"


class UnexpectedContent(MultiSpeakProtocolError):
    """Well-formed SOAP whose body does not match the operation's schema."""

    reason = "UNEXPECTED_CONTENT"


class UndecodableReading(MultiSpeakProtocolError):
    """A reading whose value, unit, time or interval layout cannot be mapped exactly."""

    reason = "UNDECODABLE_READING"


class UnknownTransaction(MultiSpeakProtocolError):
    """A callback whose transactionID matches no pending request."""

    reason = "UNKNOWN_TRANSACTION"


class ExpiredTransaction(UnknownTransaction):
    """A callback that arrived after its request's expiry time."""

    reason = "TRANSACTION_EXPIRED"


class MultiSpeakTransportError(TransportError, MultiSpeakError):
    """The HTTP exchange failed: connection refused or reset, TLS failure."""

    reason = "MULTISPEAK_TRANSPORT_ERROR"


class MultiSpeakTimeout(MultiSpeakTransportError):
    status = StatusCode.DEADLINE_EXCEEDED
    reason = "MULTISPEAK_TIMEOUT"


class HttpStatusError(MultiSpeakTransportError):
    """An HTTP status other than 200 without a SOAP fault in the body."""

    reason = "HTTP_STATUS"

    def __init__(self, message: str, *, http_status: int) -> None:
        super().__init__(message, metadata={"http_status": str(http_status)})
        self.http_status = http_status


class SoapFault(MultiSpeakError):
    """The peer answered with a SOAP fault. ``faultcode`` is the wire code (local part)."""

    status = StatusCode.UNAVAILABLE
    reason = "SOAP_FAULT"
    faultcode_prefix = ""

    def __init__(self, message: str, *, faultcode: str, faultstring: str) -> None:
        super().__init__(message, metadata={"faultcode": faultcode})
        self.faultcode = faultcode
        self.faultstring = faultstring


class SoapClientFault(SoapFault):
    """soap:Client: the head-end says our request was wrong."""

    status = StatusCode.INVALID_ARGUMENT
    reason = "SOAP_CLIENT_FAULT"
    faultcode_prefix = "Client"


class AuthenticationFault(SoapClientFault):
    """soap:Client.Authentication: the MultiSpeak header's UserID / Pwd were refused."""

    status = StatusCode.UNAUTHENTICATED
    reason = "SOAP_AUTHENTICATION_FAULT"
    faultcode_prefix = "Client.Authentication"


class SoapServerFault(SoapFault):
    """soap:Server: the head-end failed to answer."""

    status = StatusCode.UNAVAILABLE
    reason = "SOAP_SERVER_FAULT"
    faultcode_prefix = "Server"


def fault_class(faultcode: str) -> type[SoapFault]:
    """The most specific SoapFault class for a faultcode ("soap:Client.Authentication")."""
    local = faultcode.rpartition(":")[2]
    best: type[SoapFault] = SoapFault
    for cls in (SoapClientFault, AuthenticationFault, SoapServerFault):
        prefix = cls.faultcode_prefix
        if (local == prefix or local.startswith(prefix + ".")) and len(prefix) > len(best.faultcode_prefix):
            best = cls
    return best
