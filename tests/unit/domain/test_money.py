"""Money: the minor-unit check, whose fast path skips normalising the amount."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.money import MINOR_UNITS, decimals_of, fits_minor_unit

amounts = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), allow_nan=False, allow_infinity=False,
                      places=None).filter(lambda d: d.is_finite())


@given(amounts, st.sampled_from(sorted(MINOR_UNITS)))
def test_fits_minor_unit_agrees_with_the_normalised_count_of_decimals(amount: Decimal, currency: str) -> None:
    assert fits_minor_unit(amount, currency) == (decimals_of(amount) <= MINOR_UNITS[currency])


def test_trailing_zeros_do_not_count_and_real_decimals_do() -> None:
    assert fits_minor_unit(Decimal("10.000"), "EUR") and fits_minor_unit(Decimal("1E+2"), "JPY")
    assert not fits_minor_unit(Decimal("10.005"), "USD") and not fits_minor_unit(Decimal("0.5"), "JPY")
    assert fits_minor_unit(Decimal("0.125"), "KWD") and not fits_minor_unit(Decimal("0.1251"), "KWD")
