from __future__ import annotations

import numpy as np
import pytest

from vee import flags as f
from vee.quality_codes import (
    IEC_BY_BIT,
    from_green_button,
    from_iec_codes,
    to_green_button,
    to_green_button_array,
    to_iec_codes,
)


@pytest.mark.parametrize(
    ("quality", "code"),
    [
        (0, 14),
        (f.VALIDATED, 0),
        (f.ESTIMATED | f.ESTIMATE_LIKE_DAY, 8),
        (f.ESTIMATED | f.ESTIMATE_INTERPOLATED, 9),
        (f.ESTIMATED | f.ESTIMATE_LIKE_DAY | f.ESTIMATE_SCALED, 8),
        (f.ESTIMATED | f.ESTIMATE_ZERO_FILL | f.POWER_FAIL, 11),
        (f.ESTIMATED, 16),
        (f.EDITED | f.ESTIMATED | f.ESTIMATE_LIKE_DAY, 7),
        (f.SUSPECT | f.FAILED_SPIKE, 10),
    ],
)
def test_green_button_codes(quality: int, code: int) -> None:
    assert to_green_button(quality) == code


def test_green_button_round_trip_of_methods() -> None:
    for q in (f.VALIDATED, f.EDITED, f.ESTIMATED | f.ESTIMATE_LIKE_DAY, f.ESTIMATED | f.ESTIMATE_INTERPOLATED,
              f.SUSPECT):
        assert from_green_button(to_green_button(q)) == q
    with pytest.raises(ValueError, match="unknown Green Button"):
        from_green_button(3)
    arr = to_green_button_array(np.array([f.VALIDATED, f.ESTIMATE_INTERPOLATED | f.ESTIMATED]))
    assert arr.tolist() == [0, 9]


def test_iec_codes() -> None:
    assert to_iec_codes(0) == ("1.0.0",)
    assert to_iec_codes(f.VALIDATED) == ("3.0.1",)
    assert to_iec_codes(f.ESTIMATED | f.ESTIMATE_INTERPOLATED) == ("3.8.0", "2.8.0")
    assert to_iec_codes(f.POWER_FAIL | f.MISSING) == ("3.5.259", "1.2.32")
    assert from_iec_codes(["1.2.32", "3.5.259"]) == f.POWER_FAIL | f.MISSING
    assert from_iec_codes(["2.8.0"]) == f.ESTIMATED
    assert from_iec_codes(["3.6.5", "bogus", "9.9.9"]) == f.SUSPECT | f.FAILED_SPIKE


def test_every_device_bit_round_trips_through_iec() -> None:
    for bit in (f.POWER_FAIL, f.CLOCK_SET, f.OVERFLOW, f.TAMPER, f.TEST_MODE, f.PARTIAL_INTERVAL, f.LONG_INTERVAL,
                f.SKIPPED_INTERVAL, f.DST_ACTIVE, f.EDITED, f.MISSING, f.VALIDATED):
        assert from_iec_codes(to_iec_codes(bit)) == bit, IEC_BY_BIT[bit]
