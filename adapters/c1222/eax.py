"""EAX' (EAX prime) authenticated encryption as ANSI C12.22 / IEEE 1703 uses it.

EAX' differs from EAX: the nonce and header are one "cleartext" input, the OMAC
tweaks are replaced by CBC-MAC initial values D and Q derived from E_K(0), the
counter has two bits cleared, and the MAC is the last four bytes of the tag.
The doubling matches the C12.22 reference implementation (carry travels from
byte i to byte i+1), which is what verifies the standard's Example 8.
Pure functions over bytes; AES-128 from ``cryptography``.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
MAC_BYTES = 4


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _double(block: bytes) -> bytes:
    out = bytearray(BLOCK)
    carry = 0
    for i, byte in enumerate(block):
        out[i] = ((byte << 1) & 0xFF) | carry
        carry = byte >> 7
    if carry:
        out[0] ^= 0x87
    return bytes(out)


class EaxPrime:
    """One AES-128 key, ready to MAC, seal and open C12.22 EPSEM."""

    __slots__ = ("_d", "_ecb", "_key", "_q")

    def __init__(self, key: bytes) -> None:
        if len(key) != BLOCK:
            raise ValueError("EAX' needs a 16-byte AES-128 key")
        self._key = bytes(key)
        self._ecb = Cipher(algorithms.AES(self._key), modes.ECB())  # noqa: S305 - one-block primitive for CMAC/EAX'
        encryptor = self._ecb.encryptor()
        big_l = encryptor.update(bytes(BLOCK)) + encryptor.finalize()
        self._d = _double(big_l)
        self._q = _double(self._d)

    def _cbc_mac(self, initial: bytes, data: bytes) -> bytes:
        """CMAC' with ``initial`` as CBC start value (D for the cleartext, Q for the ciphertext)."""
        if data and len(data) % BLOCK == 0:
            padded = bytearray(data)
            mask = self._d
        else:
            padded = bytearray(data) + b"\x80" + bytes((-len(data) - 1) % BLOCK)
            mask = self._q
        tail = len(padded) - BLOCK
        padded[tail:] = _xor(bytes(padded[tail:]), mask)
        cbc = Cipher(algorithms.AES(self._key), modes.CBC(initial)).encryptor()
        out = cbc.update(bytes(padded)) + cbc.finalize()
        return out[-BLOCK:]

    def _ctr(self, nonce_mac: bytes, data: bytes) -> bytes:
        counter = bytearray(nonce_mac)
        counter[12] &= 0x7F
        counter[14] &= 0x7F
        ctr = Cipher(algorithms.AES(self._key), modes.CTR(bytes(counter))).encryptor()
        return ctr.update(data) + ctr.finalize()

    def authenticate(self, cleartext: bytes) -> bytes:
        """Security mode 1: MAC over cleartext only."""
        return self._cbc_mac(self._d, cleartext)[-MAC_BYTES:]

    def encrypt(self, cleartext: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """Security mode 2: (ciphertext, mac)."""
        n = self._cbc_mac(self._d, cleartext)
        if not plaintext:
            return b"", n[-MAC_BYTES:]
        ciphertext = self._ctr(n, plaintext)
        c = self._cbc_mac(self._q, ciphertext)
        return ciphertext, _xor(n, c)[-MAC_BYTES:]

    def decrypt(self, cleartext: bytes, ciphertext: bytes, mac: bytes) -> bytes | None:
        """Security mode 2: the plaintext, or None when the MAC does not verify."""
        n = self._cbc_mac(self._d, cleartext)
        expected = n[-MAC_BYTES:] if not ciphertext else _xor(n, self._cbc_mac(self._q, ciphertext))[-MAC_BYTES:]
        if not hmac.compare_digest(expected, mac):
            return None
        return self._ctr(n, ciphertext) if ciphertext else b""

    def verify(self, cleartext: bytes, mac: bytes) -> bool:
        return hmac.compare_digest(self.authenticate(cleartext), mac)
