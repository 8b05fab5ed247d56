"""Sans-I/O DLMS/COSEM association state machines (client and server).

    session.receive_data(bytes_from_peer)
    event = session.next_event()        # an event, or NEED_DATA
    bytes_to_peer = session.send(...)   # or the helpers: associate(), get(), release()...

The sessions frame APDUs in the TCP WRAPPER, apply and remove suite-0
ciphering, run LLS and HLS-GMAC, reassemble (client) and cut (server) Get
block transfers, and check that each APDU is allowed in the current state.
They never read a clock, sleep or touch a socket: challenges are passed in.
"""

from __future__ import annotations

import enum
import hmac
import logging
from dataclasses import dataclass, field
from typing import Final

from adapters.dlms import axdr, codec, security
from adapters.dlms.codec import (
    AcseDiagnostic,
    ActionRequestNormal,
    ActionResponseNormal,
    ApduTag,
    ApplicationContext,
    AssociationRequest,
    AssociationResponse,
    AssociationResult,
    CipheredApdu,
    ConfirmedServiceError,
    Conformance,
    ExceptionResponse,
    GeneralGlobalCipher,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithBlock,
    InitiateRequest,
    InitiateResponse,
    Mechanism,
    MethodRef,
    ReleaseRequest,
    ReleaseResponse,
    ServiceError,
    StateError,
    WrapperBuffer,
    WrapperFrame,
)
from adapters.dlms.cosem import ASSOCIATION_OBIS, AccessDescriptor, AttributeRef, ClassId
from adapters.dlms.errors import (
    DlmsAssociationRejected,
    DlmsAuthenticationFailed,
    DlmsConfirmedServiceError,
    DlmsError,
    DlmsExceptionResponse,
    DlmsFrameTooLarge,
    DlmsProtocolError,
    DlmsSecurityError,
    data_access_error,
)
from adapters.dlms.security import Keys

logger = logging.getLogger(__name__)


class NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

PUBLIC_CLIENT = 16
MANAGEMENT_CLIENT = 1
MANAGEMENT_SERVER = 1
CLIENT_CONFORMANCE = (Conformance.GENERAL_PROTECTION | Conformance.BLOCK_TRANSFER_WITH_GET | Conformance.GET
                      | Conformance.SELECTIVE_ACCESS | Conformance.ACTION)
SERVER_CONFORMANCE = CLIENT_CONFORMANCE
HLS_REPLY_METHOD = MethodRef(ClassId.ASSOCIATION_LN, ASSOCIATION_OBIS, 1)
# Bytes a Get-Response-with-datablock (and its glo envelope) adds around a block.
_BLOCK_OVERHEAD = 16
_CIPHER_OVERHEAD = 1 + 3 + 1 + 4 + security.TAG_SIZE


class State(enum.Enum):
    IDLE = "idle"
    AWAITING_AARE = "awaiting-aare"
    AWAITING_HLS_REPLY = "awaiting-hls-reply"  # client: must send f(StoC); server: waits for it
    AWAITING_HLS_RESULT = "awaiting-hls-result"
    ASSOCIATED = "associated"
    AWAITING_RESPONSE = "awaiting-response"
    AWAITING_RLRE = "awaiting-rlre"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """Authentication and ciphering of one side. ``keys`` turns on suite-0 ciphering
    (application context LN with ciphering) and is required for HLS-GMAC."""

    mechanism: int = Mechanism.NONE
    password: bytes | None = None
    keys: Keys | None = None
    system_title: bytes = b"MTH00000"

    def __post_init__(self) -> None:
        if self.mechanism not in (Mechanism.NONE, Mechanism.LLS, Mechanism.HLS_GMAC):
            raise ValueError(f"authentication mechanism {self.mechanism} not supported")
        if self.mechanism == Mechanism.LLS and not self.password:
            raise ValueError("LLS needs a password")
        if self.mechanism == Mechanism.HLS_GMAC and self.keys is None:
            raise ValueError("HLS-GMAC needs keys")
        if len(self.system_title) != security.SYSTEM_TITLE_SIZE:
            raise ValueError("system title must be 8 bytes")

    @property
    def ciphered(self) -> bool:
        return self.keys is not None


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Associated:
    """Client: the AARE accepted the association (HLS may still be pending)."""

    server_system_title: bytes | None
    conformance: int
    max_pdu_size: int
    hls_pending: bool


@dataclass(frozen=True, slots=True)
class Authenticated:
    """HLS-GMAC finished: the peer proved it holds the keys."""


@dataclass(frozen=True, slots=True)
class GetResult:
    """Client: the whole value of a Get (all blocks), as encoded A-XDR bytes."""

    data: bytes
    blocks: int = 1


@dataclass(frozen=True, slots=True)
class BlockReceived:
    """Client: a block arrived; send ``get_next()`` for the next one."""

    block_number: int


@dataclass(frozen=True, slots=True)
class Released:
    """The association was released (client: RLRE received; server: RLRQ answered)."""


@dataclass(frozen=True, slots=True)
class AssociationRefused:
    """Server: an AARQ was rejected (the AARE is already queued)."""

    diagnostic: int


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """Server: a request was answered with an exception (already queued)."""

    state_error: int
    service_error: int


@dataclass(frozen=True, slots=True)
class GetRequested:
    """Server: the application must answer with ``respond()``."""

    attribute: AttributeRef
    access: AccessDescriptor | None
    invoke_id_and_priority: int


ClientEvent = Associated | Authenticated | GetResult | BlockReceived | Released
ServerEvent = Associated | Authenticated | GetRequested | Released | AssociationRefused | RequestRefused


# ---------------------------------------------------------------- shared machinery


@dataclass
class _Cipher:
    """Ciphering context of one association: our title and counter, the peer's title
    and the highest counter we accepted from it (replays are refused)."""

    settings: SecuritySettings
    peer_title: bytes | None = None
    invocation_counter: int = 1
    peer_counter: int = -1
    envelope: str = "glo"  # "glo" (service-specific tags) or "general" (general-glo-ciphering)

    @property
    def keys(self) -> Keys:
        if self.settings.keys is None:
            raise DlmsSecurityError("no keys for a ciphered association")
        return self.settings.keys

    def seal(self, plain: bytes) -> bytes:
        counter = self.invocation_counter
        self.invocation_counter += 1
        payload = security.protect(security.AUTHENTICATED_ENCRYPTED, self.settings.system_title, counter,
                                   self.keys, plain)
        if self.envelope == "general":
            return codec.encode_apdu(GeneralGlobalCipher(self.settings.system_title,
                                                         security.AUTHENTICATED_ENCRYPTED, counter, payload))
        glo = codec.GLO_TAG.get(plain[0])
        if glo is None:
            raise DlmsSecurityError(f"no glo-ciphered form of APDU {plain[0]:#04x}")
        return codec.encode_apdu(CipheredApdu(glo, security.AUTHENTICATED_ENCRYPTED, counter, payload))

    def open(self, apdu: CipheredApdu | GeneralGlobalCipher) -> bytes:
        title = self.peer_title
        if isinstance(apdu, GeneralGlobalCipher):
            self.envelope = "general"
            if apdu.system_title:
                title = apdu.system_title
        if title is None:
            raise DlmsSecurityError("ciphered APDU before the peer's system title is known")
        if apdu.invocation_counter <= self.peer_counter:
            raise DlmsSecurityError(f"invocation counter {apdu.invocation_counter} replayed "
                                    f"(last {self.peer_counter})", reason="DLMS_INVOCATION_COUNTER_REPLAYED")
        plain = security.unprotect(apdu.security_control, title, apdu.invocation_counter, self.keys, apdu.payload)
        self.peer_counter = apdu.invocation_counter
        if isinstance(apdu, CipheredApdu) and codec.PLAIN_TAG[apdu.tag] != (plain[:1] or b"\x00")[0]:
            raise DlmsProtocolError("glo tag does not match the deciphered APDU", reason="DLMS_BAD_CIPHERED_APDU")
        return plain


class _Framing:
    def __init__(self, local_wport: int, remote_wport: int, max_apdu: int) -> None:
        self.local_wport = local_wport
        self.remote_wport = remote_wport
        self.buffer = WrapperBuffer(max_apdu)

    def frame(self, apdu: bytes) -> bytes:
        return WrapperFrame(self.local_wport, self.remote_wport, apdu).encode()


# ====================================================================== client


class ClientSession:
    """The client (head-end) side of one association with one logical device."""

    def __init__(self, settings: SecuritySettings, *, challenge: bytes = b"", client_wport: int = PUBLIC_CLIENT,
                 server_wport: int = MANAGEMENT_SERVER, max_pdu_size: int = 1024,
                 max_response_bytes: int = 4 * 1024 * 1024) -> None:
        if settings.mechanism == Mechanism.HLS_GMAC and not 8 <= len(challenge) <= 64:
            raise ValueError("HLS-GMAC needs an 8..64 byte client challenge")
        self.settings = settings
        self.state = State.IDLE
        self._challenge = challenge
        self._framing = _Framing(client_wport, server_wport, max(max_pdu_size, 0xFFFF))
        self._max_pdu = max_pdu_size
        self._max_response = max_response_bytes
        self._cipher = _Cipher(settings) if settings.ciphered else None
        self._server_challenge: bytes | None = None
        self._blocks = bytearray()
        self._block_number = 0
        self._invoke = 0
        self.server_system_title: bytes | None = None

    # ---- sending

    def _next_invoke(self) -> int:
        self._invoke = (self._invoke + 1) % 16
        return 0xC0 | self._invoke

    def _seal(self, apdu: codec.Apdu) -> bytes:
        plain = codec.encode_apdu(apdu)
        return self._framing.frame(self._cipher.seal(plain) if self._cipher else plain)

    def _require(self, *states: State) -> None:
        if self.state not in states:
            raise DlmsProtocolError(f"not allowed in state {self.state.value}", remote=False,
                                    reason="DLMS_BAD_STATE")

    def associate(self) -> bytes:
        self._require(State.IDLE)
        initiate = codec.encode_apdu(InitiateRequest(CLIENT_CONFORMANCE, self._max_pdu))
        user_information = self._cipher.seal(initiate) if self._cipher else initiate
        s = self.settings
        value = s.password if s.mechanism == Mechanism.LLS else (
            self._challenge if s.mechanism == Mechanism.HLS_GMAC else None)
        aarq = AssociationRequest(
            ApplicationContext.LN_CIPHERED if s.ciphered else ApplicationContext.LN, s.mechanism,
            s.system_title if s.ciphered else None, value, user_information)
        self.state = State.AWAITING_AARE
        return self._framing.frame(codec.encode_apdu(aarq))

    def hls_reply(self) -> bytes:
        """Action reply_to_HLS_authentication carrying f(StoC)."""
        self._require(State.AWAITING_HLS_REPLY)
        assert self._cipher is not None
        assert self._server_challenge is not None
        reply = security.hls_reply(self.settings.system_title, self._cipher.invocation_counter, self._cipher.keys,
                                   self._server_challenge)
        self.state = State.AWAITING_HLS_RESULT
        return self._seal(ActionRequestNormal(HLS_REPLY_METHOD, axdr.encode(axdr.octet_string(reply)),
                                              self._next_invoke()))

    def get(self, attribute: AttributeRef, access: AccessDescriptor | None = None) -> bytes:
        self._require(State.ASSOCIATED)
        self._blocks.clear()
        self._block_number = 0
        self.state = State.AWAITING_RESPONSE
        return self._seal(GetRequestNormal(attribute, access, self._next_invoke()))

    def get_next(self) -> bytes:
        self._require(State.AWAITING_RESPONSE)
        return self._seal(GetRequestNext(self._block_number, 0xC0 | self._invoke))

    def release(self) -> bytes:
        self._require(State.ASSOCIATED)
        self.state = State.AWAITING_RLRE
        return self._framing.frame(codec.encode_apdu(ReleaseRequest(0)))

    # ---- receiving

    def receive_data(self, data: bytes) -> None:
        self._framing.buffer.feed(data)

    def next_event(self) -> ClientEvent | NeedData:
        frame = self._framing.buffer.next_frame()
        if frame is None:
            return NEED_DATA
        apdu = codec.decode_apdu(frame.apdu)
        if isinstance(apdu, CipheredApdu | GeneralGlobalCipher):
            if self._cipher is None:
                raise DlmsProtocolError("ciphered APDU on a plain association", reason="DLMS_UNEXPECTED_APDU")
            apdu = codec.decode_apdu(self._cipher.open(apdu))
        if isinstance(apdu, ExceptionResponse):
            self.state = State.ASSOCIATED if self.state is State.AWAITING_RESPONSE else self.state
            raise DlmsExceptionResponse(f"exception response: state error {apdu.state_error}, "
                                        f"service error {apdu.service_error}",
                                        state_error=apdu.state_error, service_error=apdu.service_error)
        if isinstance(apdu, ConfirmedServiceError):
            raise DlmsConfirmedServiceError(
                f"confirmed service error: service {apdu.service}, group {apdu.error_group}, value {apdu.value}",
                service=apdu.service, error_group=apdu.error_group, value=apdu.value)
        if self.state is State.AWAITING_AARE and isinstance(apdu, AssociationResponse):
            return self._on_aare(apdu)
        if self.state is State.AWAITING_HLS_RESULT and isinstance(apdu, ActionResponseNormal):
            return self._on_hls_result(apdu)
        if self.state is State.AWAITING_RESPONSE and isinstance(apdu, GetResponseNormal | GetResponseWithBlock):
            return self._on_get_response(apdu)
        if self.state is State.AWAITING_RLRE and isinstance(apdu, ReleaseResponse):
            self.state = State.RELEASED
            return Released()
        raise DlmsProtocolError(f"unexpected {type(apdu).__name__} in state {self.state.value}",
                                reason="DLMS_UNEXPECTED_APDU")

    def _on_aare(self, aare: AssociationResponse) -> Associated:
        if aare.user_information is not None and aare.user_information[:1] == bytes((ApduTag.CONFIRMED_SERVICE_ERROR,)):
            error = codec.decode_apdu(aare.user_information)
            assert isinstance(error, ConfirmedServiceError)
            raise DlmsConfirmedServiceError(
                f"association refused: initiate error group {error.error_group} value {error.value}",
                service=error.service, error_group=error.error_group, value=error.value)
        if aare.result != AssociationResult.ACCEPTED:
            self.state = State.IDLE
            raise DlmsAssociationRejected(f"association rejected: result {aare.result}, diagnostic {aare.diagnostic}",
                                          result=aare.result, diagnostic=aare.diagnostic)
        if aare.user_information is None:
            raise DlmsProtocolError("AARE without InitiateResponse", reason="DLMS_BAD_BER")
        raw = aare.user_information
        if self._cipher is not None:
            if aare.responding_ap_title is None:
                raise DlmsProtocolError("ciphered AARE without the server system title", reason="DLMS_BAD_BER")
            self._cipher.peer_title = self.server_system_title = aare.responding_ap_title
            envelope = codec.decode_apdu(raw)
            if not isinstance(envelope, CipheredApdu) or envelope.tag != ApduTag.GLO_INITIATE_RESPONSE:
                raise DlmsProtocolError("ciphered association without glo-InitiateResponse",
                                        reason="DLMS_UNEXPECTED_APDU")
            raw = self._cipher.open(envelope)
        initiate = codec.decode_apdu(raw)
        if not isinstance(initiate, InitiateResponse):
            raise DlmsProtocolError("AARE user information is not an InitiateResponse", reason="DLMS_UNEXPECTED_APDU")
        hls = self.settings.mechanism == Mechanism.HLS_GMAC
        if hls:
            if not aare.responding_authentication_value:
                raise DlmsAuthenticationFailed("AARE without the server challenge")
            self._server_challenge = aare.responding_authentication_value
            self.state = State.AWAITING_HLS_REPLY
        else:
            self.state = State.ASSOCIATED
        return Associated(aare.responding_ap_title, initiate.conformance, initiate.max_receive_pdu_size, hls)

    def _on_hls_result(self, response: ActionResponseNormal) -> Authenticated:
        assert self._cipher is not None
        assert self.server_system_title is not None
        if response.result != 0 or response.return_data is None:
            raise DlmsAuthenticationFailed(f"server refused our HLS reply (action result {response.result})")
        reply = axdr.decode(response.return_data).octets
        security.verify_hls_reply(reply, self.server_system_title, self._cipher.keys, self._challenge)
        self.state = State.ASSOCIATED
        return Authenticated()

    def _on_get_response(self, response: GetResponseNormal | GetResponseWithBlock) -> GetResult | BlockReceived:
        if response.invoke_id_and_priority & 0x0F != self._invoke:
            raise DlmsProtocolError("response to another invoke id", reason="DLMS_BAD_INVOKE_ID")
        if response.result != 0:
            self.state = State.ASSOCIATED
            raise data_access_error(response.result, "Get")
        if isinstance(response, GetResponseNormal):
            self.state = State.ASSOCIATED
            return GetResult(response.data)
        if response.block_number != self._block_number + 1:
            raise DlmsProtocolError(f"block {response.block_number} after {self._block_number}",
                                    reason="DLMS_BAD_BLOCK_NUMBER")
        if len(self._blocks) + len(response.raw_data) > self._max_response:
            raise DlmsFrameTooLarge(f"response exceeds {self._max_response} bytes")
        self._blocks += response.raw_data
        self._block_number = response.block_number
        if response.last_block:
            self.state = State.ASSOCIATED
            return GetResult(bytes(self._blocks), self._block_number)
        return BlockReceived(self._block_number)


# ====================================================================== server


@dataclass
class _PendingBlocks:
    data: bytes
    block_size: int
    sent: int = 0
    invoke: int = 0
    blocks: list[bytes] = field(default_factory=list)


class ServerSession:
    """The meter side of associations on one connection. ACSE, HLS and block
    transfer are answered inside; Get requests go to the application."""

    def __init__(self, settings: SecuritySettings, *, challenge: bytes = b"", server_wport: int = MANAGEMENT_SERVER,
                 max_pdu_size: int = 1024, max_apdu: int = 0xFFFF) -> None:
        self.settings = settings
        self.state = State.IDLE
        self._challenge = challenge
        self._framing = _Framing(server_wport, PUBLIC_CLIENT, max_apdu)
        self._server_max_pdu = max_pdu_size
        self._client_max_pdu = max_pdu_size
        self._cipher: _Cipher | None = None
        self._client_challenge = b""
        self._outgoing = bytearray()
        self._pending: _PendingBlocks | None = None
        self._ciphered_request = False

    def data_to_send(self) -> bytes:
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        self._framing.buffer.feed(data)

    def _queue(self, apdu: codec.Apdu) -> None:
        plain = codec.encode_apdu(apdu)
        if self._cipher is not None and self._ciphered_request:
            plain = self._cipher.seal(plain)
        self._outgoing += self._framing.frame(plain)

    def _refuse(self, state_error: int, service_error: int) -> RequestRefused:
        self._queue(ExceptionResponse(state_error, service_error))
        return RequestRefused(state_error, service_error)

    def next_event(self) -> ServerEvent | NeedData:
        frame = self._framing.buffer.next_frame()
        if frame is None:
            return NEED_DATA
        # Answer to whichever client wPort asked.
        self._framing.remote_wport = frame.source
        apdu = codec.decode_apdu(frame.apdu)
        if isinstance(apdu, AssociationRequest):
            return self._on_aarq(apdu)
        if isinstance(apdu, ReleaseRequest):
            self.state = State.RELEASED
            self._ciphered_request = False
            self._outgoing += self._framing.frame(codec.encode_apdu(ReleaseResponse(0)))
            return Released()
        self._ciphered_request = isinstance(apdu, CipheredApdu | GeneralGlobalCipher)
        if self._ciphered_request:
            assert isinstance(apdu, CipheredApdu | GeneralGlobalCipher)
            if self._cipher is None:
                return self._refuse(StateError.SERVICE_NOT_ALLOWED, ServiceError.DECIPHERING_ERROR)
            try:
                apdu = codec.decode_apdu(self._cipher.open(apdu))
            except DlmsSecurityError as exc:
                logger.warning("refusing a request that does not decipher: %s", exc.reason)
                self._ciphered_request = False
                service = (ServiceError.INVOCATION_COUNTER_ERROR if exc.reason == "DLMS_INVOCATION_COUNTER_REPLAYED"
                           else ServiceError.DECIPHERING_ERROR)
                return self._refuse(StateError.SERVICE_NOT_ALLOWED, service)
        elif self._cipher is not None and self.state is not State.IDLE:
            # A ciphered association takes no plain xDLMS requests.
            return self._refuse(StateError.SERVICE_NOT_ALLOWED, ServiceError.OPERATION_NOT_POSSIBLE)
        if self.state is State.AWAITING_HLS_REPLY and isinstance(apdu, ActionRequestNormal):
            return self._on_hls_reply(apdu)
        if self.state is State.ASSOCIATED and isinstance(apdu, GetRequestNormal):
            self._pending = None
            return GetRequested(apdu.attribute, apdu.access, apdu.invoke_id_and_priority)
        if self.state is State.ASSOCIATED and isinstance(apdu, GetRequestNext):
            self._send_next_block(apdu)
            return NEED_DATA if not self._framing.buffer.pending else self.next_event()
        if isinstance(apdu, GetRequestNormal | GetRequestNext | ActionRequestNormal):
            return self._refuse(StateError.SERVICE_NOT_ALLOWED, ServiceError.OPERATION_NOT_POSSIBLE)
        return self._refuse(StateError.SERVICE_UNKNOWN, ServiceError.SERVICE_NOT_SUPPORTED)

    # ---- ACSE

    def _reject(self, aarq: AssociationRequest, diagnostic: int, user: bytes | None = None) -> AssociationRefused:
        aare = AssociationResponse(AssociationResult.REJECTED_PERMANENT, diagnostic, 1, aarq.application_context,
                                   user_information=user)
        self._outgoing += self._framing.frame(codec.encode_apdu(aare))
        self.state = State.IDLE
        return AssociationRefused(diagnostic)

    def _on_aarq(self, aarq: AssociationRequest) -> ServerEvent:
        s = self.settings
        self._pending = None
        self._ciphered_request = False
        expected_context = ApplicationContext.LN_CIPHERED if s.ciphered else ApplicationContext.LN
        if aarq.application_context != expected_context:
            return self._reject(aarq, AcseDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
        if aarq.mechanism != s.mechanism:
            diagnostic = (AcseDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED if aarq.mechanism == Mechanism.NONE
                          else AcseDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED)
            return self._reject(aarq, diagnostic)
        if s.mechanism == Mechanism.LLS and not hmac.compare_digest(aarq.calling_authentication_value or b"",
                                                                    s.password or b""):
            return self._reject(aarq, AcseDiagnostic.AUTHENTICATION_FAILURE)
        cipher = None
        raw = aarq.user_information
        if raw is None:
            return self._reject(aarq, AcseDiagnostic.NO_REASON_GIVEN)
        if s.ciphered:
            if aarq.calling_ap_title is None or len(aarq.calling_ap_title) != security.SYSTEM_TITLE_SIZE:
                return self._reject(aarq, AcseDiagnostic.NO_REASON_GIVEN)
            cipher = _Cipher(s, aarq.calling_ap_title)
            envelope = codec.decode_apdu(raw)
            if not isinstance(envelope, CipheredApdu) or envelope.tag != ApduTag.GLO_INITIATE_REQUEST:
                return self._reject(aarq, AcseDiagnostic.NO_REASON_GIVEN)
            try:
                raw = cipher.open(envelope)
            except DlmsError:
                return self._reject(aarq, AcseDiagnostic.AUTHENTICATION_FAILURE)
        initiate = codec.decode_apdu(raw)
        if not isinstance(initiate, InitiateRequest):
            return self._reject(aarq, AcseDiagnostic.NO_REASON_GIVEN)
        if initiate.dlms_version < codec.DLMS_VERSION:
            # initiateError [1], group initiate (6), value dlms-version-too-low (1)
            error = codec.encode_apdu(ConfirmedServiceError(1, 6, 1))
            return self._reject(aarq, AcseDiagnostic.NO_REASON_GIVEN, error)
        if s.mechanism == Mechanism.HLS_GMAC and not 8 <= len(aarq.calling_authentication_value or b"") <= 64:
            return self._reject(aarq, AcseDiagnostic.AUTHENTICATION_FAILURE)
        self._client_max_pdu = max(64, initiate.max_receive_pdu_size or 0xFFFF)
        response = codec.encode_apdu(InitiateResponse(initiate.conformance & SERVER_CONFORMANCE,
                                                      self._server_max_pdu))
        if cipher is not None:
            response = cipher.seal(response)
        hls = s.mechanism == Mechanism.HLS_GMAC
        aare = AssociationResponse(
            AssociationResult.ACCEPTED,
            AcseDiagnostic.AUTHENTICATION_REQUIRED if hls else AcseDiagnostic.NULL, 1, aarq.application_context,
            s.mechanism, s.system_title if s.ciphered else None, self._challenge if hls else None, response)
        self._outgoing += self._framing.frame(codec.encode_apdu(aare))
        self._cipher = cipher
        self._client_challenge = aarq.calling_authentication_value or b""
        self.state = State.AWAITING_HLS_REPLY if hls else State.ASSOCIATED
        return Associated(aarq.calling_ap_title, initiate.conformance & SERVER_CONFORMANCE, self._client_max_pdu, hls)

    def _on_hls_reply(self, request: ActionRequestNormal) -> ServerEvent:
        assert self._cipher is not None
        assert self._cipher.peer_title is not None
        if request.method != HLS_REPLY_METHOD or request.parameters is None:
            return self._refuse(StateError.SERVICE_NOT_ALLOWED, ServiceError.OPERATION_NOT_POSSIBLE)
        try:
            reply = axdr.decode(request.parameters).octets
            security.verify_hls_reply(reply, self._cipher.peer_title, self._cipher.keys, self._challenge)
        except DlmsError as exc:
            logger.warning("HLS-GMAC reply refused: %s", exc.reason)
            self._queue(ActionResponseNormal(3, None, 0, request.invoke_id_and_priority))  # read-write-denied
            self.state = State.IDLE
            self._cipher = None
            return AssociationRefused(AcseDiagnostic.AUTHENTICATION_FAILURE)
        ours = security.hls_reply(self.settings.system_title, self._cipher.invocation_counter, self._cipher.keys,
                                  self._client_challenge)
        self._queue(ActionResponseNormal(0, axdr.encode(axdr.octet_string(ours)), 0, request.invoke_id_and_priority))
        self.state = State.ASSOCIATED
        return Authenticated()

    # ---- Get

    def respond(self, request: GetRequested, result: bytes | int) -> None:
        """Answer a Get with encoded A-XDR data, or with a data-access-result code (int).
        Data larger than the client's PDU goes out in blocks."""
        invoke = request.invoke_id_and_priority
        if isinstance(result, int):
            self._queue(GetResponseNormal(b"", result, invoke))
            return
        overhead = 3 + (_CIPHER_OVERHEAD if self._cipher is not None and self._ciphered_request else 0)
        if len(result) + overhead <= self._client_max_pdu:
            self._queue(GetResponseNormal(result, 0, invoke))
            return
        block_size = max(16, self._client_max_pdu - _BLOCK_OVERHEAD
                         - (_CIPHER_OVERHEAD if self._ciphered_request else 0))
        self._pending = _PendingBlocks(result, block_size, 0, invoke)
        self._send_next_block(GetRequestNext(0, invoke))

    def _send_next_block(self, request: GetRequestNext) -> None:
        pending = self._pending
        if pending is None:
            self._queue(GetResponseWithBlock(request.block_number, True, b"", 16, request.invoke_id_and_priority))
            return
        if request.block_number != pending.sent:
            self._pending = None
            self._queue(GetResponseWithBlock(request.block_number, True, b"", 15, request.invoke_id_and_priority))
            return
        start = pending.sent * pending.block_size
        chunk = pending.data[start:start + pending.block_size]
        pending.sent += 1
        last = start + pending.block_size >= len(pending.data)
        self._queue(GetResponseWithBlock(pending.sent, last, chunk, 0, pending.invoke))
        if last:
            self._pending = None
