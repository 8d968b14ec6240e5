"""Money: ISO 4217 currencies, their minor units, and exact decimal amounts.

Amounts are ``Decimal`` end to end and never binary floats; an amount may not
be written with more decimals than its currency's minor unit (no 10.005 USD,
and no 10.000 USD either: one written form per value; see docs/input.md).
"""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 active codes with their minor units (a subset covering every currency
# in circulation that a merchant of ours settles in; extend here, not elsewhere).
MINOR_UNITS: dict[str, int] = {
    "AED": 2, "ARS": 2, "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2,
    "CLP": 0, "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EGP": 2, "EUR": 2, "GBP": 2,
    "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0,
    "KRW": 0, "KWD": 3, "MAD": 2, "MXN": 2, "MYR": 2, "NGN": 2, "NOK": 2, "NZD": 2,
    "OMR": 3, "PEN": 2, "PHP": 2, "PKR": 2, "PLN": 2, "QAR": 2, "RON": 2, "RSD": 2,
    "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UAH": 2,
    "USD": 2, "VND": 0, "ZAR": 2,
}

# The most decimals any currency has (BHD, JOD, KWD, OMR, TND): the widest an amount
# may be written before its currency is known.
MAX_MINOR_UNITS = max(MINOR_UNITS.values())

# No single order is worth more than this many currency units: larger numbers are
# typos or attacks, and bounding them keeps points within 64-bit integers.
MAX_ORDER_AMOUNT = Decimal("10000000")


def is_known_currency(code: str) -> bool:
    return code in MINOR_UNITS


def decimals_of(amount: Decimal) -> int:
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def fits_minor_unit(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` is *written* with at most the currency's decimals ("10.50" EUR
    yes, "10.500" EUR no, though it is the same number: a client that sends three
    decimals for a two-decimal currency has a bug worth hearing about)."""
    minor = MINOR_UNITS[currency]
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int), "amounts are finite"
    return -exponent <= minor
