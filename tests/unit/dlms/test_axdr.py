"""A-XDR data: byte vectors, round trips, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dlms import axdr
from adapters.dlms.axdr import Data, Tag
from adapters.dlms.errors import DlmsFrameTooLarge, DlmsProtocolError

VECTORS = [
    # (encoding, value) - layouts from the Green Book's A-XDR rules (9.5)
    ("00", axdr.null()),
    ("0301", axdr.boolean(True)),
    ("0500000539", axdr.integer(Tag.DOUBLE_LONG, 1337)),
    ("05FFFFFFFF", axdr.integer(Tag.DOUBLE_LONG, -1)),
    ("0600BC614E", axdr.integer(Tag.DOUBLE_LONG_UNSIGNED, 12345678)),
    ("0FFD", axdr.integer(Tag.INTEGER, -3)),
    ("1000FF", axdr.integer(Tag.LONG, 255)),
    ("1103", axdr.integer(Tag.UNSIGNED, 3)),
    ("120384", axdr.integer(Tag.LONG_UNSIGNED, 900)),
    ("1400000000000F4240", axdr.integer(Tag.LONG64, 1_000_000)),
    ("151122334455667788", axdr.integer(Tag.LONG64_UNSIGNED, 0x1122334455667788)),
    ("161E", axdr.integer(Tag.ENUM, 30)),
    ("0906" "0100010800FF", axdr.octet_string(bytes.fromhex("0100010800FF"))),
    ("0A03" "414243", Data(Tag.VISIBLE_STRING, "ABC")),
    ("0C02" "C3A9", Data(Tag.UTF8_STRING, "é")),
    ("040A" "A5C0", Data(Tag.BIT_STRING, "1010010111")),
    ("0202" "0F00" "161E", axdr.structure(axdr.integer(Tag.INTEGER, 0), axdr.integer(Tag.ENUM, 30))),
    ("0100", axdr.array()),
    ("1907EA030100000000000000" "00", Data(Tag.DATE_TIME, bytes.fromhex("07EA03010000000000000000"))),
]


@pytest.mark.parametrize(("hex_bytes", "value"), VECTORS)
def test_vectors(hex_bytes: str, value: Data) -> None:
    raw = bytes.fromhex(hex_bytes)
    if value.tag is Tag.DATE_TIME:
        raw = raw[:13]
    assert axdr.encode(value) == raw
    assert axdr.decode(raw) == value


def test_long_length_form() -> None:
    payload = bytes(300)
    raw = axdr.encode(axdr.octet_string(payload))
    assert raw[:4] == bytes.fromhex("0982012C")
    assert axdr.decode(raw).octets == payload


@pytest.mark.parametrize(("hex_bytes", "reason"), [
    ("", "DLMS_TRUNCATED"),
    ("06000001", "DLMS_TRUNCATED"),
    ("FF", "DLMS_UNKNOWN_TAG"),
    ("07", "DLMS_UNKNOWN_TAG"),
    ("09840FFFFFFF00", "DLMS_TRUNCATED"),  # 268 MB claimed, refused before allocation
    ("0185FFFFFFFFFF", "DLMS_BAD_LENGTH"),
    ("0105" "1101", "DLMS_TRUNCATED"),  # five elements claimed, one present
    ("110100", "DLMS_TRAILING_BYTES"),
    ("0A01FF", "DLMS_BAD_VALUE"),
])
def test_garbage_has_a_reason(hex_bytes: str, reason: str) -> None:
    with pytest.raises(DlmsProtocolError) as caught:
        axdr.decode(bytes.fromhex(hex_bytes))
    assert caught.value.reason == reason
    assert caught.value.remote is True


def test_nesting_is_capped() -> None:
    raw = b"\x01\x01" * (axdr.MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(DlmsProtocolError) as caught:
        axdr.decode(raw)
    assert caught.value.reason == "DLMS_TOO_DEEP"


def test_encoding_out_of_range_is_a_local_error() -> None:
    with pytest.raises(DlmsProtocolError) as caught:
        axdr.encode(axdr.integer(Tag.UNSIGNED, 256))
    assert caught.value.remote is False
    with pytest.raises(DlmsFrameTooLarge):
        axdr.encode_length(1 << 40)


def _ints() -> st.SearchStrategy[Data]:
    return st.one_of(*[
        st.integers(-(1 << (8 * size - 1)) if signed else 0, (1 << (8 * size - (1 if signed else 0))) - 1)
        .map(lambda v, t=tag: Data(t, v))
        for tag, (size, signed) in axdr.INTEGER_TAGS.items()])


_leaves = st.one_of(
    st.just(axdr.null()), st.booleans().map(axdr.boolean), _ints(),
    st.binary(max_size=300).map(axdr.octet_string),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20).map(
        lambda s: Data(Tag.VISIBLE_STRING, s)),
    st.text(max_size=10).map(lambda s: Data(Tag.UTF8_STRING, s)),
    st.text(alphabet="01", max_size=40).map(lambda s: Data(Tag.BIT_STRING, s)),
    st.binary(min_size=12, max_size=12).map(lambda b: Data(Tag.DATE_TIME, b)),
    st.binary(min_size=4, max_size=4).map(lambda b: Data(Tag.FLOAT32, b)),
)
data_strategy = st.recursive(_leaves, lambda children: st.one_of(
    st.lists(children, max_size=6).map(lambda xs: axdr.array(*xs)),
    st.lists(children, max_size=6).map(lambda xs: axdr.structure(*xs))), max_leaves=30)


@given(data_strategy)
@settings(max_examples=300, deadline=None)
def test_round_trip(value: Data) -> None:
    assert axdr.decode(axdr.encode(value)) == value


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_garbage_only_raises_protocol_error(raw: bytes) -> None:
    try:
        value = axdr.decode(raw)
    except DlmsProtocolError:
        return
    assert axdr.decode(axdr.encode(value)) == value
