"""Our decoder against every independent C12.22 capture in ../shared/reference/c1222/pcaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.c1222.codec import (
    Apdu,
    KeyRing,
    PartialReadOffset,
    RawRequest,
    SecurityMode,
    TableData,
    apdu_length,
    decode_apdu,
    decode_request,
    decode_response,
    open_epsem,
)
from adapters.c1222.errors import InvalidServiceSequenceState, UnknownKey
from tests.conformance.c1222.pcap import streams
from tests.support.reference import reference_root

REFERENCE = reference_root() / "c1222"
PCAPS = REFERENCE / "pcaps"
EXAMPLE8_KEYS = KeyRing({2: bytes.fromhex("01020304050607080102030405060708")})


def captures() -> list[Path]:
    if not PCAPS.is_dir():
        pytest.fail(f"C12.22 reference captures are missing: {PCAPS} (clone ../shared/reference next to the repo)")
    found = sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".cap"))
    if not found:
        pytest.fail(f"no captures in {PCAPS}")
    return found


def _is_request(apdu: Apdu) -> bool:
    if apdu.user_information[0] & 0x0C:  # secured: responses echo the invocation id
        return apdu.called_ap_invocation_id is None
    return open_epsem(apdu).services[0][0] >= 0x20


def apdus(path: Path) -> list[tuple[bool, bytes]]:
    """(is a request?, APDU bytes) in capture order per direction."""
    out = []
    for data in streams(path).values():
        pos = 0
        while pos < len(data):
            size = apdu_length(data[pos:])
            assert size is not None and pos + size <= len(data), f"{path.name}: truncated APDU"
            out.append((_is_request(decode_apdu(data[pos:pos + size])), data[pos:pos + size]))
            pos += size
    return out


def test_reference_folder_present() -> None:
    assert len(captures()) >= 12


@pytest.mark.parametrize("path", captures() if PCAPS.is_dir() else [PCAPS / "MISSING"], ids=lambda p: p.name)
def test_every_capture_decodes_and_reencodes(path: Path) -> None:
    found = apdus(path)
    assert found, f"{path.name}: no C12.22 APDUs"
    for to_meter, raw in found:
        apdu = decode_apdu(raw)
        assert apdu.encode() == raw, f"{path.name}: re-encoding differs"
        mode = raw and apdu.user_information[0] >> 2 & 3
        if mode:
            keys = EXAMPLE8_KEYS if "example8" in path.name else None
            if keys is None:
                with pytest.raises(UnknownKey):
                    open_epsem(apdu, keys)
                continue
            epsem = open_epsem(apdu, keys)
            assert epsem.security_mode is SecurityMode.CIPHERED
        else:
            epsem = open_epsem(apdu)
        if to_meter:
            for service in epsem.services:
                decode_request(service)


def _pair(path: Path) -> tuple[list[bytes], list[bytes]]:
    found = apdus(path)
    requests = [open_epsem(decode_apdu(raw)).services for to, raw in found if to]
    responses = [open_epsem(decode_apdu(raw)).services for to, raw in found if not to]
    return requests[0], responses[0]


def test_service_error_capture_is_isss() -> None:
    requests, responses = _pair(PCAPS / "c1222_service_error_tcp.pcap")
    with pytest.raises(InvalidServiceSequenceState):
        decode_response(decode_request(requests[0]), responses[0])


def test_unmodelled_services_keep_their_bytes() -> None:
    for name, code in [("c1222_reg_service_tcp.pcap", 0x27), ("c1222_resolve_service_tcp.pcap", 0x25),
                       ("c1222_trace_service_tcp.pcap", 0x26), ("c1222_rw_service_tcp.pcap", 0x31)]:
        requests, responses = _pair(PCAPS / name)
        request = decode_request(requests[0])
        assert isinstance(request, RawRequest) and request.code == code
        decode_response(request, responses[0])


def test_example8_capture_mac_verifies_and_decrypts() -> None:
    found = apdus(PCAPS / "c1222_std_example8.pcap")
    request = next(decode_apdu(raw) for to, raw in found if to)
    response = next(decode_apdu(raw) for to, raw in found if not to)
    services = open_epsem(request, EXAMPLE8_KEYS).services
    assert decode_request(services[1]) == PartialReadOffset(1, 16, 16)
    answer = open_epsem(response, EXAMPLE8_KEYS).services[0]
    assert decode_response(PartialReadOffset(1, 16, 16), answer) == TableData(b"MANUFACTURER SN ")
