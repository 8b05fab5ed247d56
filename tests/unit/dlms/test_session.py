"""Client and server sessions wired back to back in memory (no sockets, no clock)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dlms import axdr, codec
from adapters.dlms.axdr import Tag
from adapters.dlms.codec import AcseDiagnostic, Mechanism
from adapters.dlms.cosem import CLOCK_OBIS, LOAD_PROFILE_OBIS, AttributeRef, EntryDescriptor
from adapters.dlms.errors import (
    DlmsAssociationRejected,
    DlmsConfirmedServiceError,
    DlmsError,
    DlmsExceptionResponse,
    DlmsFrameTooLarge,
    DlmsObjectUndefined,
    DlmsProtocolError,
)
from adapters.dlms.security import Keys
from adapters.dlms.session import (
    NEED_DATA,
    Associated,
    AssociationRefused,
    Authenticated,
    BlockReceived,
    ClientSession,
    GetRequested,
    GetResult,
    Released,
    RequestRefused,
    SecuritySettings,
    ServerSession,
    State,
)

KEYS = Keys(bytes(range(16)), bytes(range(0xD0, 0xE0)))
CLIENT_TITLE = b"MHHUB001"
SERVER_TITLE = b"MHS00001"
CLOCK = AttributeRef(8, CLOCK_OBIS, 2)
Answer = Callable[[GetRequested], bytes | int]


def clock_answer(request: GetRequested) -> bytes | int:
    return axdr.encode(axdr.octet_string(bytes.fromhex("07EA030107000F0000000000")))


class Pair:
    def __init__(self, client: SecuritySettings, server: SecuritySettings, answer: Answer = clock_answer, *,
                 client_pdu: int = 1024) -> None:
        self.client = ClientSession(client, challenge=b"C" * 16, max_pdu_size=client_pdu)
        self.server = ServerSession(server, challenge=b"S" * 16)
        self.answer = answer
        self.server_events: list[object] = []

    def exchange(self, request: bytes) -> object:
        self.server.receive_data(request)
        while (event := self.server.next_event()) is not NEED_DATA:
            self.server_events.append(event)
            if isinstance(event, GetRequested):
                self.server.respond(event, self.answer(event))
        self.client.receive_data(self.server.data_to_send())
        return self.client.next_event()

    def associate(self) -> Associated:
        event = self.exchange(self.client.associate())
        assert isinstance(event, Associated)
        if event.hls_pending:
            assert isinstance(self.exchange(self.client.hls_reply()), Authenticated)
        return event

    def get(self, attribute: AttributeRef = CLOCK, access: EntryDescriptor | None = None) -> GetResult:
        event = self.exchange(self.client.get(attribute, access))
        while isinstance(event, BlockReceived):
            event = self.exchange(self.client.get_next())
        assert isinstance(event, GetResult)
        return event


def test_public_association_get_release() -> None:
    settings_ = SecuritySettings()
    pair = Pair(settings_, settings_)
    associated = pair.associate()
    assert associated.hls_pending is False
    assert pair.client.state is State.ASSOCIATED
    result = pair.get()
    assert axdr.decode(result.data).octets.hex() == "07ea030107000f0000000000"
    assert isinstance(pair.exchange(pair.client.release()), Released)
    assert pair.client.state is State.RELEASED


def test_lls_password() -> None:
    server = SecuritySettings(Mechanism.LLS, b"12345678")
    pair = Pair(SecuritySettings(Mechanism.LLS, b"12345678"), server)
    pair.associate()
    assert pair.get().data


def test_lls_wrong_password_is_rejected() -> None:
    pair = Pair(SecuritySettings(Mechanism.LLS, b"wrong"), SecuritySettings(Mechanism.LLS, b"12345678"))
    with pytest.raises(DlmsAssociationRejected) as caught:
        pair.exchange(pair.client.associate())
    assert caught.value.diagnostic == AcseDiagnostic.AUTHENTICATION_FAILURE
    assert caught.value.reason == "DLMS_ASSOCIATION_REJECTED"
    assert pair.server_events == [AssociationRefused(AcseDiagnostic.AUTHENTICATION_FAILURE)]


def test_missing_authentication_is_rejected() -> None:
    pair = Pair(SecuritySettings(), SecuritySettings(Mechanism.LLS, b"12345678"))
    with pytest.raises(DlmsAssociationRejected) as caught:
        pair.exchange(pair.client.associate())
    assert caught.value.diagnostic == AcseDiagnostic.AUTHENTICATION_MECHANISM_NAME_REQUIRED


def test_hls_gmac_with_glo_ciphering() -> None:
    pair = Pair(SecuritySettings(Mechanism.HLS_GMAC, keys=KEYS, system_title=CLIENT_TITLE),
                SecuritySettings(Mechanism.HLS_GMAC, keys=KEYS, system_title=SERVER_TITLE))
    captured: list[bytes] = []
    original = pair.exchange

    def spy(request: bytes) -> object:
        captured.append(request)
        return original(request)

    pair.exchange = spy  # type: ignore[method-assign]
    associated = pair.associate()
    assert associated.server_system_title == SERVER_TITLE
    assert pair.client.state is State.ASSOCIATED
    assert pair.get().data
    # After the AARQ every xDLMS request travels glo-ciphered, never in clear.
    assert captured[1][8] == codec.ApduTag.GLO_ACTION_REQUEST
    assert captured[2][8] == codec.ApduTag.GLO_GET_REQUEST
    assert bytes.fromhex("0000010000FF") not in captured[2]


def test_hls_with_wrong_keys_fails() -> None:
    other = Keys(bytes(16), bytes(range(0xD0, 0xE0)))
    pair = Pair(SecuritySettings(Mechanism.HLS_GMAC, keys=other, system_title=CLIENT_TITLE),
                SecuritySettings(Mechanism.HLS_GMAC, keys=KEYS, system_title=SERVER_TITLE))
    # The glo-InitiateRequest already fails to decipher: rejected as an authentication failure.
    with pytest.raises(DlmsAssociationRejected) as caught:
        pair.exchange(pair.client.associate())
    assert caught.value.diagnostic == AcseDiagnostic.AUTHENTICATION_FAILURE


def test_block_transfer_reassembles() -> None:
    big = axdr.encode(axdr.array(*[axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, i) for i in range(2000)]))
    pair = Pair(SecuritySettings(), SecuritySettings(), lambda _r: big, client_pdu=256)
    pair.associate()
    result = pair.get(AttributeRef(7, LOAD_PROFILE_OBIS, 2), EntryDescriptor())
    assert result.data == big
    assert result.blocks == -(-len(big) // (256 - 16))


def test_block_transfer_ciphered() -> None:
    big = axdr.encode(axdr.octet_string(bytes(range(256)) * 20))
    pair = Pair(SecuritySettings(Mechanism.HLS_GMAC, keys=KEYS, system_title=CLIENT_TITLE),
                SecuritySettings(Mechanism.HLS_GMAC, keys=KEYS, system_title=SERVER_TITLE), lambda _r: big,
                client_pdu=300)
    pair.associate()
    result = pair.get()
    assert result.data == big
    assert result.blocks > 1


def test_response_cap() -> None:
    big = axdr.encode(axdr.octet_string(bytes(5000)))
    pair = Pair(SecuritySettings(), SecuritySettings(), lambda _r: big, client_pdu=256)
    pair.client = ClientSession(SecuritySettings(), max_pdu_size=256, max_response_bytes=1024)
    pair.associate()
    with pytest.raises(DlmsFrameTooLarge):
        pair.get()


def test_data_access_error() -> None:
    pair = Pair(SecuritySettings(), SecuritySettings(), lambda _r: 4)
    pair.associate()
    with pytest.raises(DlmsObjectUndefined) as caught:
        pair.get()
    assert caught.value.code == 4
    assert pair.client.state is State.ASSOCIATED


def test_get_before_association_gets_an_exception_response() -> None:
    server = ServerSession(SecuritySettings())
    server.receive_data(codec.WrapperFrame(16, 1, codec.encode_apdu(codec.GetRequestNormal(CLOCK))).encode())
    assert server.next_event() == RequestRefused(1, 1)
    client = ClientSession(SecuritySettings())
    client.state = State.AWAITING_RESPONSE
    client.receive_data(server.data_to_send())
    with pytest.raises(DlmsExceptionResponse) as caught:
        client.next_event()
    assert (caught.value.state_error, caught.value.service_error) == (1, 1)


def test_old_dlms_version_gets_a_confirmed_service_error() -> None:
    aarq = codec.AssociationRequest(user_information=codec.encode_apdu(codec.InitiateRequest(0x1F, 1024, 5)))
    server = ServerSession(SecuritySettings())
    server.receive_data(codec.WrapperFrame(16, 1, codec.encode_apdu(aarq)).encode())
    assert isinstance(server.next_event(), AssociationRefused)
    client = ClientSession(SecuritySettings())
    client.state = State.AWAITING_AARE
    client.receive_data(server.data_to_send())
    with pytest.raises(DlmsConfirmedServiceError) as caught:
        client.next_event()
    assert (caught.value.error_group, caught.value.value) == (6, 1)


def test_client_refuses_to_send_out_of_state() -> None:
    client = ClientSession(SecuritySettings())
    with pytest.raises(DlmsProtocolError) as caught:
        client.get(CLOCK)
    assert caught.value.remote is False
    assert caught.value.reason == "DLMS_BAD_STATE"


def test_unexpected_apdu_is_a_remote_error() -> None:
    client = ClientSession(SecuritySettings())
    client.associate()
    client.receive_data(codec.WrapperFrame(1, 16, bytes.fromhex("C401C1001103")).encode())
    with pytest.raises(DlmsProtocolError) as caught:
        client.next_event()
    assert caught.value.reason == "DLMS_UNEXPECTED_APDU"


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_server_garbage_ends_in_dlms_errors(raw: bytes) -> None:
    server = ServerSession(SecuritySettings(Mechanism.HLS_GMAC, keys=KEYS, system_title=SERVER_TITLE),
                           challenge=b"S" * 16)
    server.receive_data(codec.WrapperFrame(16, 1, raw).encode())
    try:
        while server.next_event() is not NEED_DATA:
            pass
    except DlmsProtocolError:
        pass


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_client_garbage_ends_in_dlms_errors(raw: bytes) -> None:
    client = ClientSession(SecuritySettings(Mechanism.HLS_GMAC, keys=KEYS, system_title=CLIENT_TITLE),
                           challenge=b"C" * 16)
    client.associate()
    client.receive_data(codec.WrapperFrame(1, 16, raw).encode())
    with contextlib.suppress(DlmsError, DlmsProtocolError):
        client.next_event()
