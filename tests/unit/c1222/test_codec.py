"""C12.22 codec: byte vectors from the IEEE example and captures, round trips, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.c1222 import errors as e
from adapters.c1222.codec import (
    Apdu,
    ApTitle,
    AuthValue,
    Epsem,
    FullRead,
    FullWrite,
    Ident,
    IdentResponse,
    KeyRing,
    Logoff,
    Logon,
    LogonResponse,
    Ok,
    PartialReadOffset,
    PartialWriteOffset,
    RawRequest,
    Security,
    SecurityMode,
    TableData,
    Terminate,
    Wait,
    apdu_length,
    decode_apdu,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    open_epsem,
    seal,
    table_checksum,
)
from adapters.c1222.session import ClientSession

# IEEE 1703 / C12.22 "example 8" (as in c1222_std_example8.pcap): ciphered security + partial read of ST1.
EXAMPLE8_REQUEST = bytes.fromhex(
    "604fa20580037bc175a60480027b04a803020103ac0fa20da00ba109800102810448f3d061be2a282881268841d10cda76206811b36f"
    "781489a11997773e117cb07aa3aa40374a7107c50da7f799c5d4e8")
EXAMPLE8_RESPONSE = bytes.fromhex(
    "6048a20480027b04a403020103a60580037bc175a803020103ac0fa20da00ba109800102810448f3d060be1e281c811a884baee43496"
    "31ab5e56a0e6e0e90dfad558591ee4ea334cb268")
# The key of the standard's example (public; Wireshark's test suite uses it too).
EXAMPLE8_KEYS = KeyRing({2: bytes.fromhex("01020304050607080102030405060708")})

IDENT_REQUEST = bytes.fromhex(
    "6030a211060f2b060104018285638e7f85f1c24e00a60a06082b06010401828563a806020413e81421be0728058103800120")


def test_example8_request_decodes_decrypts_and_verifies() -> None:
    apdu = decode_apdu(EXAMPLE8_REQUEST)
    assert apdu.called_ap_title == ApTitle((123, 8437), relative=True)
    assert apdu.calling_ap_title == ApTitle((123, 4), relative=True)
    assert apdu.calling_ap_invocation_id == 3
    assert apdu.auth_value == AuthValue(2, bytes.fromhex("48f3d061"))
    epsem = open_epsem(apdu, EXAMPLE8_KEYS)
    assert epsem.security_mode is SecurityMode.CIPHERED
    assert [decode_request(s) for s in epsem.services] == [
        Security(b"PASSWORD".ljust(20), 2), PartialReadOffset(1, 16, 16)]


def test_example8_response_mac_and_table_data() -> None:
    epsem = open_epsem(decode_apdu(EXAMPLE8_RESPONSE), EXAMPLE8_KEYS)
    assert decode_response(PartialReadOffset(1, 16, 16), epsem.services[0]) == TableData(b"MANUFACTURER SN ")
    assert table_checksum(b"MANUFACTURER SN ") == 0x92


def test_example8_reseals_to_identical_bytes() -> None:
    apdu = decode_apdu(EXAMPLE8_REQUEST)
    epsem = open_epsem(apdu, EXAMPLE8_KEYS)
    assert seal(apdu, epsem, EXAMPLE8_KEYS).encode() == EXAMPLE8_REQUEST


def test_example8_tampered_byte_fails_mac() -> None:
    tampered = bytearray(EXAMPLE8_REQUEST)
    tampered[-10] ^= 0x01
    with pytest.raises(e.AuthenticationFailed):
        open_epsem(decode_apdu(bytes(tampered)), EXAMPLE8_KEYS)


def test_tampered_header_fails_mac() -> None:
    apdu = decode_apdu(EXAMPLE8_REQUEST)
    other = Apdu(4, apdu.user_information, called_ap_title=apdu.called_ap_title,
                 calling_ap_title=apdu.calling_ap_title, auth_value=apdu.auth_value)
    with pytest.raises(e.AuthenticationFailed):
        open_epsem(other, EXAMPLE8_KEYS)


def test_unknown_key_id() -> None:
    with pytest.raises(e.UnknownKey):
        open_epsem(decode_apdu(EXAMPLE8_REQUEST), KeyRing({7: bytes(16)}))


@pytest.mark.parametrize("mode", [SecurityMode.AUTHENTICATED, SecurityMode.CIPHERED])
def test_security_modes_round_trip(mode: SecurityMode) -> None:
    keys = KeyRing({5: bytes(range(16))})
    apdu = Apdu(77, b"", called_ap_title=ApTitle((7, 12), True), calling_ap_title=ApTitle.parse("2.16.124.9"),
                calling_ae_qualifier=1, auth_value=AuthValue(5, b"\x01\x02\x03\x04"))
    epsem = Epsem((encode_request(FullRead(64)), encode_request(Wait(3))), mode)
    wire = seal(apdu, epsem, keys).encode()
    decoded = decode_apdu(wire)
    assert open_epsem(decoded, keys) == epsem
    if mode is SecurityMode.AUTHENTICATED:
        assert encode_request(FullRead(64)) in decoded.user_information
    else:
        assert encode_request(FullRead(64)) not in decoded.user_information


def test_ident_capture_bytes() -> None:
    apdu = decode_apdu(IDENT_REQUEST)
    assert apdu.called_ap_title == ApTitle.parse("1.3.6.1.4.1.33507.1919.12345678.0")
    assert apdu.calling_ap_title == ApTitle.parse("1.3.6.1.4.1.33507")
    assert apdu.calling_ap_invocation_id == 0x13E81421
    assert apdu.encode() == IDENT_REQUEST
    assert decode_request(open_epsem(apdu).services[0]) == Ident()


def test_elements_out_of_order_rejected() -> None:
    # swap called-AP-title (A2) and calling-AP-title (A6) of the ident capture
    body = IDENT_REQUEST[2:]
    a2 = body[:19]
    a6 = body[19:31]
    swapped = bytes([0x60, IDENT_REQUEST[1]]) + a6 + a2 + body[31:]
    with pytest.raises(e.MalformedApdu, match="order"):
        decode_apdu(swapped)


def test_elements_written_in_standard_order() -> None:
    apdu = Apdu(1, b"\x80\x01\x20", aso_context=ApTitle.parse("2.16.124.113620.1.22"),
                called_ap_title=ApTitle((1, 2), True), called_ap_invocation_id=9, calling_ap_title=ApTitle((3,), True),
                calling_ae_qualifier=4, mechanism_name=ApTitle.parse("2.16.124.113620.1.22.2.0"),
                auth_value=AuthValue(1, b"abcd"), indirect_reference=0)
    tags = [tag for tag, _ in apdu.elements()]
    assert tags == [0xA1, 0xA2, 0xA4, 0xA6, 0xA7, 0xA8, 0x8B, 0xAC, 0xBE]
    assert decode_apdu(apdu.encode()) == apdu


REQUESTS = [Ident(), Terminate(), Logoff(), Logon(2, b"meterhub  ", 60), Security(b"pw".ljust(20, b"\0"), 2),
            Security(b"x" * 20), FullRead(0x0840), PartialReadOffset(64, 0x012345, 600),
            FullWrite(7, b"\x01\x02"), PartialWriteOffset(62, 3, b"\xff"), Wait(30), RawRequest(0x27, b"\x01")]


@pytest.mark.parametrize("request_", REQUESTS)
def test_request_round_trip(request_: object) -> None:
    assert decode_request(encode_request(request_)) == request_  # type: ignore[arg-type]


def test_request_vectors() -> None:
    assert encode_request(PartialReadOffset(1, 16, 16)).hex() == "3f00010000100010"
    assert encode_request(Logon(0x1234, b"helloworld", 0)).hex() == "50123468656c6c6f776f726c640000"
    assert encode_request(Wait(0x70)).hex() == "7070"


def test_responses_round_trip() -> None:
    cases = [(Ident(), IdentResponse(3, 1, 0, b"\x00")), (Logon(1, b"u", 5), LogonResponse(60)),
             (FullRead(1), TableData(b"abc")), (Logoff(), Ok()), (RawRequest(0x25), RawResponse_(b"addr"))]
    for request, response in cases:
        assert decode_response(request, encode_response(response)) == response


def RawResponse_(body: bytes):
    from adapters.c1222.codec import RawResponse

    return RawResponse(body)


@pytest.mark.parametrize("code", range(0x01, 0x13))
def test_every_response_code_is_a_distinct_error(code: int) -> None:
    cls = e.RESPONSE_ERRORS[code]
    with pytest.raises(cls) as info:
        decode_response(FullRead(1), bytes([code]) + (b"\x00\x00\x10\x00" if code in (0x0F, 0x10) else b""))
    assert info.value.code == code
    assert len({c.reason for c in e.RESPONSE_ERRORS.values()}) == 18
    if code == 0x10:
        assert info.value.max_size == 4096  # type: ignore[attr-defined]


def test_reserved_response_code() -> None:
    with pytest.raises(e.UnknownResponseCode) as info:
        decode_response(Ident(), b"\x19")
    assert info.value.wire_code == 0x19


def test_read_checksum_checked() -> None:
    with pytest.raises(e.ChecksumMismatch):
        decode_response(FullRead(1), b"\x00\x00\x03abc\x00")


def test_length_above_cap_rejected_before_allocation() -> None:
    with pytest.raises(e.FrameTooLarge):
        apdu_length(b"\x60\x83\xff\xff\xff", cap=65536)
    with pytest.raises(e.FrameTooLarge):
        apdu_length(b"\x60\x85\x01\x00\x00\x00\x00")


def test_indefinite_length_rejected() -> None:
    with pytest.raises(e.MalformedApdu):
        apdu_length(b"\x60\x80\x00\x00")


def test_relative_and_absolute_titles() -> None:
    assert str(ApTitle.parse(".123.8437")) == ".123.8437"
    assert ApTitle.parse(".123.8437").content() == bytes.fromhex("7bc175")
    assert ApTitle.parse("2.16.124.113620.1.22.0").content() == bytes.fromhex("607c86f754011600")
    assert ApTitle.parse(".5").absolute().arcs == (2, 16, 124, 113620, 1, 22, 0, 5)


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None)
def test_garbage_apdu_raises_only_protocol_errors(data: bytes) -> None:
    try:
        apdu = decode_apdu(data)
    except e.C1222Error:
        return
    with contextlib.suppress(e.C1222Error):
        open_epsem(apdu, EXAMPLE8_KEYS)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_garbage_services_raise_only_protocol_errors(data: bytes) -> None:
    for request in (Ident(), FullRead(1), PartialReadOffset(1, 0, 3), Logon(1, b"", 0), RawRequest(0x26)):
        with contextlib.suppress(e.C1222Error):
            decode_response(request, data)
    with contextlib.suppress(e.C1222Error):
        decode_request(data)


@given(st.binary(min_size=1, max_size=120))
@settings(max_examples=300, deadline=None)
def test_mutated_example_never_escapes(noise: bytes) -> None:
    data = bytearray(EXAMPLE8_REQUEST)
    for i, b in enumerate(noise):
        data[(i * 37 + b) % len(data)] ^= b
    with contextlib.suppress(e.C1222Error):
        open_epsem(decode_apdu(bytes(data)), EXAMPLE8_KEYS)


@given(st.lists(st.binary(min_size=1, max_size=40).filter(lambda s: s[0] >= 0x20), min_size=1, max_size=5),
       st.integers(0, 2**31 - 1), st.sampled_from(list(SecurityMode)))
@settings(max_examples=100, deadline=None)
def test_epsem_round_trip_property(services: list[bytes], invocation: int, mode: SecurityMode) -> None:
    apdu = Apdu(invocation, b"", called_ap_title=ApTitle((7, invocation % 1000 + 1), True),
                calling_ap_title=ApTitle((99, 1), True),
                auth_value=AuthValue(2, b"\x00\x01\x02\x03") if mode else None)
    epsem = Epsem(tuple(services), mode)
    wire = seal(apdu, epsem, EXAMPLE8_KEYS).encode()
    decoded = decode_apdu(wire)
    assert decoded.encode() == wire
    assert open_epsem(decoded, EXAMPLE8_KEYS) == epsem


def _client_session() -> ClientSession:
    session = ClientSession(called_ap_title=ApTitle((7, 1), True), calling_ap_title=ApTitle((99, 1), True))
    session.send([FullRead(1)], 0.0)
    return session


@pytest.mark.parametrize(("received", "error", "kept"), [
    # Not an APDU at all: the unframed bytes are kept.
    (b"\xde\xad\xbe\xef", e.MalformedApdu, b"\xde\xad\xbe\xef"),
    # A length claim above the cap: refused from the header, the header kept (never the claimed size).
    (b"\x60\x83\x10\x00\x00", e.FrameTooLarge, b"\x60\x83\x10\x00\x00"),
    # A framed APDU whose EPSEM is garbage: exactly that APDU is kept.
    (Apdu(1, b"\x80\x05\x00", called_ap_title=ApTitle((99, 1), True), calling_ap_title=ApTitle((7, 1), True)).encode(),
     e.MalformedEpsem, None),
])
def test_session_errors_keep_the_received_bytes(received: bytes, error: type[e.C1222Error],
                                                kept: bytes | None) -> None:
    session = _client_session()
    session.receive_data(received)
    with pytest.raises(error) as info:
        session.next_event()
    assert info.value.raw == (received if kept is None else kept)
    assert info.value.raw_content_type == e.APDU_CONTENT_TYPE


@given(st.binary(min_size=1, max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_responses_end_in_protocol_errors_that_keep_their_bytes(data: bytes) -> None:
    session = _client_session()
    try:
        session.receive_data(data)
        session.next_event()
    except e.C1222Error as exc:
        assert exc.raw and data.startswith(exc.raw)  # noqa: PT017 - the property is about the exception
