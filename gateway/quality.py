"""Groups of QualityFlag bits that ingest and VEE reason about together."""

from __future__ import annotations

from meterhub.v1 import model_pb2 as pb

MISSING = pb.QUALITY_FLAG_MISSING
ESTIMATED = pb.QUALITY_FLAG_ESTIMATED
EDITED = pb.QUALITY_FLAG_EDITED

# Bits a source (device or head-end) reports. Redelivered data is compared on
# these only, so flags VEE added to a stored interval never look like a change.
SOURCE_BITS = (
    pb.QUALITY_FLAG_MISSING
    | pb.QUALITY_FLAG_ESTIMATED
    | pb.QUALITY_FLAG_POWER_FAIL
    | pb.QUALITY_FLAG_CLOCK_SET
    | pb.QUALITY_FLAG_OVERFLOW
    | pb.QUALITY_FLAG_TAMPER
    | pb.QUALITY_FLAG_TEST_MODE
    | pb.QUALITY_FLAG_PARTIAL_INTERVAL
    | pb.QUALITY_FLAG_LONG_INTERVAL
    | pb.QUALITY_FLAG_SKIPPED_INTERVAL
    | pb.QUALITY_FLAG_DST_ACTIVE
    | pb.QUALITY_FLAG_DEVICE_ERROR
)

# Bits that mark a value the hub estimated: a late actual replaces it.
HUB_ESTIMATE_BITS = (
    pb.QUALITY_FLAG_ESTIMATE_INTERPOLATED
    | pb.QUALITY_FLAG_ESTIMATE_LIKE_DAY
    | pb.QUALITY_FLAG_ESTIMATE_ZERO_FILL
)

ALL_BITS = sum(v for v in pb.QualityFlag.values() if v > 0)
