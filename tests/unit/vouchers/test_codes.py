"""Voucher codes: 80 bits, a check symbol that catches every single mistyped symbol
and every swap of two adjacent symbols, and the spellings people type accepted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from shared.vouchers import codes
from shared.vouchers.codes import VoucherCodeInvalid

SECRETS = st.binary(min_size=10, max_size=10)


@given(SECRETS)
def test_a_code_is_80_bits_in_groups_and_normalises_back(secret: bytes) -> None:
    code = codes.encode(secret)
    assert len(code) == 21 and code.count("-") == 4
    data = codes.normalise(code)[:16]
    number = 0
    for symbol in data:
        number = number * 32 + codes.ALPHABET.index(symbol)
    assert number.to_bytes(10, "big") == secret  # every one of the 80 bits is carried
    assert codes.normalise(code.lower().replace("-", " ")) == codes.normalise(code)


@given(SECRETS, st.integers(0, 15), st.integers(1, 31))
@settings(max_examples=300)
def test_every_single_substitution_is_caught(secret: bytes, position: int, shift: int) -> None:
    full = codes.normalise(codes.encode(secret))
    wrong = codes.ALPHABET[(codes.ALPHABET.index(full[position]) + shift) % 32]
    typed = full[:position] + wrong + full[position + 1:]
    with pytest.raises(VoucherCodeInvalid):
        codes.normalise(typed)


@given(SECRETS, st.integers(0, 14))
@settings(max_examples=300)
def test_every_adjacent_swap_is_caught(secret: bytes, position: int) -> None:
    full = codes.normalise(codes.encode(secret))
    if full[position] == full[position + 1]:
        return  # swapping two equal symbols is no error
    typed = full[:position] + full[position + 1] + full[position] + full[position + 2:]
    with pytest.raises(VoucherCodeInvalid):
        codes.normalise(typed)


def test_lookalikes_read_as_digits_and_bad_shapes_are_refused() -> None:
    code = codes.encode(bytes(10))  # all zeros: 0000-0000-0000-0000-0
    assert codes.normalise(code.replace("0", "O")) == codes.normalise(code)
    one = codes.encode((1).to_bytes(10, "big"))
    assert codes.normalise(one.replace("1", "l")) == codes.normalise(one)
    for bad in ("", "ABC", "U" * 17, "0000-0000-0000-0000-00"):
        with pytest.raises(VoucherCodeInvalid):
            codes.normalise(bad)


def test_the_hash_depends_on_the_tenant_and_not_on_the_spelling() -> None:
    code = codes.encode(b"0123456789")
    assert codes.code_hash("acme", code) == codes.code_hash("acme", code.lower().replace("-", ""))
    assert codes.code_hash("acme", code) != codes.code_hash("other", code)
