"""Money: the minor-unit check counts the decimals an amount is written with."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.money import MINOR_UNITS, decimals_of, fits_minor_unit

amounts = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), allow_nan=False, allow_infinity=False,
                      places=None).filter(lambda d: d.is_finite())


@given(amounts, st.sampled_from(sorted(MINOR_UNITS)))
def test_fits_minor_unit_counts_the_written_decimals(amount: Decimal, currency: str) -> None:
    written = len(format(amount, "f").partition(".")[2])
    assert fits_minor_unit(amount, currency) == (written <= MINOR_UNITS[currency])
    # Never looser than the value's own decimals: a real third decimal is never accepted for EUR.
    assert not fits_minor_unit(amount, currency) or decimals_of(amount) <= MINOR_UNITS[currency]


def test_written_trailing_zeros_count_and_real_decimals_do() -> None:
    # One written form per value: "10.000" EUR is refused like "10.005" EUR (docs/input.md).
    assert not fits_minor_unit(Decimal("10.000"), "EUR") and fits_minor_unit(Decimal("10.00"), "EUR")
    assert fits_minor_unit(Decimal("1E+2"), "JPY")
    assert not fits_minor_unit(Decimal("10.005"), "USD") and not fits_minor_unit(Decimal("0.5"), "JPY")
    assert fits_minor_unit(Decimal("0.125"), "KWD") and not fits_minor_unit(Decimal("0.1251"), "KWD")
