"""APDU and WRAPPER codec: published byte vectors, round trips, garbage."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dlms import codec
from adapters.dlms.codec import (
    ActionRequestNormal,
    ActionResponseNormal,
    ApduTag,
    AssociationRequest,
    AssociationResponse,
    CipheredApdu,
    ConfirmedServiceError,
    ExceptionResponse,
    GeneralGlobalCipher,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithBlock,
    InitiateRequest,
    InitiateResponse,
    MethodRef,
    ReleaseRequest,
    ReleaseResponse,
    WrapperBuffer,
    WrapperFrame,
)
from adapters.dlms.cosem import (
    ASSOCIATION_OBIS,
    CLOCK_OBIS,
    LOAD_PROFILE_OBIS,
    AttributeRef,
    EntryDescriptor,
    RangeDescriptor,
)
from adapters.dlms.errors import DlmsFrameTooLarge, DlmsProtocolError

# AARQ / AARE of a public-client association without security, as printed in the
# DLMS UA Green Book (xDLMS examples: LN referencing, no ciphering).
AARQ_NO_SECURITY = "601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0"
AARE_ACCEPTED = "6129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F040000501F01F40007"
# Get-Request-Normal for the clock's time attribute (class 8, 0.0.1.0.0.255, attribute 2),
# the plaintext of the Green Book's glo-get-request example (Table 40).
GET_CLOCK = "C001000008" "0000010000FF" "0200"


def test_aarq_vector() -> None:
    aarq = codec.decode_apdu(bytes.fromhex(AARQ_NO_SECURITY))
    assert aarq == AssociationRequest(user_information=bytes.fromhex("01000000065F1F0400007E1F04B0"))
    assert codec.decode_apdu(aarq.user_information or b"") == InitiateRequest(0x007E1F, 1200)
    assert codec.encode_apdu(aarq).hex().upper() == AARQ_NO_SECURITY


def test_aare_vector() -> None:
    aare = codec.decode_apdu(bytes.fromhex(AARE_ACCEPTED))
    assert isinstance(aare, AssociationResponse)
    assert (aare.result, aare.diagnostic, aare.diagnostic_source) == (0, 0, 1)
    assert codec.decode_apdu(aare.user_information or b"") == InitiateResponse(0x00501F, 500)
    assert codec.encode_apdu(aare).hex().upper() == AARE_ACCEPTED


def test_get_request_vector() -> None:
    request = codec.decode_apdu(bytes.fromhex(GET_CLOCK))
    assert request == GetRequestNormal(AttributeRef(8, CLOCK_OBIS, 2), None, 0x00)
    assert codec.encode_apdu(request).hex().upper() == GET_CLOCK


def test_get_request_with_range_layout() -> None:
    start = datetime(2026, 3, 1, 0, 15, tzinfo=UTC)
    end = datetime(2026, 3, 2, tzinfo=UTC)
    raw = codec.encode_apdu(GetRequestNormal(AttributeRef(7, LOAD_PROFILE_OBIS, 2), RangeDescriptor(start, end)))
    expected = bytes.fromhex(
        "C001C1" "0007" "0100630100FF" "02"
        "01" "01"  # access selection present, selector 1
        "0204" "0204" "120008" "0906" "0000010000FF" "0F02" "120000"
        "090C" "07EA0301" "07" "000F0000" "0000" "00"
        "090C" "07EA0302" "01" "00000000" "0000" "00"
        "0100")
    assert raw == expected
    assert codec.decode_apdu(raw) == GetRequestNormal(AttributeRef(7, LOAD_PROFILE_OBIS, 2),
                                                      RangeDescriptor(start, end))


def test_get_request_by_entry() -> None:
    raw = codec.encode_apdu(GetRequestNormal(AttributeRef(7, LOAD_PROFILE_OBIS, 2), EntryDescriptor(1, 96, 1, 0)))
    assert raw.endswith(bytes.fromhex("0102" "0204" "0600000001" "0600000060" "120001" "120000"))
    decoded = codec.decode_apdu(raw)
    assert isinstance(decoded, GetRequestNormal)
    assert decoded.access == EntryDescriptor(1, 96, 1, 0)


@pytest.mark.parametrize(("apdu", "hex_bytes"), [
    (GetRequestNext(1, 0xC1), "C002C100000001"),
    (GetResponseNormal(bytes.fromhex("1103"), 0, 0xC1), "C401C1001103"),
    (GetResponseNormal(b"", 4, 0xC1), "C401C10104"),
    (GetResponseWithBlock(2, True, bytes.fromhex("0102"), 0, 0xC1), "C402C101000000020002" "0102"),
    (GetResponseWithBlock(3, True, b"", 15, 0xC1), "C402C1010000000301" "0F"),
    (ReleaseRequest(0), "6203800100"),
    (ReleaseResponse(0), "6303800100"),
    (ReleaseResponse(None), "6300"),
    (ExceptionResponse(1, 2), "D80102"),
    (ConfirmedServiceError(1, 6, 1), "0E010601"),
    (CipheredApdu(ApduTag.GLO_GET_REQUEST, 0x30, 0x01234567, bytes(4)), "C809" "30" "01234567" "00000000"),
    (GeneralGlobalCipher(b"MMM\x00\x00\xbcaN", 0x30, 1, b"\x01"), "DB08" "4D4D4D0000BC614E" "06" "30" "00000001" "01"),
])
def test_small_apdu_vectors(apdu: codec.Apdu, hex_bytes: str) -> None:
    raw = bytes.fromhex(hex_bytes)
    assert codec.encode_apdu(apdu) == raw
    assert codec.decode_apdu(raw) == apdu


ROUND_TRIPS: list[codec.Apdu] = [
    AssociationRequest(3, 5, b"MHHUB001", bytes(16), bytes.fromhex("2103300000000001")),
    AssociationResponse(0, 14, 1, 3, 5, b"MHS00001", bytes(16), b"\x28\x01\x00"),
    AssociationResponse(1, 13, 1, 1),
    AssociationRequest(1, 1, None, b"12345678", bytes.fromhex("01000000065F1F0400007E1F04B0")),
    InitiateRequest(0x7E1F, 1024, 6, bytes(16), False, 3),
    InitiateResponse(0x501F, 0x400, 6, 7, 1),
    ActionRequestNormal(MethodRef(15, ASSOCIATION_OBIS, 1), bytes.fromhex("0903010203")),
    ActionRequestNormal(MethodRef(15, ASSOCIATION_OBIS, 1), None),
    ActionResponseNormal(0, bytes.fromhex("0903010203")),
    ActionResponseNormal(3, None, 0),
    ActionResponseNormal(0, None, 11),
    ReleaseRequest(0, bytes.fromhex("01000000065F1F0400007E1F04B0")),
]


@pytest.mark.parametrize("apdu", ROUND_TRIPS)
def test_round_trip(apdu: codec.Apdu) -> None:
    raw = codec.encode_apdu(apdu)
    assert codec.decode_apdu(raw) == apdu
    assert codec.encode_apdu(codec.decode_apdu(raw)) == raw


@pytest.mark.parametrize(("hex_bytes", "reason"), [
    ("", "DLMS_TRUNCATED"),
    ("77", "DLMS_UNKNOWN_TAG"),
    ("C003C1", "DLMS_UNSUPPORTED_SERVICE"),  # get-request-with-list
    ("C001C10008", "DLMS_TRUNCATED"),
    ("601DA1", "DLMS_TRUNCATED"),
    ("6003A10100", "DLMS_BAD_BER"),
    ("6005A103060100", "DLMS_BAD_CONTEXT"),
    ("600C" "A109060760857405080101", "DLMS_TRUNCATED"),
    ("600D" "A109060760857405080101" "9900", "DLMS_UNKNOWN_TAG"),
    ("6083FFFFFF", "DLMS_BAD_BER"),
    ("C401C10104FF", "DLMS_TRAILING_BYTES"),
    ("C8847FFFFFFF30", "DLMS_TRUNCATED"),
])
def test_malformed_apdus(hex_bytes: str, reason: str) -> None:
    with pytest.raises(DlmsProtocolError) as caught:
        codec.decode_apdu(bytes.fromhex(hex_bytes))
    assert caught.value.reason == reason


def test_wrapper_frames_split_and_joined() -> None:
    frames = [WrapperFrame(16, 1, bytes.fromhex(AARQ_NO_SECURITY)), WrapperFrame(16, 1, bytes.fromhex(GET_CLOCK))]
    stream = b"".join(f.encode() for f in frames)
    assert stream[:8] == bytes.fromhex("0001" "0010" "0001" "001F")
    buffer = WrapperBuffer()
    got = []
    for i in range(len(stream)):  # one byte at a time
        buffer.feed(stream[i:i + 1])
        while (frame := buffer.next_frame()) is not None:
            got.append(frame)
    assert got == frames
    assert buffer.pending == 0


def test_wrapper_refuses_huge_claims_before_buffering() -> None:
    buffer = WrapperBuffer(max_apdu=1024)
    buffer.feed(bytes.fromhex("00010010000108000000"))
    with pytest.raises(DlmsFrameTooLarge) as caught:
        buffer.next_frame()
    assert caught.value.reason == "DLMS_LENGTH_TOO_LARGE"


def test_wrapper_version_checked() -> None:
    buffer = WrapperBuffer()
    buffer.feed(bytes.fromhex("0002001000010000"))
    with pytest.raises(DlmsProtocolError) as caught:
        buffer.next_frame()
    assert caught.value.reason == "DLMS_BAD_WRAPPER"


@given(st.binary(max_size=120))
@settings(max_examples=800, deadline=None)
def test_garbage_apdus_only_raise_protocol_error(raw: bytes) -> None:
    try:
        apdu = codec.decode_apdu(raw)
    except DlmsProtocolError:
        return
    codec.encode_apdu(apdu)


@given(st.sampled_from([AARQ_NO_SECURITY, AARE_ACCEPTED, GET_CLOCK, "C402C101000000020002" "0102"]),
       st.integers(0, 60), st.integers(0, 255))
@settings(max_examples=400, deadline=None)
def test_mutated_vectors_only_raise_protocol_error(vector: str, position: int, value: int) -> None:
    raw = bytearray(bytes.fromhex(vector))
    raw[position % len(raw)] = value
    for candidate in (bytes(raw), bytes(raw[: position % len(raw)])):
        with contextlib.suppress(DlmsProtocolError):
            codec.decode_apdu(candidate)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_wrapper_garbage(raw: bytes) -> None:
    buffer = WrapperBuffer(max_apdu=256)
    buffer.feed(raw)
    try:
        while buffer.next_frame() is not None:
            pass
    except DlmsProtocolError:
        pass
