"""QualityFlag bits <-> IEC 61968-9 ReadingQuality codes and Green Button codes.

IEC 61968-9 (Annex D) codes are "system.category.index". Systems: 1 end
device, 2 metering system (head-end), 3 MDM (here: the hub's VEE).
Categories: 0 valid, 1 diagnostics, 2 power quality, 3 tamper / revenue
protection, 4 data collection, 5 reasonability, 6 validation, 7 edited,
8 estimated. The indices used below (0.1 validated, 2.32 power fail, 3.0
revenue protection, 4.1 overflow, 4.2 partial, 4.3 long, 4.4 skipped, 4.5
test data, 4.9 clock changed, 4.16 DST in effect, 5.258 suspect, 5.259 known
missing read, 6.x failed validation, 7.0 edited, 8.0 estimated) follow the
IEC 61968-9 ReadingQualityType tables as reproduced in public CIM
implementations (e.g. Elster/Honeywell Connexo ``QualityCodeIndex``). IEC has
no index per estimation method; the method travels in Green Button codes.

Green Button (NAESB REQ.21 ESPI) ``QualityOfReading``: 0 valid, 7 manually
edited, 8 estimated using reference day, 9 estimated using linear
interpolation, 10 questionable, 11 derived, 12 projected, 13 mixed, 14 raw,
15 normalised for weather, 16 other, 17 validated, 18 verified, 19
revenue-quality.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numpy as np

from vee import flags as f
from vee.runs import Int64Array

IEC_VALID = "1.0.0"

# One code per bit, in a fixed order (most telling first).
IEC_BY_BIT: Mapping[int, str] = MappingProxyType({
    f.EDITED: "3.7.0",
    f.ESTIMATE_INTERPOLATED: "3.8.0",
    f.ESTIMATE_LIKE_DAY: "3.8.0",
    f.ESTIMATE_ZERO_FILL: "3.8.0",
    f.ESTIMATE_SCALED: "3.8.0",
    f.ESTIMATED: "2.8.0",
    f.MISSING: "3.5.259",
    f.SUSPECT: "3.5.258",
    f.FAILED_SPIKE: "3.6.5",
    f.FAILED_HIGH_LIMIT: "3.6.3",
    f.FAILED_LOW_LIMIT: "3.6.4",
    f.FAILED_NEGATIVE: "3.6.4",
    f.FAILED_ZERO_RUN: "3.6.1",
    f.FAILED_FLAT_LINE: "3.6.0",
    f.FAILED_SUM_CHECK: "3.6.9",
    f.FAILED_TIME_TOLERANCE: "3.4.9",
    f.FAILED_INACTIVE_USAGE: "3.6.2",
    f.FAILED_CONFLICT: "3.6.0",
    f.POWER_FAIL: "1.2.32",
    f.CLOCK_SET: "1.4.9",
    f.OVERFLOW: "1.4.1",
    f.TAMPER: "1.3.0",
    f.TEST_MODE: "1.4.5",
    f.PARTIAL_INTERVAL: "1.4.2",
    f.LONG_INTERVAL: "1.4.3",
    f.SKIPPED_INTERVAL: "1.4.4",
    f.DST_ACTIVE: "1.4.16",
    f.DEVICE_ERROR: "1.1.0",
    f.VALIDATED: "3.0.1",
})

# Codes back to bits: device and head-end codes from any system; the hub's own
# method bits cannot be recovered from IEC codes (all estimates are x.8.0).
_IEC_CATEGORY_INDEX: Mapping[str, int] = MappingProxyType({
    "0.0": 0,
    "0.1": f.VALIDATED,
    "1.0": f.DEVICE_ERROR,
    "2.32": f.POWER_FAIL,
    "3.0": f.TAMPER,
    "4.1": f.OVERFLOW,
    "4.2": f.PARTIAL_INTERVAL,
    "4.3": f.LONG_INTERVAL,
    "4.4": f.SKIPPED_INTERVAL,
    "4.5": f.TEST_MODE,
    "4.9": f.CLOCK_SET,
    "4.16": f.DST_ACTIVE,
    "5.258": f.SUSPECT,
    "5.259": f.MISSING,
    "6.0": f.SUSPECT,
    "6.1": f.SUSPECT | f.FAILED_ZERO_RUN,
    "6.2": f.SUSPECT | f.FAILED_INACTIVE_USAGE,
    "6.3": f.SUSPECT | f.FAILED_HIGH_LIMIT,
    "6.4": f.SUSPECT | f.FAILED_LOW_LIMIT,
    "6.5": f.SUSPECT | f.FAILED_SPIKE,
    "6.9": f.SUSPECT | f.FAILED_SUM_CHECK,
    "7.0": f.EDITED,
    "8.0": f.ESTIMATED,
})


def to_iec_codes(quality: int) -> tuple[str, ...]:
    """IEC 61968-9 ReadingQualityType codes for a QualityFlag bit set
    (deduplicated, in table order); "1.0.0" when no bit applies."""
    codes: list[str] = []
    for bit, code in IEC_BY_BIT.items():
        if quality & bit and code not in codes:
            codes.append(code)
    return tuple(codes) or (IEC_VALID,)


def from_iec_codes(codes: Iterable[str]) -> int:
    """QualityFlag bits for IEC codes; unknown codes are ignored."""
    bits = 0
    for code in codes:
        parts = code.split(".")
        if len(parts) != 3:
            continue
        system, rest = parts[0], f"{parts[1]}.{parts[2]}"
        bit = _IEC_CATEGORY_INDEX.get(rest, 0)
        # An estimate made by the MDM itself is the hub's.
        if rest == "8.0" and system == "3":
            bit = f.ESTIMATED
        bits |= bit
    return bits


GB_VALID = 0
GB_EDITED = 7
GB_REFERENCE_DAY = 8
GB_LINEAR_INTERPOLATION = 9
GB_QUESTIONABLE = 10
GB_DERIVED = 11
GB_PROJECTED = 12
GB_MIXED = 13
GB_RAW = 14
GB_WEATHER_NORMALISED = 15
GB_OTHER = 16
GB_VALIDATED = 17
GB_VERIFIED = 18
GB_REVENUE_QUALITY = 19


def to_green_button_array(qualities: Int64Array) -> Int64Array:
    """Green Button QualityOfReading per interval (first matching row wins):
    edited 7; like-day 8; interpolated 9; zero fill 11 (derived from the
    outage flag); other estimates 16; suspect/failed 10; validated 0; else 14 (raw).
    Missing intervals have no reading to export; they map to 16 if asked."""
    q = np.asarray(qualities, dtype=np.int64)
    conditions = [
        (q & f.EDITED) != 0,
        (q & f.ESTIMATE_LIKE_DAY) != 0,
        (q & f.ESTIMATE_INTERPOLATED) != 0,
        (q & f.ESTIMATE_ZERO_FILL) != 0,
        (q & (f.ESTIMATED | f.MISSING)) != 0,
        (q & (f.SUSPECT | f.ALL_FAILURES)) != 0,
        (q & f.VALIDATED) != 0,
    ]
    choices = [GB_EDITED, GB_REFERENCE_DAY, GB_LINEAR_INTERPOLATION, GB_DERIVED, GB_OTHER, GB_QUESTIONABLE, GB_VALID]
    out: Int64Array = np.select(conditions, choices, default=GB_RAW).astype(np.int64)
    return out


def to_green_button(quality: int) -> int:
    return int(to_green_button_array(np.array([quality], dtype=np.int64))[0])


_GB_TO_BITS: Mapping[int, int] = MappingProxyType({
    GB_VALID: f.VALIDATED,
    GB_EDITED: f.EDITED,
    GB_REFERENCE_DAY: f.ESTIMATED | f.ESTIMATE_LIKE_DAY,
    GB_LINEAR_INTERPOLATION: f.ESTIMATED | f.ESTIMATE_INTERPOLATED,
    GB_QUESTIONABLE: f.SUSPECT,
    GB_DERIVED: f.ESTIMATED,
    GB_PROJECTED: f.ESTIMATED,
    GB_MIXED: 0,
    GB_RAW: 0,
    GB_WEATHER_NORMALISED: f.ESTIMATED,
    GB_OTHER: 0,
    GB_VALIDATED: f.VALIDATED,
    GB_VERIFIED: f.VALIDATED | f.APPROVED,
    GB_REVENUE_QUALITY: f.VALIDATED,
})


def from_green_button(code: int) -> int:
    """QualityFlag bits for a Green Button QualityOfReading code."""
    try:
        return _GB_TO_BITS[code]
    except KeyError:
        raise ValueError(f"unknown Green Button quality code {code}") from None
