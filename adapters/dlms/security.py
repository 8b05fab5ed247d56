"""Security suite 0 (AES-GCM-128) of the DLMS UA Green Book: ciphering of
xDLMS APDUs and the HLS-GMAC authentication tags. Pure functions (no I/O);
the caller keeps invocation counters.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.dlms.errors import DlmsAuthenticationFailed, DlmsSecurityError

TAG_SIZE = 12
SYSTEM_TITLE_SIZE = 8
KEY_SIZE = 16
SUITE_0 = 0


class SecurityControl(enum.IntFlag):
    AUTHENTICATED = 0x10
    ENCRYPTED = 0x20
    BROADCAST_KEY = 0x40
    COMPRESSED = 0x80


AUTHENTICATED_ENCRYPTED = int(SecurityControl.AUTHENTICATED | SecurityControl.ENCRYPTED) | SUITE_0
AUTHENTICATED_ONLY = int(SecurityControl.AUTHENTICATED) | SUITE_0


@dataclass(frozen=True, slots=True, repr=False)
class Keys:
    """Global unicast encryption key and authentication key (never logged)."""

    encryption: bytes
    authentication: bytes

    def __post_init__(self) -> None:
        if len(self.encryption) != KEY_SIZE or len(self.authentication) != KEY_SIZE:
            raise ValueError("security suite 0 needs 16-byte keys")

    def __repr__(self) -> str:
        return "Keys(<redacted>)"


def _check(security_control: int, system_title: bytes) -> None:
    if security_control & 0x0F != SUITE_0:
        raise DlmsSecurityError(f"security suite {security_control & 0x0F} not supported")
    if security_control & (SecurityControl.COMPRESSED | SecurityControl.BROADCAST_KEY):
        raise DlmsSecurityError(f"security control {security_control:#04x} not supported")
    if not security_control & SecurityControl.AUTHENTICATED:
        # Encryption without authentication gives no integrity; we refuse it.
        raise DlmsSecurityError(f"security control {security_control:#04x} without authentication")
    if len(system_title) != SYSTEM_TITLE_SIZE:
        raise DlmsSecurityError(f"system title of {len(system_title)} bytes")


def _iv(system_title: bytes, invocation_counter: int) -> bytes:
    if not 0 <= invocation_counter <= 0xFFFFFFFF:
        raise DlmsSecurityError(f"invocation counter {invocation_counter} out of range")
    return system_title + invocation_counter.to_bytes(4, "big")


def protect(security_control: int, system_title: bytes, invocation_counter: int, keys: Keys,
            plaintext: bytes) -> bytes:
    """Ciphered payload of a glo-* APDU: ciphertext (or plaintext when authenticated
    only) followed by the 12-byte tag."""
    _check(security_control, system_title)
    encryptor = Cipher(algorithms.AES(keys.encryption), modes.GCM(_iv(system_title, invocation_counter))).encryptor()
    aad = bytes((security_control,)) + keys.authentication
    if security_control & SecurityControl.ENCRYPTED:
        encryptor.authenticate_additional_data(aad)
        body = encryptor.update(plaintext) + encryptor.finalize()
    else:
        encryptor.authenticate_additional_data(aad + plaintext)
        encryptor.finalize()
        body = plaintext
    return body + encryptor.tag[:TAG_SIZE]


def unprotect(security_control: int, system_title: bytes, invocation_counter: int, keys: Keys,
              payload: bytes) -> bytes:
    """Plaintext of a glo-* payload; a wrong tag raises DlmsAuthenticationFailed."""
    _check(security_control, system_title)
    if len(payload) < TAG_SIZE:
        raise DlmsSecurityError("ciphered payload shorter than its tag")
    body, tag = payload[:-TAG_SIZE], payload[-TAG_SIZE:]
    decryptor = Cipher(algorithms.AES(keys.encryption),
                       modes.GCM(_iv(system_title, invocation_counter), tag, min_tag_length=TAG_SIZE)).decryptor()
    aad = bytes((security_control,)) + keys.authentication
    try:
        if security_control & SecurityControl.ENCRYPTED:
            decryptor.authenticate_additional_data(aad)
            plain = decryptor.update(body) + decryptor.finalize()
        else:
            decryptor.authenticate_additional_data(aad + body)
            decryptor.finalize()
            plain = body
    except InvalidTag:
        raise DlmsAuthenticationFailed("GCM tag mismatch (wrong key, title or counter, or altered APDU)") from None
    return plain


def gmac(system_title: bytes, invocation_counter: int, keys: Keys, challenge: bytes) -> bytes:
    """HLS-GMAC: GMAC(SC || AK || challenge) with IV = system title || IC, 12-byte tag."""
    return protect(AUTHENTICATED_ONLY, system_title, invocation_counter, keys, challenge)[-TAG_SIZE:]


def hls_reply(system_title: bytes, invocation_counter: int, keys: Keys, challenge: bytes) -> bytes:
    """f(challenge) as sent in reply_to_HLS_authentication: SC || IC || GMAC."""
    return (bytes((AUTHENTICATED_ONLY,)) + invocation_counter.to_bytes(4, "big")
            + gmac(system_title, invocation_counter, keys, challenge))


def verify_hls_reply(reply: bytes, system_title: bytes, keys: Keys, challenge: bytes) -> int:
    """Checks f(challenge) computed by the peer with its system title; returns its counter."""
    if len(reply) != 1 + 4 + TAG_SIZE or reply[0] != AUTHENTICATED_ONLY:
        raise DlmsAuthenticationFailed("malformed HLS-GMAC reply")
    counter = int.from_bytes(reply[1:5], "big")
    expected = gmac(system_title, counter, keys, challenge)
    if not hmac.compare_digest(expected, reply[5:]):
        raise DlmsAuthenticationFailed("HLS-GMAC reply does not match the challenge")
    return counter
