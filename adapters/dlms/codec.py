"""DLMS/COSEM APDUs <-> bytes, and the TCP WRAPPER framing (IEC 62056-47).

Pure: no I/O, no clocks, no crypto (ciphered APDUs are carried opaque here;
:mod:`adapters.dlms.security` ciphers them). Covered: AARQ/AARE (BER),
RLRQ/RLRE, xDLMS InitiateRequest/Response, Get-Request normal/next,
Get-Response normal/with-datablock, Action-Request/Response normal (for the
HLS reply), Exception-Response, Confirmed-ServiceError, glo-* and
general-glo-ciphering envelopes.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.dlms import axdr
from adapters.dlms.axdr import Data
from adapters.dlms.cosem import AccessDescriptor, AttributeRef, Obis, access_descriptor
from adapters.dlms.errors import DlmsFrameTooLarge, DlmsProtocolError

WRAPPER_VERSION = 1
WRAPPER_HEADER_SIZE = 8
# No meter we read sends APDUs this large; a claim above it is refused before buffering.
DEFAULT_MAX_APDU = 0xFFFF
DLMS_VERSION = 6
VAA_NAME_LN = 0x0007


class ApplicationContext:
    LN = 1
    SN = 2
    LN_CIPHERED = 3
    SN_CIPHERED = 4


class Mechanism:
    NONE = 0
    LLS = 1
    HLS = 2
    HLS_GMAC = 5


class AssociationResult:
    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class AcseDiagnostic:
    """acse-service-user diagnostics."""

    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


class StateError:
    SERVICE_NOT_ALLOWED = 1
    SERVICE_UNKNOWN = 2


class ServiceError:
    OPERATION_NOT_POSSIBLE = 1
    SERVICE_NOT_SUPPORTED = 2
    OTHER_REASON = 3
    PDU_TOO_LONG = 4
    DECIPHERING_ERROR = 5
    INVOCATION_COUNTER_ERROR = 6


class Conformance:
    """Conformance block bits as integers (bit n of the BER bit string is 1 << (23 - n))."""

    GENERAL_PROTECTION = 1 << (23 - 1)
    BLOCK_TRANSFER_WITH_GET = 1 << (23 - 11)
    GET = 1 << (23 - 19)
    SET = 1 << (23 - 20)
    SELECTIVE_ACCESS = 1 << (23 - 21)
    ACTION = 1 << (23 - 23)


class ApduTag:
    INITIATE_REQUEST = 0x01
    INITIATE_RESPONSE = 0x08
    CONFIRMED_SERVICE_ERROR = 0x0E
    GLO_INITIATE_REQUEST = 0x21
    GLO_INITIATE_RESPONSE = 0x28
    AARQ = 0x60
    AARE = 0x61
    RLRQ = 0x62
    RLRE = 0x63
    GET_REQUEST = 0xC0
    ACTION_REQUEST = 0xC3
    GET_RESPONSE = 0xC4
    ACTION_RESPONSE = 0xC7
    GLO_GET_REQUEST = 0xC8
    GLO_ACTION_REQUEST = 0xCB
    GLO_GET_RESPONSE = 0xCC
    GLO_ACTION_RESPONSE = 0xCF
    EXCEPTION_RESPONSE = 0xD8
    GENERAL_GLO_CIPHERING = 0xDB


# Plain tag -> its glo-ciphered tag, and back.
GLO_TAG = {
    ApduTag.INITIATE_REQUEST: ApduTag.GLO_INITIATE_REQUEST,
    ApduTag.INITIATE_RESPONSE: ApduTag.GLO_INITIATE_RESPONSE,
    ApduTag.GET_REQUEST: ApduTag.GLO_GET_REQUEST,
    ApduTag.GET_RESPONSE: ApduTag.GLO_GET_RESPONSE,
    ApduTag.ACTION_REQUEST: ApduTag.GLO_ACTION_REQUEST,
    ApduTag.ACTION_RESPONSE: ApduTag.GLO_ACTION_RESPONSE,
}
PLAIN_TAG = {glo: plain for plain, glo in GLO_TAG.items()}

_CONTEXT_PREFIX = bytes.fromhex("608574050801")
_MECHANISM_PREFIX = bytes.fromhex("608574050802")


def _error(message: str, reason: str) -> DlmsProtocolError:
    return DlmsProtocolError(message, reason=reason)


# ====================================================================== WRAPPER


@dataclass(frozen=True, slots=True)
class WrapperFrame:
    """One WRAPPER PDU: source and destination wPorts (logical addresses) and the APDU."""

    source: int
    destination: int
    apdu: bytes

    def encode(self) -> bytes:
        if len(self.apdu) > 0xFFFF:
            raise DlmsFrameTooLarge(f"APDU of {len(self.apdu)} bytes exceeds the wrapper", remote=False)
        return (WRAPPER_VERSION.to_bytes(2, "big") + self.source.to_bytes(2, "big")
                + self.destination.to_bytes(2, "big") + len(self.apdu).to_bytes(2, "big") + self.apdu)


class WrapperBuffer:
    """Splits a byte stream into WRAPPER frames. Bounded by ``max_apdu``."""

    def __init__(self, max_apdu: int = DEFAULT_MAX_APDU) -> None:
        self._buffer = bytearray()
        self._max_apdu = max_apdu

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def next_frame(self) -> WrapperFrame | None:
        if len(self._buffer) < WRAPPER_HEADER_SIZE:
            return None
        header = bytes(self._buffer[:WRAPPER_HEADER_SIZE])
        version = int.from_bytes(header[0:2], "big")
        if version != WRAPPER_VERSION:
            raise _error(f"wrapper version {version}", "DLMS_BAD_WRAPPER")
        length = int.from_bytes(header[6:8], "big")
        if length > self._max_apdu:
            raise DlmsFrameTooLarge(f"wrapper claims {length} bytes, cap is {self._max_apdu}")
        if len(self._buffer) < WRAPPER_HEADER_SIZE + length:
            return None
        apdu = bytes(self._buffer[WRAPPER_HEADER_SIZE:WRAPPER_HEADER_SIZE + length])
        del self._buffer[:WRAPPER_HEADER_SIZE + length]
        return WrapperFrame(int.from_bytes(header[2:4], "big"), int.from_bytes(header[4:6], "big"), apdu)


# ====================================================================== reader


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def take(self, size: int) -> bytes:
        if size < 0 or size > self.remaining:
            raise _error(f"needs {size} bytes, {self.remaining} remain", "DLMS_TRUNCATED")
        out = self.buf[self.pos:self.pos + size]
        self.pos += size
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def axdr_length(self) -> int:
        length, self.pos = axdr.decode_length(self.buf, self.pos)
        return length

    def ber_length(self) -> int:
        first = self.byte()
        if first < 0x80:
            return first
        size = first & 0x7F
        if size == 0 or size > 2:
            raise _error(f"BER length of {size} bytes", "DLMS_BAD_BER")
        return self.uint(size)

    def end(self) -> None:
        if self.remaining:
            raise _error(f"{self.remaining} trailing bytes", "DLMS_TRAILING_BYTES")


def _ber_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    raise DlmsFrameTooLarge(f"BER element of {length} bytes", remote=False)


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _ber_length(len(content)) + content


def _ber_elements(body: bytes) -> list[tuple[int, bytes]]:
    reader = _Reader(body)
    out = []
    while reader.remaining:
        tag = reader.byte()
        out.append((tag, reader.take(reader.ber_length())))
    return out


def _octets_in(tag: int, content: bytes, inner: int) -> bytes:
    """Content of [tag] wrapping one inner BER element (e.g. OCTET STRING 0x04)."""
    reader = _Reader(content)
    if reader.byte() != inner:
        raise _error(f"element {tag:#04x} does not hold {inner:#04x}", "DLMS_BAD_BER")
    value = reader.take(reader.ber_length())
    reader.end()
    return value


# ====================================================================== xDLMS initiate


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    conformance: int
    max_receive_pdu_size: int
    dlms_version: int = DLMS_VERSION
    dedicated_key: bytes | None = None
    response_allowed: bool = True
    quality_of_service: int | None = None


@dataclass(frozen=True, slots=True)
class InitiateResponse:
    conformance: int
    max_receive_pdu_size: int
    dlms_version: int = DLMS_VERSION
    vaa_name: int = VAA_NAME_LN
    quality_of_service: int | None = None


@dataclass(frozen=True, slots=True)
class ConfirmedServiceError:
    """Confirmed-ServiceError: which service ([1] initiateError...), error group, value."""

    service: int
    error_group: int
    value: int


def _conformance_bytes(conformance: int) -> bytes:
    # [APPLICATION 31] IMPLICIT BIT STRING (SIZE(24)): 5F 1F, length 4, 0 unused bits.
    return b"\x5f\x1f\x04\x00" + conformance.to_bytes(3, "big")


def _read_conformance(reader: _Reader) -> int:
    if reader.take(4) != b"\x5f\x1f\x04\x00":
        raise _error("bad conformance block", "DLMS_BAD_BER")
    return reader.uint(3)


def _encode_initiate_request(apdu: InitiateRequest) -> bytes:
    out = bytearray((ApduTag.INITIATE_REQUEST,))
    if apdu.dedicated_key is None:
        out.append(0)
    else:
        out += b"\x01" + axdr.encode_length(len(apdu.dedicated_key)) + apdu.dedicated_key
    out += b"\x00" if apdu.response_allowed else b"\x01\x00"
    out += b"\x00" if apdu.quality_of_service is None else bytes((1, apdu.quality_of_service))
    out.append(apdu.dlms_version)
    out += _conformance_bytes(apdu.conformance)
    out += apdu.max_receive_pdu_size.to_bytes(2, "big")
    return bytes(out)


def _decode_initiate_request(reader: _Reader) -> InitiateRequest:
    dedicated_key = reader.take(reader.axdr_length()) if reader.byte() else None
    response_allowed = bool(reader.byte()) if reader.byte() else True
    quality = reader.byte() if reader.byte() else None
    version = reader.byte()
    conformance = _read_conformance(reader)
    max_pdu = reader.uint(2)
    reader.end()
    return InitiateRequest(conformance, max_pdu, version, dedicated_key, response_allowed, quality)


def _encode_initiate_response(apdu: InitiateResponse) -> bytes:
    quality = b"\x00" if apdu.quality_of_service is None else bytes((1, apdu.quality_of_service))
    return (bytes((ApduTag.INITIATE_RESPONSE,)) + quality + bytes((apdu.dlms_version,))
            + _conformance_bytes(apdu.conformance) + apdu.max_receive_pdu_size.to_bytes(2, "big")
            + apdu.vaa_name.to_bytes(2, "big"))


def _decode_initiate_response(reader: _Reader) -> InitiateResponse:
    quality = reader.byte() if reader.byte() else None
    version = reader.byte()
    conformance = _read_conformance(reader)
    max_pdu = reader.uint(2)
    vaa = reader.uint(2)
    reader.end()
    return InitiateResponse(conformance, max_pdu, version, vaa, quality)


# ====================================================================== ACSE


@dataclass(frozen=True, slots=True)
class AssociationRequest:
    """AARQ. ``user_information`` holds the (possibly glo-ciphered) xDLMS InitiateRequest bytes."""

    application_context: int = ApplicationContext.LN
    mechanism: int = Mechanism.NONE
    calling_ap_title: bytes | None = None
    calling_authentication_value: bytes | None = None
    user_information: bytes | None = None


@dataclass(frozen=True, slots=True)
class AssociationResponse:
    """AARE. ``user_information`` holds the (possibly glo-ciphered) InitiateResponse or a
    Confirmed-ServiceError."""

    result: int = AssociationResult.ACCEPTED
    diagnostic: int = AcseDiagnostic.NULL
    diagnostic_source: int = 1  # 1: acse-service-user, 2: acse-service-provider
    application_context: int = ApplicationContext.LN
    mechanism: int = Mechanism.NONE
    responding_ap_title: bytes | None = None
    responding_authentication_value: bytes | None = None
    user_information: bytes | None = None


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    reason: int | None = 0
    user_information: bytes | None = None


@dataclass(frozen=True, slots=True)
class ReleaseResponse:
    reason: int | None = 0
    user_information: bytes | None = None


def _context_name(value: int) -> bytes:
    return b"\x06\x07" + _CONTEXT_PREFIX + bytes((value,))


def _mechanism_name(value: int) -> bytes:
    return _MECHANISM_PREFIX + bytes((value,))


def _parse_context_name(content: bytes) -> int:
    name = _octets_in(0xA1, content, 0x06)
    if len(name) != 7 or name[:6] != _CONTEXT_PREFIX:
        raise _error(f"unknown application context {name.hex()}", "DLMS_BAD_CONTEXT")
    return name[6]


def _parse_mechanism(content: bytes) -> int:
    if len(content) != 7 or content[:6] != _MECHANISM_PREFIX:
        raise _error(f"unknown mechanism name {content.hex()}", "DLMS_BAD_MECHANISM")
    return content[6]


def _auth_value(content: bytes) -> bytes:
    return _octets_in(0xAC, content, 0x80)


def _encode_aarq(apdu: AssociationRequest) -> bytes:
    body = _tlv(0xA1, _context_name(apdu.application_context))
    if apdu.calling_ap_title is not None:
        body += _tlv(0xA6, _tlv(0x04, apdu.calling_ap_title))
    if apdu.mechanism != Mechanism.NONE:
        body += _tlv(0x8A, b"\x07\x80") + _tlv(0x8B, _mechanism_name(apdu.mechanism))
        if apdu.calling_authentication_value is not None:
            body += _tlv(0xAC, _tlv(0x80, apdu.calling_authentication_value))
    if apdu.user_information is not None:
        body += _tlv(0xBE, _tlv(0x04, apdu.user_information))
    return _tlv(ApduTag.AARQ, body)


# Optional AARQ/AARE fields we accept and ignore (protocol version, called titles...).
_IGNORED_ACSE_TAGS = frozenset({0x80, 0xA2, 0xA3, 0xA4, 0xA5, 0xA7, 0xA8, 0xA9, 0x88, 0x8A})


def _decode_aarq(body: bytes) -> AssociationRequest:
    context = None
    mechanism = Mechanism.NONE
    title = auth = user = None
    for tag, content in _ber_elements(body):
        if tag == 0xA1:
            context = _parse_context_name(content)
        elif tag == 0xA6:
            title = _octets_in(tag, content, 0x04)
        elif tag == 0x8B:
            mechanism = _parse_mechanism(content)
        elif tag == 0xAC:
            auth = _auth_value(content)
        elif tag == 0xBE:
            user = _octets_in(tag, content, 0x04)
        elif tag not in _IGNORED_ACSE_TAGS:
            raise _error(f"unknown AARQ element {tag:#04x}", "DLMS_UNKNOWN_TAG")
    if context is None:
        raise _error("AARQ without application context name", "DLMS_BAD_BER")
    return AssociationRequest(context, mechanism, title, auth, user)


def _encode_aare(apdu: AssociationResponse) -> bytes:
    body = _tlv(0xA1, _context_name(apdu.application_context))
    body += _tlv(0xA2, b"\x02\x01" + bytes((apdu.result,)))
    source_tag = 0xA1 if apdu.diagnostic_source == 1 else 0xA2
    body += _tlv(0xA3, _tlv(source_tag, b"\x02\x01" + bytes((apdu.diagnostic,))))
    if apdu.responding_ap_title is not None:
        body += _tlv(0xA4, _tlv(0x04, apdu.responding_ap_title))
    if apdu.mechanism != Mechanism.NONE:
        body += _tlv(0x88, b"\x07\x80") + _tlv(0x89, _mechanism_name(apdu.mechanism))
        if apdu.responding_authentication_value is not None:
            body += _tlv(0xAA, _tlv(0x80, apdu.responding_authentication_value))
    if apdu.user_information is not None:
        body += _tlv(0xBE, _tlv(0x04, apdu.user_information))
    return _tlv(ApduTag.AARE, body)


def _small_int(content: bytes, what: str) -> int:
    reader = _Reader(content)
    if reader.byte() != 0x02:
        raise _error(f"{what} is not an INTEGER", "DLMS_BAD_BER")
    value = reader.take(reader.ber_length())
    reader.end()
    if len(value) != 1:
        raise _error(f"{what} of {len(value)} bytes", "DLMS_BAD_BER")
    return value[0]


def _decode_aare(body: bytes) -> AssociationResponse:
    context = result = None
    diagnostic, source = AcseDiagnostic.NULL, 1
    mechanism = Mechanism.NONE
    title = auth = user = None
    for tag, content in _ber_elements(body):
        if tag == 0xA1:
            context = _parse_context_name(content)
        elif tag == 0xA2:
            result = _small_int(content, "association result")
        elif tag == 0xA3:
            inner = _Reader(content)
            source_tag = inner.byte()
            if source_tag not in (0xA1, 0xA2):
                raise _error(f"diagnostic source {source_tag:#04x}", "DLMS_BAD_BER")
            source = 1 if source_tag == 0xA1 else 2
            diagnostic = _small_int(inner.take(inner.ber_length()), "diagnostic")
            inner.end()
        elif tag == 0xA4:
            title = _octets_in(tag, content, 0x04)
        elif tag == 0x89:
            mechanism = _parse_mechanism(content)
        elif tag == 0xAA:
            auth = _octets_in(tag, content, 0x80)
        elif tag == 0xBE:
            user = _octets_in(tag, content, 0x04)
        elif tag not in _IGNORED_ACSE_TAGS:
            raise _error(f"unknown AARE element {tag:#04x}", "DLMS_UNKNOWN_TAG")
    if context is None or result is None:
        raise _error("AARE without context name or result", "DLMS_BAD_BER")
    return AssociationResponse(result, diagnostic, source, context, mechanism, title, auth, user)


def _encode_release(tag: int, reason: int | None, user: bytes | None) -> bytes:
    body = b"" if reason is None else _tlv(0x80, bytes((reason,)))
    if user is not None:
        body += _tlv(0xBE, _tlv(0x04, user))
    return _tlv(tag, body)


def _decode_release(body: bytes) -> tuple[int | None, bytes | None]:
    reason = user = None
    for tag, content in _ber_elements(body):
        if tag == 0x80:
            if len(content) != 1:
                raise _error("release reason of wrong size", "DLMS_BAD_BER")
            reason = content[0]
        elif tag == 0xBE:
            user = _octets_in(tag, content, 0x04)
        else:
            raise _error(f"unknown release element {tag:#04x}", "DLMS_UNKNOWN_TAG")
    return reason, user


# ====================================================================== xDLMS services


DEFAULT_INVOKE = 0xC1  # priority high, confirmed, invoke id 1


@dataclass(frozen=True, slots=True)
class GetRequestNormal:
    attribute: AttributeRef
    access: AccessDescriptor | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE


@dataclass(frozen=True, slots=True)
class GetRequestNext:
    block_number: int
    invoke_id_and_priority: int = DEFAULT_INVOKE


@dataclass(frozen=True, slots=True)
class GetResponseNormal:
    """``data`` is the encoded A-XDR value when ``result`` is 0 (success), else empty."""

    data: bytes
    result: int = 0
    invoke_id_and_priority: int = DEFAULT_INVOKE


@dataclass(frozen=True, slots=True)
class GetResponseWithBlock:
    block_number: int
    last_block: bool
    raw_data: bytes
    result: int = 0
    invoke_id_and_priority: int = DEFAULT_INVOKE


@dataclass(frozen=True, slots=True)
class MethodRef:
    class_id: int
    obis: Obis
    method: int


@dataclass(frozen=True, slots=True)
class ActionRequestNormal:
    method: MethodRef
    parameters: bytes | None = None
    invoke_id_and_priority: int = DEFAULT_INVOKE


@dataclass(frozen=True, slots=True)
class ActionResponseNormal:
    result: int = 0
    return_data: bytes | None = None
    return_result: int = 0
    invoke_id_and_priority: int = DEFAULT_INVOKE


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    state_error: int
    service_error: int


@dataclass(frozen=True, slots=True)
class CipheredApdu:
    """A glo-* APDU: ``tag`` says which service; ``payload`` is ciphertext plus tag."""

    tag: int
    security_control: int
    invocation_counter: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class GeneralGlobalCipher:
    system_title: bytes
    security_control: int
    invocation_counter: int
    payload: bytes


Apdu = (AssociationRequest | AssociationResponse | ReleaseRequest | ReleaseResponse | InitiateRequest
        | InitiateResponse | ConfirmedServiceError | GetRequestNormal | GetRequestNext | GetResponseNormal
        | GetResponseWithBlock | ActionRequestNormal | ActionResponseNormal | ExceptionResponse | CipheredApdu
        | GeneralGlobalCipher)


def _encode_get_request(apdu: GetRequestNormal | GetRequestNext) -> bytes:
    if isinstance(apdu, GetRequestNext):
        return bytes((ApduTag.GET_REQUEST, 2, apdu.invoke_id_and_priority)) + apdu.block_number.to_bytes(4, "big")
    out = bytes((ApduTag.GET_REQUEST, 1, apdu.invoke_id_and_priority)) + apdu.attribute.encode()
    if apdu.access is None:
        return out + b"\x00"
    return out + bytes((1, apdu.access.SELECTOR)) + axdr.encode(apdu.access.to_data())


def _decode_get_request(reader: _Reader) -> GetRequestNormal | GetRequestNext:
    choice = reader.byte()
    invoke = reader.byte()
    if choice == 2:
        block = reader.uint(4)
        reader.end()
        return GetRequestNext(block, invoke)
    if choice != 1:
        raise _error(f"Get-Request choice {choice} not supported", "DLMS_UNSUPPORTED_SERVICE")
    class_id = reader.uint(2)
    obis = Obis(reader.take(6))
    attribute = int.from_bytes(reader.take(1), "big", signed=True)
    access = None
    if reader.byte():
        selector = reader.byte()
        access = access_descriptor(selector, axdr.decode(reader.rest()))
    reader.end()
    return GetRequestNormal(AttributeRef(class_id, obis, attribute), access, invoke)


def _encode_get_response(apdu: GetResponseNormal | GetResponseWithBlock) -> bytes:
    if isinstance(apdu, GetResponseNormal):
        head = bytes((ApduTag.GET_RESPONSE, 1, apdu.invoke_id_and_priority))
        return head + (b"\x00" + apdu.data if apdu.result == 0 else bytes((1, apdu.result)))
    head = bytes((ApduTag.GET_RESPONSE, 2, apdu.invoke_id_and_priority, 1 if apdu.last_block else 0))
    head += apdu.block_number.to_bytes(4, "big")
    if apdu.result == 0:
        return head + b"\x00" + axdr.encode_length(len(apdu.raw_data)) + apdu.raw_data
    return head + bytes((1, apdu.result))


def _decode_get_response(reader: _Reader) -> GetResponseNormal | GetResponseWithBlock:
    choice = reader.byte()
    invoke = reader.byte()
    if choice == 1:
        if reader.byte() == 0:
            data = reader.rest()
            if not data:
                raise _error("Get-Response without data", "DLMS_TRUNCATED")
            return GetResponseNormal(data, 0, invoke)
        result = reader.byte()
        reader.end()
        return GetResponseNormal(b"", result, invoke)
    if choice == 2:
        last = reader.byte()
        block = reader.uint(4)
        if reader.byte() == 0:
            raw = reader.take(reader.axdr_length())
            reader.end()
            return GetResponseWithBlock(block, bool(last), raw, 0, invoke)
        result = reader.byte()
        reader.end()
        return GetResponseWithBlock(block, bool(last), b"", result, invoke)
    raise _error(f"Get-Response choice {choice} not supported", "DLMS_UNSUPPORTED_SERVICE")


def _encode_action_request(apdu: ActionRequestNormal) -> bytes:
    out = bytes((ApduTag.ACTION_REQUEST, 1, apdu.invoke_id_and_priority)) + apdu.method.class_id.to_bytes(2, "big")
    out += apdu.method.obis.raw + apdu.method.method.to_bytes(1, "big", signed=True)
    return out + (b"\x00" if apdu.parameters is None else b"\x01" + apdu.parameters)


def _decode_action_request(reader: _Reader) -> ActionRequestNormal:
    choice = reader.byte()
    if choice != 1:
        raise _error(f"Action-Request choice {choice} not supported", "DLMS_UNSUPPORTED_SERVICE")
    invoke = reader.byte()
    class_id = reader.uint(2)
    obis = Obis(reader.take(6))
    method = int.from_bytes(reader.take(1), "big", signed=True)
    parameters = None
    if reader.byte():
        parameters = reader.rest()
        axdr.decode(parameters)
    reader.end()
    return ActionRequestNormal(MethodRef(class_id, obis, method), parameters, invoke)


def _encode_action_response(apdu: ActionResponseNormal) -> bytes:
    out = bytes((ApduTag.ACTION_RESPONSE, 1, apdu.invoke_id_and_priority, apdu.result))
    if apdu.return_data is not None:
        return out + b"\x01\x00" + apdu.return_data
    if apdu.return_result:
        return out + bytes((1, 1, apdu.return_result))
    return out + b"\x00"


def _decode_action_response(reader: _Reader) -> ActionResponseNormal:
    choice = reader.byte()
    if choice != 1:
        raise _error(f"Action-Response choice {choice} not supported", "DLMS_UNSUPPORTED_SERVICE")
    invoke = reader.byte()
    result = reader.byte()
    if not reader.byte():
        reader.end()
        return ActionResponseNormal(result, None, 0, invoke)
    if reader.byte() == 0:
        data = reader.rest()
        axdr.decode(data)
        return ActionResponseNormal(result, data, 0, invoke)
    return_result = reader.byte()
    reader.end()
    return ActionResponseNormal(result, None, return_result, invoke)


# ====================================================================== entry points


def encode_apdu(apdu: Apdu) -> bytes:
    if isinstance(apdu, AssociationRequest):
        return _encode_aarq(apdu)
    if isinstance(apdu, AssociationResponse):
        return _encode_aare(apdu)
    if isinstance(apdu, ReleaseRequest):
        return _encode_release(ApduTag.RLRQ, apdu.reason, apdu.user_information)
    if isinstance(apdu, ReleaseResponse):
        return _encode_release(ApduTag.RLRE, apdu.reason, apdu.user_information)
    if isinstance(apdu, InitiateRequest):
        return _encode_initiate_request(apdu)
    if isinstance(apdu, InitiateResponse):
        return _encode_initiate_response(apdu)
    if isinstance(apdu, ConfirmedServiceError):
        return bytes((ApduTag.CONFIRMED_SERVICE_ERROR, apdu.service, apdu.error_group, apdu.value))
    if isinstance(apdu, GetRequestNormal | GetRequestNext):
        return _encode_get_request(apdu)
    if isinstance(apdu, GetResponseNormal | GetResponseWithBlock):
        return _encode_get_response(apdu)
    if isinstance(apdu, ActionRequestNormal):
        return _encode_action_request(apdu)
    if isinstance(apdu, ActionResponseNormal):
        return _encode_action_response(apdu)
    if isinstance(apdu, ExceptionResponse):
        return bytes((ApduTag.EXCEPTION_RESPONSE, apdu.state_error, apdu.service_error))
    if isinstance(apdu, CipheredApdu):
        content = bytes((apdu.security_control,)) + apdu.invocation_counter.to_bytes(4, "big") + apdu.payload
        return bytes((apdu.tag,)) + axdr.encode_length(len(content)) + content
    content = bytes((apdu.security_control,)) + apdu.invocation_counter.to_bytes(4, "big") + apdu.payload
    return (bytes((ApduTag.GENERAL_GLO_CIPHERING,)) + axdr.encode_length(len(apdu.system_title))
            + apdu.system_title + axdr.encode_length(len(content)) + content)


def _decode_ciphered_content(reader: _Reader) -> tuple[int, int, bytes]:
    content = _Reader(reader.take(reader.axdr_length()))
    reader.end()
    security_control = content.byte()
    counter = content.uint(4)
    return security_control, counter, content.rest()


def decode_apdu(buf: bytes) -> Apdu:
    """Decode one whole APDU; anything malformed raises DlmsProtocolError."""
    reader = _Reader(bytes(buf))
    tag = reader.byte()
    if tag in (ApduTag.AARQ, ApduTag.AARE, ApduTag.RLRQ, ApduTag.RLRE):
        body = reader.take(reader.ber_length())
        reader.end()
        if tag == ApduTag.AARQ:
            return _decode_aarq(body)
        if tag == ApduTag.AARE:
            return _decode_aare(body)
        reason, user = _decode_release(body)
        return ReleaseRequest(reason, user) if tag == ApduTag.RLRQ else ReleaseResponse(reason, user)
    if tag == ApduTag.INITIATE_REQUEST:
        return _decode_initiate_request(reader)
    if tag == ApduTag.INITIATE_RESPONSE:
        return _decode_initiate_response(reader)
    if tag == ApduTag.CONFIRMED_SERVICE_ERROR:
        service, group, value = reader.take(3)
        reader.end()
        return ConfirmedServiceError(service, group, value)
    if tag == ApduTag.GET_REQUEST:
        return _decode_get_request(reader)
    if tag == ApduTag.GET_RESPONSE:
        return _decode_get_response(reader)
    if tag == ApduTag.ACTION_REQUEST:
        return _decode_action_request(reader)
    if tag == ApduTag.ACTION_RESPONSE:
        return _decode_action_response(reader)
    if tag == ApduTag.EXCEPTION_RESPONSE:
        state, service = reader.take(2)
        # DLMS 8+ may append the expected invocation counter; it is informative only.
        return ExceptionResponse(state, service)
    if tag in PLAIN_TAG:
        return CipheredApdu(tag, *_decode_ciphered_content(reader))
    if tag == ApduTag.GENERAL_GLO_CIPHERING:
        title = reader.take(reader.axdr_length())
        return GeneralGlobalCipher(title, *_decode_ciphered_content(reader))
    raise _error(f"unknown APDU tag {tag:#04x}", "DLMS_UNKNOWN_TAG")


def decode_data(raw: bytes) -> Data:
    """The A-XDR value of a Get-Response."""
    return axdr.decode(raw)
