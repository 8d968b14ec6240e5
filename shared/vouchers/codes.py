"""Voucher codes: how they are made, typed back in, checked and hashed.

Alphabet and check (documented in docs/vouchers.md):

* 16 data symbols of Crockford's base32 (``0-9 A-Z`` without ``I L O U``): 16 x 5 =
  **80 bits**, all of them secret (no prefix, no counter).
* one check symbol: the 80-bit number modulo 37, written in Crockford's check
  alphabet (the 32 symbols, then ``* ~ $ = U`` for 32..36). Because 37 is a prime
  larger than 32, every single mistyped symbol and every swap of two adjacent
  symbols changes the remainder (a substitution changes it by ``(a-b)*32^i``, a
  swap by ``(a-b)*32^i*31``, neither divisible by 37): the code is refused as a
  typing error before any lookup.
* shown as ``XXXX-XXXX-XXXX-XXXX-C``. ``normalise`` accepts what a person types:
  any case, hyphens and spaces anywhere, ``O`` for zero, ``I``/``L`` for one.

Where the 80 bits come from: a voucher's code is ``HMAC-SHA256(k, redemptionId)``
cut to 80 bits, ``k`` a per-tenant secret that rests wrapped by the tenant's key
(``PersonalDataVault.keyed_digest``). So a replay of the redemption that bought it
gives the same code (exactly once in effect, with nothing secret stored), and the
owner can be shown it again; without the tenant's key nobody can compute one.

Stored: only ``code_hash`` (SHA-256 over the tenant and the normalised code). 80
random bits cannot be searched for from a hash, so no key is needed there, and a
point-of-sale lookup is one point read by that hash. A code is never logged.
"""

from __future__ import annotations

import hashlib

from shared.errors import FieldProblem, ValidationFailed

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_ALPHABET = ALPHABET + "*~$=U"
DATA_SYMBOLS = 16
CODE_BITS = DATA_SYMBOLS * 5
assert len(ALPHABET) == 32 and len(CHECK_ALPHABET) == 37 and CODE_BITS >= 80

_VALUE = {c: i for i, c in enumerate(CHECK_ALPHABET)}
# What people type for what they read: Crockford's decoding aliases.
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


class VoucherCodeInvalid(ValidationFailed):
    """Not a voucher code this platform could have made (a typing error, most likely)."""

    code = "voucher-code-invalid"


def check_symbol(data: str) -> str:
    number = 0
    for symbol in data:
        number = number * 32 + _VALUE[symbol]
    return CHECK_ALPHABET[number % 37]


def encode(secret_bits: bytes) -> str:
    """The displayed code for 10 bytes (80 bits) of secret material."""
    assert len(secret_bits) == CODE_BITS // 8, "a code is made of exactly 80 bits"
    number = int.from_bytes(secret_bits, "big")
    data = "".join(ALPHABET[(number >> (5 * (DATA_SYMBOLS - 1 - i))) & 31] for i in range(DATA_SYMBOLS))
    full = data + check_symbol(data)
    return "-".join([full[0:4], full[4:8], full[8:12], full[12:16], full[16]])


def normalise(typed: str) -> str:
    """The canonical form (17 symbols, no separators) or ``VoucherCodeInvalid``."""
    text = typed.upper().replace("-", "").replace(" ", "")
    if len(text) != DATA_SYMBOLS + 1:
        raise VoucherCodeInvalid("not a voucher code: it has 16 symbols and a check symbol",
                                 [FieldProblem("code", f"expected 17 symbols (hyphens aside), got {len(text)}")])
    data, check = text[:DATA_SYMBOLS].translate(_ALIASES), text[DATA_SYMBOLS]
    if check in "OIL":
        check = check.translate(_ALIASES)
    if any(c not in ALPHABET for c in data) or check not in CHECK_ALPHABET:
        raise VoucherCodeInvalid("not a voucher code: a symbol outside the code alphabet",
                                 [FieldProblem("code", "only 0-9 and A-Z without U (and a check symbol) occur")])
    if check_symbol(data) != check:
        raise VoucherCodeInvalid("the voucher code's check symbol does not match: a symbol was mistyped",
                                 [FieldProblem("code", "check symbol mismatch: read the code again")])
    return data + check


def code_hash(tenant_id: str, typed: str) -> str:
    """The stored form and lookup key of a code (``typed`` in any accepted spelling)."""
    return hashlib.sha256(f"accrue-voucher\x00{tenant_id}\x00{normalise(typed)}".encode()).hexdigest()
