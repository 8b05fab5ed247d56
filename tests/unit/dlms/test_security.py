"""Security suite 0: the Green Book glo-get-request vector, HLS-GMAC, tampering."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.dlms import codec, security
from adapters.dlms.codec import ApduTag, CipheredApdu
from adapters.dlms.errors import DlmsAuthenticationFailed, DlmsSecurityError
from adapters.dlms.security import Keys

# DLMS UA Green Book, "Example: glo-get-request xDLMS APDU" (Table 40): keys, system
# title and invocation counter of the example, plaintext Get-Request for the clock.
EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
TITLE = bytes.fromhex("4D4D4D0000BC614E")
IC = 0x01234567
PLAIN = bytes.fromhex("C0010000080000010000FF0200")
GLO_GET_REQUEST = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
KEYS = Keys(EK, AK)


def test_green_book_glo_get_request() -> None:
    payload = security.protect(security.AUTHENTICATED_ENCRYPTED, TITLE, IC, KEYS, PLAIN)
    apdu = CipheredApdu(ApduTag.GLO_GET_REQUEST, security.AUTHENTICATED_ENCRYPTED, IC, payload)
    assert codec.encode_apdu(apdu) == GLO_GET_REQUEST
    decoded = codec.decode_apdu(GLO_GET_REQUEST)
    assert isinstance(decoded, CipheredApdu)
    assert security.unprotect(decoded.security_control, TITLE, decoded.invocation_counter, KEYS,
                              decoded.payload) == PLAIN


def test_matches_the_aesgcm_primitive() -> None:
    # Independent computation: AES-GCM with IV = title || IC, AAD = SC || AK, tag cut to 12 bytes.
    full = AESGCM(EK).encrypt(TITLE + IC.to_bytes(4, "big"), PLAIN, b"\x30" + AK)
    assert security.protect(0x30, TITLE, IC, KEYS, PLAIN) == full[:len(PLAIN)] + full[len(PLAIN):len(PLAIN) + 12]


def test_authenticated_only_keeps_plaintext() -> None:
    payload = security.protect(0x10, TITLE, IC, KEYS, PLAIN)
    assert payload[:len(PLAIN)] == PLAIN
    full = AESGCM(EK).encrypt(TITLE + IC.to_bytes(4, "big"), b"", b"\x10" + AK + PLAIN)
    assert payload[len(PLAIN):] == full[:12]
    assert security.unprotect(0x10, TITLE, IC, KEYS, payload) == PLAIN


@pytest.mark.parametrize("position", [0, 5, 12, -1])
def test_tampering_is_detected(position: int) -> None:
    payload = bytearray(security.protect(0x30, TITLE, IC, KEYS, PLAIN))
    payload[position] ^= 0x01
    with pytest.raises(DlmsAuthenticationFailed):
        security.unprotect(0x30, TITLE, IC, KEYS, bytes(payload))


def test_wrong_counter_or_title_fails() -> None:
    payload = security.protect(0x30, TITLE, IC, KEYS, PLAIN)
    with pytest.raises(DlmsAuthenticationFailed):
        security.unprotect(0x30, TITLE, IC + 1, KEYS, payload)
    with pytest.raises(DlmsAuthenticationFailed):
        security.unprotect(0x30, b"MHS00001", IC, KEYS, payload)


@pytest.mark.parametrize("control", [0x20, 0x31, 0xB0, 0x70])
def test_unsupported_security_controls(control: int) -> None:
    with pytest.raises(DlmsSecurityError):
        security.protect(control, TITLE, IC, KEYS, PLAIN)


def test_hls_gmac_reply() -> None:
    challenge = bytes.fromhex("503677524A323146")
    reply = security.hls_reply(TITLE, 1, KEYS, challenge)
    expected_tag = AESGCM(EK).encrypt(TITLE + (1).to_bytes(4, "big"), b"", b"\x10" + AK + challenge)[:12]
    assert reply == b"\x10" + (1).to_bytes(4, "big") + expected_tag
    assert security.verify_hls_reply(reply, TITLE, KEYS, challenge) == 1
    with pytest.raises(DlmsAuthenticationFailed):
        security.verify_hls_reply(reply, TITLE, KEYS, challenge[::-1])
    with pytest.raises(DlmsAuthenticationFailed):
        security.verify_hls_reply(reply[:-1], TITLE, KEYS, challenge)


def test_keys_never_print() -> None:
    assert "0001" not in repr(KEYS)
    with pytest.raises(ValueError, match="16-byte"):
        Keys(b"short", AK)
