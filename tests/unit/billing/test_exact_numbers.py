"""Exact number formatting: decimal strings and whole + remainder splits."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from gateway.billing import kwh, to_decimal, whole_and_remainder

fractions = st.builds(Fraction, st.integers(-10**15, 10**15), st.integers(1, 10**6))


@given(fractions)
def test_to_decimal_is_exact_or_half_even_to_six_places(value: Fraction) -> None:
    got = to_decimal(value)
    if Fraction(got) != value:
        # Not a finite decimal: rounded half-even at 6 places, as Fraction's round() does.
        assert Fraction(got) == Fraction(round(value * 10**6), 10**6)
        assert -got.as_tuple().exponent == 6  # type: ignore[operator]


@given(st.integers(-10**15, 10**15))
def test_kwh_of_whole_wh_is_exact_and_minimal(wh: int) -> None:
    got = kwh(Fraction(wh))
    assert Fraction(got) == Fraction(wh, 1000)
    assert got == Decimal(wh) / 1000
    assert not str(got).endswith("0") or "." not in str(got)


@given(st.lists(fractions, min_size=1, max_size=4))
def test_whole_and_remainder_reassembles(values: list[Fraction]) -> None:
    parts, den = whole_and_remainder(*values)
    for value, (whole, num) in zip(values, parts, strict=True):
        assert 0 <= num < den
        assert Fraction(whole) + Fraction(num, den) == value


def test_examples() -> None:
    assert str(kwh(Fraction(30498, 10))) == "3.0498"
    assert str(kwh(Fraction(3000))) == "3"
    assert str(to_decimal(Fraction(1, 3))) == "0.333333"
    assert str(to_decimal(Fraction(5, 2_000_000))) == "0.0000025"
