"""ANSI C12.22 codec: ACSE APDU (BER), EPSEM envelope and services. Pure.

Bytes in, frozen dataclasses out, and back. No I/O. Every length claim is
checked against a cap before anything is allocated; every malformed input ends
in a :class:`~adapters.c1222.errors.C1222Error`.

Layout (C12.22 clause 6 / Wireshark c1222.asn)::

    60 LL  A1 aSO-context  A2 called-AP-title  A4 called-AP-invocation-id
           A6 calling-AP-title  A7 calling-AE-qualifier  A8 calling-AP-invocation-id
           8B mechanism-name  AC calling-authentication-value  BE user-information

Elements are written, and required, in that ascending tag order.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from adapters.c1222.eax import MAC_BYTES, EaxPrime
from adapters.c1222.errors import (
    AuthenticationFailed,
    ChecksumMismatch,
    FrameTooLarge,
    MalformedApdu,
    MalformedEpsem,
    ResponseError,
    SecurityError,
    UnknownKey,
    response_error,
)

DEFAULT_MAX_APDU_BYTES = 65_536
# The C12.22 ApTitle branch relative AP titles hang from (used to canonify them for EAX').
C1222_BASE_OID = (2, 16, 124, 113620, 1, 22, 0)

TAG_APDU = 0x60
TAG_ASO_CONTEXT = 0xA1
TAG_CALLED_AP_TITLE = 0xA2
TAG_CALLED_AP_INVOCATION_ID = 0xA4
TAG_CALLING_AP_TITLE = 0xA6
TAG_CALLING_AE_QUALIFIER = 0xA7
TAG_CALLING_AP_INVOCATION_ID = 0xA8
TAG_MECHANISM_NAME = 0x8B
TAG_AUTH_VALUE = 0xAC
TAG_USER_INFORMATION = 0xBE
ELEMENT_ORDER = (TAG_ASO_CONTEXT, TAG_CALLED_AP_TITLE, TAG_CALLED_AP_INVOCATION_ID, TAG_CALLING_AP_TITLE,
                 TAG_CALLING_AE_QUALIFIER, TAG_CALLING_AP_INVOCATION_ID, TAG_MECHANISM_NAME, TAG_AUTH_VALUE,
                 TAG_USER_INFORMATION)

_OID = 0x06
_RELATIVE_OID = 0x80  # [0] IMPLICIT RELATIVE-OID inside an AP-title CHOICE
_INTEGER = 0x02
_EXTERNAL = 0x28
_OCTET_ALIGNED = 0x81
_MAX_LENGTH_OCTETS = 3
_MAX_OID_ARC = (1 << 63) - 1


# --------------------------------------------------------------------------- BER

def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def read_length(data: bytes | bytearray | memoryview, pos: int, cap: int) -> tuple[int, int] | None:
    """(length, position after it), or None when more bytes are needed.

    Raises MalformedApdu on the indefinite form or an over-long length field and
    FrameTooLarge on a claim above ``cap``.
    """
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0:
        raise MalformedApdu("indefinite BER length is not allowed in C12.22")
    if count > _MAX_LENGTH_OCTETS:
        raise FrameTooLarge(f"BER length of {count} octets exceeds the cap")
    if pos + 1 + count > len(data):
        return None
    length = int.from_bytes(bytes(data[pos + 1:pos + 1 + count]), "big")
    if length > cap:
        raise FrameTooLarge(f"BER length {length} exceeds the cap of {cap} bytes")
    return length, pos + 1 + count


def _read_tlv(data: bytes, pos: int, end: int, what: str) -> tuple[int, bytes, int]:
    """(tag, content, next position) of a TLV that must lie within data[pos:end]."""
    if pos >= end:
        raise MalformedApdu(f"{what}: missing element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise MalformedApdu(f"{what}: multi-byte tag 0x{tag:02X} is not used by C12.22")
    parsed = read_length(data, pos + 1, end - pos)
    if parsed is None:
        raise MalformedApdu(f"{what}: truncated length")
    length, start = parsed
    if start + length > end:
        raise MalformedApdu(f"{what}: element 0x{tag:02X} of {length} bytes overruns its container")
    return tag, data[start:start + length], start + length


def _encode_integer(value: int) -> bytes:
    length = max(1, (value.bit_length() + 8) // 8)
    return encode_tlv(_INTEGER, value.to_bytes(length, "big", signed=True))


def _decode_integer(content: bytes, what: str) -> int:
    if not 1 <= len(content) <= 8:
        raise MalformedApdu(f"{what}: INTEGER of {len(content)} bytes")
    return int.from_bytes(content, "big", signed=True)


def _base128(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _arcs_from_content(content: bytes, what: str) -> list[int]:
    if not content:
        raise MalformedApdu(f"{what}: empty object identifier")
    if content[-1] & 0x80:
        raise MalformedApdu(f"{what}: object identifier ends inside an arc")
    arcs: list[int] = []
    value = 0
    started = False
    for byte in content:
        if not started and byte == 0x80:
            raise MalformedApdu(f"{what}: arc with a leading 0x80 octet")
        value = (value << 7) | (byte & 0x7F)
        started = True
        if value > _MAX_OID_ARC:
            raise MalformedApdu(f"{what}: object identifier arc too large")
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            started = False
    return arcs


@dataclass(frozen=True, slots=True)
class ApTitle:
    """An object identifier used as an AP title (absolute, or relative to a branch)."""

    arcs: tuple[int, ...]
    relative: bool = False

    def __post_init__(self) -> None:
        if not self.arcs or any(a < 0 or a > _MAX_OID_ARC for a in self.arcs):
            raise ValueError(f"invalid object identifier arcs {self.arcs!r}")
        if not self.relative and (len(self.arcs) < 2 or self.arcs[0] > 2
                                  or (self.arcs[0] < 2 and self.arcs[1] > 39)):
            raise ValueError(f"invalid absolute object identifier {self.arcs!r}")

    @classmethod
    def parse(cls, text: str) -> ApTitle:
        """"2.16.124.113620.1.22.0.5" (absolute) or ".123.8437" (relative)."""
        relative = text.startswith(".")
        try:
            arcs = tuple(int(part) for part in text.removeprefix(".").split("."))
        except ValueError:
            raise ValueError(f"not an object identifier: {text!r}") from None
        return cls(arcs, relative)

    def __str__(self) -> str:
        return ("." if self.relative else "") + ".".join(str(a) for a in self.arcs)

    def content(self) -> bytes:
        if self.relative:
            return b"".join(_base128(a) for a in self.arcs)
        return _base128(self.arcs[0] * 40 + self.arcs[1]) + b"".join(_base128(a) for a in self.arcs[2:])

    @classmethod
    def from_content(cls, content: bytes, *, relative: bool, what: str = "object identifier") -> ApTitle:
        arcs = _arcs_from_content(content, what)
        if relative:
            return cls(tuple(arcs), True)
        first = arcs[0]
        head = (first // 40, first % 40) if first < 80 else (2, first - 80)
        return cls(head + tuple(arcs[1:]), False)

    def encode_choice(self) -> bytes:
        """The AP-title CHOICE: 06 <absolute> or 80 <relative>."""
        return encode_tlv(_RELATIVE_OID if self.relative else _OID, self.content())

    def absolute(self, base: Sequence[int] = C1222_BASE_OID) -> ApTitle:
        return self if not self.relative else ApTitle(tuple(base) + self.arcs, False)


def _decode_ap_title(content: bytes, what: str) -> ApTitle:
    tag, inner, end = _read_tlv(content, 0, len(content), what)
    if end != len(content):
        raise MalformedApdu(f"{what}: trailing bytes")
    if tag not in (_OID, _RELATIVE_OID):
        raise MalformedApdu(f"{what}: expected OID or relative OID, got tag 0x{tag:02X}")
    return ApTitle.from_content(inner, relative=tag == _RELATIVE_OID, what=what)


# --------------------------------------------------------------------------- ACSE

class AeQualifier(enum.IntFlag):
    """calling-AE-qualifier bits."""

    TEST = 0x01
    URGENT = 0x02
    NOTIFICATION = 0x04


@dataclass(frozen=True, slots=True)
class AuthValue:
    """C12.22 calling-authentication-value: the key id and the 4-byte initialisation vector."""

    key_id: int | None = None
    iv: bytes | None = None

    def encode(self) -> bytes:
        inner = b""
        if self.key_id is not None:
            inner += encode_tlv(0x80, bytes([self.key_id]))
        if self.iv is not None:
            inner += encode_tlv(0x81, self.iv)
        # [2] IMPLICIT SEQUENCE { [0] single-ASN1 { [1] IMPLICIT C12.22 SEQUENCE } }
        return encode_tlv(0xA2, encode_tlv(0xA0, encode_tlv(0xA1, inner)))

    @classmethod
    def decode(cls, content: bytes) -> AuthValue:
        what = "calling-authentication-value"
        tag, seq, end = _read_tlv(content, 0, len(content), what)
        if tag != 0xA2 or end != len(content):
            raise MalformedApdu(f"{what}: expected one [2] SEQUENCE")
        pos = 0
        tag, body, pos = _read_tlv(seq, pos, len(seq), what)
        if tag == _INTEGER:  # indirect-reference, DEFAULT 0
            tag, body, pos = _read_tlv(seq, pos, len(seq), what)
        if tag != 0xA0 or pos != len(seq):
            raise MalformedApdu(f"{what}: only the single-ASN1 C12.22 form is supported")
        tag, c1222, end = _read_tlv(body, 0, len(body), what)
        if tag != 0xA1 or end != len(body):
            raise MalformedApdu(f"{what}: only the C12.22 key-id/iv form is supported")
        key_id: int | None = None
        iv: bytes | None = None
        pos = 0
        while pos < len(c1222):
            tag, value, pos = _read_tlv(c1222, pos, len(c1222), what)
            if tag == 0x80 and key_id is None and iv is None and len(value) == 1:
                key_id = value[0]
            elif tag == 0x81 and iv is None and len(value) == 4:
                iv = value
            else:
                raise MalformedApdu(f"{what}: unexpected element 0x{tag:02X} of {len(value)} bytes")
        return cls(key_id, iv)


@dataclass(frozen=True, slots=True)
class Apdu:
    """One C12.22 ACSE message. ``user_information`` is the EPSEM exactly as on the
    wire (ciphertext and MAC included in security modes 1 and 2)."""

    calling_ap_invocation_id: int
    user_information: bytes
    aso_context: ApTitle | None = None
    called_ap_title: ApTitle | None = None
    called_ap_invocation_id: int | None = None
    calling_ap_title: ApTitle | None = None
    calling_ae_qualifier: int | None = None
    mechanism_name: ApTitle | None = None
    auth_value: AuthValue | None = None
    indirect_reference: int | None = None

    def _external(self) -> bytes:
        inner = b""
        if self.indirect_reference is not None:
            inner += _encode_integer(self.indirect_reference)
        inner += encode_tlv(_OCTET_ALIGNED, self.user_information)
        return encode_tlv(_EXTERNAL, inner)

    def elements(self) -> list[tuple[int, bytes]]:
        """(tag, content) of every present element, in the standard's order."""
        out: list[tuple[int, bytes]] = []
        if self.aso_context is not None:
            out.append((TAG_ASO_CONTEXT, encode_tlv(_OID, self.aso_context.content())))
        if self.called_ap_title is not None:
            out.append((TAG_CALLED_AP_TITLE, self.called_ap_title.encode_choice()))
        if self.called_ap_invocation_id is not None:
            out.append((TAG_CALLED_AP_INVOCATION_ID, _encode_integer(self.called_ap_invocation_id)))
        if self.calling_ap_title is not None:
            out.append((TAG_CALLING_AP_TITLE, self.calling_ap_title.encode_choice()))
        if self.calling_ae_qualifier is not None:
            out.append((TAG_CALLING_AE_QUALIFIER, _encode_integer(self.calling_ae_qualifier)))
        out.append((TAG_CALLING_AP_INVOCATION_ID, _encode_integer(self.calling_ap_invocation_id)))
        if self.mechanism_name is not None:
            out.append((TAG_MECHANISM_NAME, self.mechanism_name.content()))
        if self.auth_value is not None:
            out.append((TAG_AUTH_VALUE, self.auth_value.encode()))
        out.append((TAG_USER_INFORMATION, self._external()))
        return out

    def encode(self) -> bytes:
        return encode_tlv(TAG_APDU, b"".join(encode_tlv(tag, content) for tag, content in self.elements()))


def apdu_length(buffer: bytes | bytearray, cap: int = DEFAULT_MAX_APDU_BYTES) -> int | None:
    """Total length of the APDU at the start of ``buffer`` or None if more bytes are needed."""
    if not buffer:
        return None
    if buffer[0] != TAG_APDU:
        raise MalformedApdu(f"expected an ACSE APDU (0x60), got 0x{buffer[0]:02X}")
    parsed = read_length(buffer, 1, cap)
    if parsed is None:
        return None
    length, start = parsed
    return start + length


def decode_apdu(data: bytes, cap: int = DEFAULT_MAX_APDU_BYTES) -> Apdu:
    """Decode exactly one APDU (no trailing bytes)."""
    data = bytes(data)
    total = apdu_length(data, cap)
    if total is None or total > len(data):
        raise MalformedApdu("truncated APDU")
    if total != len(data):
        raise MalformedApdu(f"{len(data) - total} trailing bytes after the APDU")
    start = total - read_length(data, 1, cap)[0]  # type: ignore[index]
    fields: dict[int, bytes] = {}
    last_index = -1
    pos = start
    while pos < total:
        tag, content, pos = _read_tlv(data, pos, total, "APDU")
        if tag not in ELEMENT_ORDER:
            raise MalformedApdu(f"unknown APDU element 0x{tag:02X}")
        index = ELEMENT_ORDER.index(tag)
        if index <= last_index:
            raise MalformedApdu(f"APDU element 0x{tag:02X} out of the standard's order or repeated")
        last_index = index
        fields[tag] = content
    if TAG_CALLING_AP_INVOCATION_ID not in fields:
        raise MalformedApdu("calling-AP-invocation-id is mandatory")
    if TAG_USER_INFORMATION not in fields:
        raise MalformedApdu("user-information is mandatory")

    def single(tag: int, expected: int, what: str) -> bytes:
        inner_tag, inner, end = _read_tlv(fields[tag], 0, len(fields[tag]), what)
        if inner_tag != expected or end != len(fields[tag]):
            raise MalformedApdu(f"{what}: expected one element 0x{expected:02X}")
        return inner

    aso = (ApTitle.from_content(single(TAG_ASO_CONTEXT, _OID, "aSO-context"), relative=False)
           if TAG_ASO_CONTEXT in fields else None)
    called = (_decode_ap_title(fields[TAG_CALLED_AP_TITLE], "called-AP-title")
              if TAG_CALLED_AP_TITLE in fields else None)
    called_id = (_decode_integer(single(TAG_CALLED_AP_INVOCATION_ID, _INTEGER, "called-AP-invocation-id"),
                                 "called-AP-invocation-id") if TAG_CALLED_AP_INVOCATION_ID in fields else None)
    calling = (_decode_ap_title(fields[TAG_CALLING_AP_TITLE], "calling-AP-title")
               if TAG_CALLING_AP_TITLE in fields else None)
    qualifier = (_decode_integer(single(TAG_CALLING_AE_QUALIFIER, _INTEGER, "calling-AE-qualifier"),
                                 "calling-AE-qualifier") if TAG_CALLING_AE_QUALIFIER in fields else None)
    calling_id = _decode_integer(single(TAG_CALLING_AP_INVOCATION_ID, _INTEGER, "calling-AP-invocation-id"),
                                 "calling-AP-invocation-id")
    mechanism = (ApTitle.from_content(fields[TAG_MECHANISM_NAME], relative=False, what="mechanism-name")
                 if TAG_MECHANISM_NAME in fields else None)
    auth = AuthValue.decode(fields[TAG_AUTH_VALUE]) if TAG_AUTH_VALUE in fields else None

    external = single(TAG_USER_INFORMATION, _EXTERNAL, "user-information")
    pos = 0
    indirect: int | None = None
    tag, content, pos = _read_tlv(external, pos, len(external), "user-information")
    if tag == _OID:  # direct-reference: allowed by EXTERNAL, carries nothing we need
        tag, content, pos = _read_tlv(external, pos, len(external), "user-information")
    if tag == _INTEGER:
        indirect = _decode_integer(content, "indirect-reference")
        tag, content, pos = _read_tlv(external, pos, len(external), "user-information")
    if tag != _OCTET_ALIGNED or pos != len(external):
        raise MalformedApdu("user-information must end in one octet-aligned EPSEM")
    return Apdu(calling_id, content, aso, called, called_id, calling, qualifier, mechanism, auth, indirect)


# --------------------------------------------------------------------------- EPSEM

class SecurityMode(enum.IntEnum):
    CLEARTEXT = 0
    AUTHENTICATED = 1
    CIPHERED = 2


class ResponseControl(enum.IntEnum):
    ALWAYS = 0
    ON_EXCEPTION = 1
    NEVER = 2


_CONTROL_RESERVED = 0x80
_CONTROL_RECOVERY = 0x40
_CONTROL_PROXY = 0x20
_CONTROL_ED_CLASS = 0x10


@dataclass(frozen=True, slots=True)
class Epsem:
    """An EPSEM in clear: control flags, optional ED class and the service list."""

    services: tuple[bytes, ...]
    security_mode: SecurityMode = SecurityMode.CLEARTEXT
    response_control: ResponseControl = ResponseControl.ALWAYS
    recovery_session: bool = False
    proxy_service_used: bool = False
    ed_class: bytes | None = None

    @property
    def control(self) -> int:
        return (_CONTROL_RESERVED | (_CONTROL_RECOVERY if self.recovery_session else 0)
                | (_CONTROL_PROXY if self.proxy_service_used else 0)
                | (_CONTROL_ED_CLASS if self.ed_class is not None else 0)
                | (int(self.security_mode) << 2) | int(self.response_control))

    def body(self) -> bytes:
        """ED class and services: the part that mode 2 enciphers."""
        out = bytearray(self.ed_class or b"")
        for service in self.services:
            out += encode_length(len(service)) + service
        return bytes(out)


def parse_control(control: int) -> tuple[SecurityMode, ResponseControl, bool, bool, bool]:
    """(security mode, response control, recovery, proxy, ed class present)."""
    if not control & _CONTROL_RESERVED:
        raise MalformedEpsem(f"EPSEM control 0x{control:02X} lacks the reserved bit 0x80")
    mode = (control >> 2) & 0x03
    response = control & 0x03
    if mode == 3 or response == 3:
        raise MalformedEpsem(f"EPSEM control 0x{control:02X} uses a reserved value")
    return (SecurityMode(mode), ResponseControl(response), bool(control & _CONTROL_RECOVERY),
            bool(control & _CONTROL_PROXY), bool(control & _CONTROL_ED_CLASS))


def parse_epsem_body(control: int, body: bytes, cap: int = DEFAULT_MAX_APDU_BYTES) -> Epsem:
    """Parse the clear body (ED class + services) under the given control byte."""
    mode, response, recovery, proxy, has_ed_class = parse_control(control)
    pos = 0
    ed_class: bytes | None = None
    if has_ed_class:
        if len(body) < 4:
            raise MalformedEpsem("EPSEM announces an ED class but is shorter than 4 bytes")
        ed_class = body[:4]
        pos = 4
    services: list[bytes] = []
    while pos < len(body):
        try:
            parsed = read_length(body, pos, cap)
        except MalformedApdu as exc:
            raise MalformedEpsem(f"EPSEM service length: {exc.message}") from exc
        if parsed is None:
            raise MalformedEpsem("EPSEM service length truncated")
        length, start = parsed
        if length == 0:
            if start != len(body):
                raise MalformedEpsem("bytes after the EPSEM end-of-services marker")
            break
        if start + length > len(body):
            raise MalformedEpsem(f"EPSEM service of {length} bytes overruns the EPSEM")
        services.append(body[start:start + length])
        pos = start + length
    if not services:
        raise MalformedEpsem("EPSEM without any service")
    return Epsem(tuple(services), mode, response, recovery, proxy, ed_class)


def _user_information_prefix(apdu: Apdu, control: int) -> bytes:
    """The EXTERNAL up to and including the EPSEM control byte, as EAX' cleartext wants it."""
    external = apdu._external()
    pos = 1
    _, pos = read_length(external, pos, len(external))  # type: ignore[misc]
    if apdu.indirect_reference is not None:
        pos += len(_encode_integer(apdu.indirect_reference))
    pos += 1
    _, pos = read_length(external, pos, len(external))  # type: ignore[misc]
    return external[:pos] + bytes([control])


def canonical_cleartext(apdu: Apdu, control: int, base_oid: Sequence[int] = C1222_BASE_OID) -> bytes:
    """The header fields EAX' authenticates, in C12.22's canonical order.

    Relative AP titles are expanded to absolute ones under ``base_oid``; the
    user-information contributes its header up to the EPSEM control byte; the
    calling AP title, key id and IV come last.
    """
    out = bytearray()
    if apdu.aso_context is not None:
        out += encode_tlv(TAG_ASO_CONTEXT, encode_tlv(_OID, apdu.aso_context.content()))
    if apdu.called_ap_title is None:
        raise SecurityError("secured messages need a called-AP-title", remote=False)
    out += encode_tlv(TAG_CALLED_AP_TITLE, apdu.called_ap_title.absolute(base_oid).encode_choice())
    if apdu.called_ap_invocation_id is not None:
        out += encode_tlv(TAG_CALLED_AP_INVOCATION_ID, _encode_integer(apdu.called_ap_invocation_id))
    if apdu.calling_ae_qualifier is not None:
        out += encode_tlv(TAG_CALLING_AE_QUALIFIER, _encode_integer(apdu.calling_ae_qualifier))
    out += encode_tlv(TAG_CALLING_AP_INVOCATION_ID, _encode_integer(apdu.calling_ap_invocation_id))
    if apdu.mechanism_name is not None:
        out += encode_tlv(TAG_MECHANISM_NAME, apdu.mechanism_name.content())
    if apdu.auth_value is not None:
        out += encode_tlv(TAG_AUTH_VALUE, apdu.auth_value.encode())
    external = apdu._external()
    out += bytes([TAG_USER_INFORMATION]) + encode_length(len(external)) + _user_information_prefix(apdu, control)
    if apdu.calling_ap_title is not None:
        out += encode_tlv(TAG_CALLING_AP_TITLE, apdu.calling_ap_title.absolute(base_oid).encode_choice())
    if apdu.auth_value is not None:
        if apdu.auth_value.key_id is not None:
            out.append(apdu.auth_value.key_id)
        if apdu.auth_value.iv is not None:
            out += apdu.auth_value.iv
    return bytes(out)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """AES-128 keys by C12.22 key id."""

    keys: Mapping[int, bytes] = field(default_factory=dict)

    def cipher(self, key_id: int | None) -> EaxPrime:
        key = self.keys.get(key_id if key_id is not None else 0)
        if key is None:
            raise UnknownKey(f"no key with id {key_id}", metadata={"key_id": str(key_id)})
        return EaxPrime(key)


def seal(apdu: Apdu, epsem: Epsem, keys: KeyRing | None = None,
         base_oid: Sequence[int] = C1222_BASE_OID) -> Apdu:
    """``apdu`` with ``epsem`` placed in its user-information (authenticated or
    enciphered per ``epsem.security_mode``)."""
    control = epsem.control
    body = epsem.body()
    if epsem.security_mode is SecurityMode.CLEARTEXT:
        return _with_user_information(apdu, bytes([control]) + body)
    if keys is None or apdu.auth_value is None:
        raise SecurityError("security modes 1 and 2 need a key and an authentication value", remote=False)
    cipher = keys.cipher(apdu.auth_value.key_id)
    # Lengths inside the cleartext include the MAC, so lay out the final size first.
    draft = _with_user_information(apdu, bytes([control]) + body + bytes(MAC_BYTES))
    cleartext = canonical_cleartext(draft, control, base_oid)
    if epsem.security_mode is SecurityMode.AUTHENTICATED:
        mac = cipher.authenticate(cleartext + body)
        return _with_user_information(apdu, bytes([control]) + body + mac)
    ciphertext, mac = cipher.encrypt(cleartext, body)
    return _with_user_information(apdu, bytes([control]) + ciphertext + mac)


def open_epsem(apdu: Apdu, keys: KeyRing | None = None, base_oid: Sequence[int] = C1222_BASE_OID,
               cap: int = DEFAULT_MAX_APDU_BYTES) -> Epsem:
    """The clear EPSEM of a received APDU, after verifying (and deciphering) it."""
    raw = apdu.user_information
    if not raw:
        raise MalformedEpsem("empty EPSEM")
    control = raw[0]
    mode = parse_control(control)[0]
    if mode is SecurityMode.CLEARTEXT:
        return parse_epsem_body(control, raw[1:], cap)
    if len(raw) < 1 + MAC_BYTES:
        raise MalformedEpsem("secured EPSEM shorter than its MAC")
    if keys is None:
        raise UnknownKey("secured EPSEM but no keys configured")
    cipher = keys.cipher(apdu.auth_value.key_id if apdu.auth_value is not None else None)
    cleartext = canonical_cleartext(apdu, control, base_oid)
    body, mac = raw[1:-MAC_BYTES], raw[-MAC_BYTES:]
    if mode is SecurityMode.AUTHENTICATED:
        if not cipher.verify(cleartext + body, mac):
            raise AuthenticationFailed("EPSEM MAC does not verify")
        return parse_epsem_body(control, body, cap)
    plain = cipher.decrypt(cleartext, body, mac)
    if plain is None:
        raise AuthenticationFailed("EPSEM MAC does not verify")
    return parse_epsem_body(control, plain, cap)


def _with_user_information(apdu: Apdu, user_information: bytes) -> Apdu:
    return Apdu(apdu.calling_ap_invocation_id, user_information, apdu.aso_context, apdu.called_ap_title,
                apdu.called_ap_invocation_id, apdu.calling_ap_title, apdu.calling_ae_qualifier,
                apdu.mechanism_name, apdu.auth_value, apdu.indirect_reference)


# --------------------------------------------------------------------------- services

IDENT, TERMINATE, DISCONNECT = 0x20, 0x21, 0x22
FULL_READ, PARTIAL_READ_OFFSET = 0x30, 0x3F
FULL_WRITE, PARTIAL_WRITE_OFFSET = 0x40, 0x4F
LOGON, SECURITY, LOGOFF = 0x50, 0x51, 0x52
WAIT = 0x70
MAX_TABLE_ID = 0xFFFF
MAX_OFFSET = 0xFFFFFF
MAX_COUNT = 0xFFFF


def table_checksum(data: bytes) -> int:
    """Two's complement of the byte sum (C12.18/C12.22 <cksum>)."""
    return (-sum(data)) & 0xFF


@dataclass(frozen=True, slots=True)
class Ident:
    code = IDENT


@dataclass(frozen=True, slots=True)
class Terminate:
    code = TERMINATE


@dataclass(frozen=True, slots=True)
class Disconnect:
    code = DISCONNECT


@dataclass(frozen=True, slots=True)
class Logoff:
    code = LOGOFF


@dataclass(frozen=True, slots=True)
class Logon:
    user_id: int
    user: bytes  # 10 bytes, space padded
    session_idle_timeout: int = 0
    code = LOGON


@dataclass(frozen=True, slots=True)
class Security:
    password: bytes  # 20 bytes
    user_id: int | None = None
    code = SECURITY


@dataclass(frozen=True, slots=True)
class FullRead:
    table: int
    code = FULL_READ


@dataclass(frozen=True, slots=True)
class PartialReadOffset:
    table: int
    offset: int
    count: int
    code = PARTIAL_READ_OFFSET


@dataclass(frozen=True, slots=True)
class FullWrite:
    table: int
    data: bytes
    code = FULL_WRITE


@dataclass(frozen=True, slots=True)
class PartialWriteOffset:
    table: int
    offset: int
    data: bytes
    code = PARTIAL_WRITE_OFFSET


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: int
    code = WAIT


@dataclass(frozen=True, slots=True)
class RawRequest:
    """A service this codec does not model (register, resolve, trace, index reads...)."""

    code: int
    body: bytes = b""


Request = (Ident | Terminate | Disconnect | Logoff | Logon | Security | FullRead | PartialReadOffset
           | FullWrite | PartialWriteOffset | Wait | RawRequest)


def _pad(value: bytes, size: int, what: str) -> bytes:
    if len(value) > size:
        raise MalformedEpsem(f"{what} longer than {size} bytes", remote=False)
    return value.ljust(size, b" " if what == "user" else b"\x00")


def _check_range(value: int, top: int, what: str) -> None:
    if not 0 <= value <= top:
        raise MalformedEpsem(f"{what} {value} out of range 0..{top}", remote=False)


def encode_request(request: Request) -> bytes:
    match request:
        case Ident() | Terminate() | Disconnect() | Logoff():
            return bytes([request.code])
        case Logon(user_id, user, timeout):
            _check_range(user_id, 0xFFFF, "user id")
            _check_range(timeout, 0xFFFF, "session idle timeout")
            return bytes([LOGON]) + user_id.to_bytes(2, "big") + _pad(user, 10, "user") + timeout.to_bytes(2, "big")
        case Security(password, user_id):
            tail = b"" if user_id is None else user_id.to_bytes(2, "big")
            return bytes([SECURITY]) + _pad(password, 20, "password") + tail
        case FullRead(table):
            _check_range(table, MAX_TABLE_ID, "table id")
            return bytes([FULL_READ]) + table.to_bytes(2, "big")
        case PartialReadOffset(table, offset, count):
            _check_range(table, MAX_TABLE_ID, "table id")
            _check_range(offset, MAX_OFFSET, "offset")
            _check_range(count, MAX_COUNT, "count")
            return bytes([PARTIAL_READ_OFFSET]) + table.to_bytes(2, "big") + offset.to_bytes(3, "big") \
                + count.to_bytes(2, "big")
        case FullWrite(table, data):
            _check_range(table, MAX_TABLE_ID, "table id")
            _check_range(len(data), MAX_COUNT, "count")
            return bytes([FULL_WRITE]) + table.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data \
                + bytes([table_checksum(data)])
        case PartialWriteOffset(table, offset, data):
            _check_range(table, MAX_TABLE_ID, "table id")
            _check_range(offset, MAX_OFFSET, "offset")
            _check_range(len(data), MAX_COUNT, "count")
            return bytes([PARTIAL_WRITE_OFFSET]) + table.to_bytes(2, "big") + offset.to_bytes(3, "big") \
                + len(data).to_bytes(2, "big") + data + bytes([table_checksum(data)])
        case Wait(seconds):
            _check_range(seconds, 0xFF, "wait seconds")
            return bytes([WAIT, seconds])
        case RawRequest(code, body):
            _check_range(code, 0xFF, "service code")
            return bytes([code]) + body
    raise TypeError(f"not a C12.22 request: {request!r}")  # pragma: no cover


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) != size:
        raise MalformedEpsem(f"{what} request of {len(body)} bytes, expected {size}")


def decode_request(service: bytes) -> Request:
    """A request service (code byte included)."""
    if not service:
        raise MalformedEpsem("empty service")
    code, body = service[0], service[1:]
    if code < 0x20:
        raise MalformedEpsem(f"0x{code:02X} is a response code, not a request")
    if code in (IDENT, TERMINATE, DISCONNECT, LOGOFF):
        _need(body, 0, "argument-less")
        if code == IDENT:
            return Ident()
        if code == TERMINATE:
            return Terminate()
        return Disconnect() if code == DISCONNECT else Logoff()
    if code == LOGON:
        _need(body, 14, "logon")
        return Logon(int.from_bytes(body[:2], "big"), body[2:12], int.from_bytes(body[12:14], "big"))
    if code == SECURITY:
        if len(body) not in (20, 22):
            raise MalformedEpsem(f"security request of {len(body)} bytes, expected 20 or 22")
        return Security(body[:20], int.from_bytes(body[20:22], "big") if len(body) == 22 else None)
    if code == FULL_READ:
        _need(body, 2, "full read")
        return FullRead(int.from_bytes(body, "big"))
    if code == PARTIAL_READ_OFFSET:
        _need(body, 7, "partial read")
        return PartialReadOffset(int.from_bytes(body[:2], "big"), int.from_bytes(body[2:5], "big"),
                                 int.from_bytes(body[5:7], "big"))
    if code in (FULL_WRITE, PARTIAL_WRITE_OFFSET):
        head = 4 if code == FULL_WRITE else 7
        if len(body) < head + 1:
            raise MalformedEpsem("write request truncated")
        table = int.from_bytes(body[:2], "big")
        count = int.from_bytes(body[head - 2:head], "big")
        _need(body, head + count + 1, "write")
        data = body[head:head + count]
        if body[-1] != table_checksum(data):
            raise ChecksumMismatch(f"write of table {table}: checksum mismatch")
        if code == FULL_WRITE:
            return FullWrite(table, data)
        return PartialWriteOffset(table, int.from_bytes(body[2:5], "big"), data)
    if code == WAIT:
        _need(body, 1, "wait")
        return Wait(body[0])
    return RawRequest(code, body)


# Responses ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ok:
    """<ok> with no data (terminate, logoff, security, write, wait...)."""


@dataclass(frozen=True, slots=True)
class IdentResponse:
    std: int
    version: int
    revision: int
    features: bytes = b"\x00"  # feature list as sent, end-of-list 0x00 included


@dataclass(frozen=True, slots=True)
class LogonResponse:
    session_idle_timeout: int


@dataclass(frozen=True, slots=True)
class TableData:
    data: bytes


@dataclass(frozen=True, slots=True)
class RawResponse:
    """The <ok> answer to a service this codec does not model."""

    body: bytes


Response = Ok | IdentResponse | LogonResponse | TableData | RawResponse


def encode_response(response: Response | ResponseError) -> bytes:
    match response:
        case ResponseError():
            return bytes([response.code if response.code >= 0 else 0x01]) + response.detail
        case Ok():
            return b"\x00"
        case IdentResponse(std, version, revision, features):
            return bytes([0x00, std, version, revision]) + features
        case LogonResponse(timeout):
            return b"\x00" + timeout.to_bytes(2, "big")
        case TableData(data):
            _check_range(len(data), MAX_COUNT, "count")
            return b"\x00" + len(data).to_bytes(2, "big") + data + bytes([table_checksum(data)])
        case RawResponse(body):
            return b"\x00" + body
    raise TypeError(f"not a C12.22 response: {response!r}")  # pragma: no cover


def decode_response(request: Request, service: bytes) -> Response:
    """The answer to ``request``. A <nok> raises its ResponseError class."""
    if not service:
        raise MalformedEpsem("empty response service")
    code, body = service[0], service[1:]
    if code != 0x00:
        if code >= 0x20:
            raise MalformedEpsem(f"0x{code:02X} is a request code, not a response")
        raise response_error(code, body)
    match request:
        case Ident():
            if len(body) < 4:
                raise MalformedEpsem("ident response truncated")
            return IdentResponse(body[0], body[1], body[2], body[3:])
        case Logon():
            if len(body) != 2:
                raise MalformedEpsem(f"logon response of {len(body) + 1} bytes, expected 3")
            return LogonResponse(int.from_bytes(body, "big"))
        case FullRead() | PartialReadOffset():
            if len(body) < 3:
                raise MalformedEpsem("read response truncated")
            count = int.from_bytes(body[:2], "big")
            if len(body) != count + 3:
                raise MalformedEpsem(f"read response announces {count} bytes but carries {len(body) - 3}")
            data = body[2:2 + count]
            if body[-1] != table_checksum(data):
                raise ChecksumMismatch("read response checksum mismatch")
            if isinstance(request, PartialReadOffset) and count > request.count:
                raise MalformedEpsem(f"partial read returned {count} bytes for {request.count} requested")
            return TableData(data)
        case RawRequest():
            return RawResponse(body)
    if body:
        raise MalformedEpsem(f"unexpected {len(body)} data bytes after <ok>")
    return Ok()
