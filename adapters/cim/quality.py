"""IEC 61968-9 ReadingQualityType codes (``system.category.subCategory``) <->
QualityFlag bit sets.

Systems: 1 end device, 2 metering system (head-end / MDM), 3 other system.
Categories: 0 valid, 1 diagnostics, 2 power quality, 3 tamper / revenue
protection, 4 data collection, 5 reasonability, 6 validation, 7 edited,
8 estimated, 9 obsolete, 10 questionable, 11 derived, 12 projected.
A missing interval is an absent IntervalReading in CIM, never a code.
"""

from __future__ import annotations

from collections.abc import Iterable

from adapters.cim.errors import BadQualityCode
from meterhub.v1 import model_pb2 as pb

MAX_QUALITY_CHARS = 32

# (category, subCategory) -> flags; the most specific entry wins.
_SPECIFIC: dict[tuple[int, int], int] = {
    (0, 0): 0,
    (2, 32): pb.QUALITY_FLAG_POWER_FAIL,
    (3, 0): pb.QUALITY_FLAG_TAMPER,
    (4, 1): pb.QUALITY_FLAG_OVERFLOW,
    (4, 2): pb.QUALITY_FLAG_PARTIAL_INTERVAL,
    (4, 3): pb.QUALITY_FLAG_LONG_INTERVAL,
    (4, 4): pb.QUALITY_FLAG_SKIPPED_INTERVAL,
    (4, 5): pb.QUALITY_FLAG_TEST_MODE,
    (4, 9): pb.QUALITY_FLAG_CLOCK_SET,
    (7, 0): pb.QUALITY_FLAG_EDITED,
    (8, 0): pb.QUALITY_FLAG_ESTIMATED,
    (10, 0): pb.QUALITY_FLAG_SUSPECT,
}
# category -> flags for subcategories not listed above.
_CATEGORY: dict[int, int] = {
    0: 0, 1: pb.QUALITY_FLAG_DEVICE_ERROR, 2: 0, 3: pb.QUALITY_FLAG_TAMPER,
    4: pb.QUALITY_FLAG_DEVICE_ERROR, 5: pb.QUALITY_FLAG_SUSPECT, 6: pb.QUALITY_FLAG_SUSPECT,
    7: pb.QUALITY_FLAG_EDITED, 8: pb.QUALITY_FLAG_ESTIMATED, 9: pb.QUALITY_FLAG_SUSPECT,
    10: pb.QUALITY_FLAG_SUSPECT, 11: 0, 12: pb.QUALITY_FLAG_ESTIMATED,
}
_FAILED_RULES = (
    pb.QUALITY_FLAG_FAILED_SPIKE | pb.QUALITY_FLAG_FAILED_HIGH_LIMIT | pb.QUALITY_FLAG_FAILED_LOW_LIMIT
    | pb.QUALITY_FLAG_FAILED_NEGATIVE | pb.QUALITY_FLAG_FAILED_ZERO_RUN | pb.QUALITY_FLAG_FAILED_FLAT_LINE
    | pb.QUALITY_FLAG_FAILED_SUM_CHECK | pb.QUALITY_FLAG_FAILED_TIME_TOLERANCE
    | pb.QUALITY_FLAG_FAILED_INACTIVE_USAGE | pb.QUALITY_FLAG_FAILED_CONFLICT
)
_HUB_ESTIMATES = (pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED | pb.QUALITY_FLAG_ESTIMATE_LIKE_DAY
                  | pb.QUALITY_FLAG_ESTIMATE_ZERO_FILL | pb.QUALITY_FLAG_ESTIMATE_SCALED)
# Outbound: flag -> code. Device conditions keep system 1, hub conclusions use 2.
_OUTBOUND: tuple[tuple[int, str], ...] = (
    (pb.QUALITY_FLAG_POWER_FAIL, "1.2.32"),
    (pb.QUALITY_FLAG_TAMPER, "1.3.0"),
    (pb.QUALITY_FLAG_OVERFLOW, "1.4.1"),
    (pb.QUALITY_FLAG_PARTIAL_INTERVAL, "1.4.2"),
    (pb.QUALITY_FLAG_LONG_INTERVAL, "1.4.3"),
    (pb.QUALITY_FLAG_SKIPPED_INTERVAL, "1.4.4"),
    (pb.QUALITY_FLAG_TEST_MODE, "1.4.5"),
    (pb.QUALITY_FLAG_CLOCK_SET, "1.4.9"),
    (pb.QUALITY_FLAG_DEVICE_ERROR, "1.1.0"),
    (pb.QUALITY_FLAG_EDITED, "2.7.0"),
    (pb.QUALITY_FLAG_ESTIMATED | _HUB_ESTIMATES, "2.8.0"),
    (pb.QUALITY_FLAG_SUSPECT | _FAILED_RULES, "2.10.0"),
)
# Flags whose code maps back to exactly that flag (round trips without loss).
LOSSLESS_FLAGS = (
    pb.QUALITY_FLAG_POWER_FAIL | pb.QUALITY_FLAG_TAMPER | pb.QUALITY_FLAG_OVERFLOW
    | pb.QUALITY_FLAG_PARTIAL_INTERVAL | pb.QUALITY_FLAG_LONG_INTERVAL | pb.QUALITY_FLAG_SKIPPED_INTERVAL
    | pb.QUALITY_FLAG_TEST_MODE | pb.QUALITY_FLAG_CLOCK_SET | pb.QUALITY_FLAG_DEVICE_ERROR
    | pb.QUALITY_FLAG_EDITED | pb.QUALITY_FLAG_ESTIMATED | pb.QUALITY_FLAG_SUSPECT
)


def _parse(code: str) -> tuple[int, int, int]:
    if len(code) > MAX_QUALITY_CHARS:
        raise BadQualityCode(f"ReadingQualityType of {len(code)} characters is too long")
    parts = code.strip().split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
        raise BadQualityCode(f"ReadingQualityType {code!r} is not system.category.subCategory")
    system, category, sub = (int(p) for p in parts)
    if system > 5:
        raise BadQualityCode(f"ReadingQualityType {code!r}: system {system} is not defined")
    if category not in _CATEGORY:
        raise BadQualityCode(f"ReadingQualityType {code!r}: category {category} is not defined")
    return system, category, sub


def flags_from_code(code: str) -> int:
    """Quality bits for one code; a malformed or undefined code is BadQualityCode."""
    _, category, sub = _parse(code)
    specific = _SPECIFIC.get((category, sub))
    return _CATEGORY[category] if specific is None else specific


def flags_from_codes(codes: Iterable[str]) -> int:
    flags = 0
    for code in codes:
        flags |= flags_from_code(code)
    return flags


def codes_from_flags(flags: int) -> list[str]:
    """Codes for a bit set; an all-valid interval gets none (valid is implied)."""
    return [code for mask, code in _OUTBOUND if flags & mask]
