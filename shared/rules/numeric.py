"""Exact fixed-point decimal arithmetic, the single numeric semantics of both evaluators.

A number in a rule is an integer count of 1/10,000 (four decimal places, the
precision of ``Order.amount``): ``12.5`` is held as ``125000``. Both the Python
closure evaluator and the WebAssembly evaluator compute on these integers, so
there is no binary float anywhere and ``0.1 + 0.2 = 0.3`` exactly.

Guarantees (identical in both evaluators; the wasm helpers in
``shared.rules.wasm_codegen`` implement exactly these functions):

* every value ``v`` satisfies ``|v| <= MAX_SCALED`` (10^14 in units); an
  operation whose exact result is outside fails with ``overflow``;
* ``+`` and ``-`` are exact;
* ``*`` and ``/`` compute the exact result and round it toward zero to four
  decimals; ``/`` by zero fails with ``division-by-zero``;
* ``floor``/``ceil`` round toward -inf/+inf to a whole number, ``round`` rounds
  half away from zero;
* points are whole numbers: ``earn`` rounds down (a negative amount fails),
  and an order can earn at most ``MAX_POINTS``.

A failure is raised as ``RuleFailure`` inside the closure evaluator and caught at
the rule boundary: it is a recorded outcome, never an error of ingestion.
"""

from __future__ import annotations

from decimal import Decimal
from enum import IntEnum

SCALE_DIGITS = 4
SCALE = 10 ** SCALE_DIGITS
MAX_SCALED = 10 ** 18               # 10^14 in units; keeps every wasm intermediate inside i64
MAX_UNITS = MAX_SCALED // SCALE
MAX_POINTS = 10 ** 12               # per order


class FailureCode(IntEnum):
    """Runtime failures, numbered identically in the wasm module."""

    OVERFLOW = 1
    DIVISION_BY_ZERO = 2
    NEGATIVE_POINTS = 3
    NEGATIVE_FACTOR = 4
    NEGATIVE_CAP = 5
    POINTS_LIMIT = 6

    @property
    def slug(self) -> str:
        return self.name.lower().replace("_", "-")


FAILURE_MESSAGES = {
    FailureCode.OVERFLOW: f"a number went beyond ±{MAX_UNITS:,}",
    FailureCode.DIVISION_BY_ZERO: "division by zero",
    FailureCode.NEGATIVE_POINTS: "earn would give a negative number of points",
    FailureCode.NEGATIVE_FACTOR: "multiply earned by a negative factor",
    FailureCode.NEGATIVE_CAP: "cap earned at a negative number",
    FailureCode.POINTS_LIMIT: f"the order would earn more than {MAX_POINTS:,} points",
}


class RuleFailure(Exception):
    """A runtime failure inside a rule (closure evaluator only)."""

    __slots__ = ("failure",)

    def __init__(self, failure: FailureCode) -> None:
        self.failure = failure


def check(value: int) -> int:
    if value > MAX_SCALED or value < -MAX_SCALED:
        raise RuleFailure(FailureCode.OVERFLOW)
    return value


def add(a: int, b: int) -> int:
    return check(a + b)


def sub(a: int, b: int) -> int:
    return check(a - b)


def mul(a: int, b: int) -> int:
    magnitude = abs(a) * abs(b) // SCALE
    if magnitude > MAX_SCALED:
        raise RuleFailure(FailureCode.OVERFLOW)
    return -magnitude if (a < 0) != (b < 0) else magnitude


def div(a: int, b: int) -> int:
    if b == 0:
        raise RuleFailure(FailureCode.DIVISION_BY_ZERO)
    magnitude = abs(a) * SCALE // abs(b)
    if magnitude > MAX_SCALED:
        raise RuleFailure(FailureCode.OVERFLOW)
    return -magnitude if (a < 0) != (b < 0) else magnitude


def floor(a: int) -> int:
    return a - a % SCALE  # Python's % has the divisor's sign: this rounds toward -inf


def ceil(a: int) -> int:
    return -floor(-a)


def round_half_away(a: int) -> int:
    magnitude = (abs(a) + SCALE // 2) // SCALE * SCALE
    return -magnitude if a < 0 else magnitude


def from_decimal(value: Decimal) -> int:
    """Scale an amount that has at most four decimals (the order schema's limit)."""
    scaled = value.scaleb(SCALE_DIGITS)
    assert scaled == scaled.to_integral_value(), f"{value} has more than {SCALE_DIGITS} decimals"
    return int(scaled)


def from_int(value: int) -> int:
    """Scale a count, clamped to the numeric range (counters beyond 10^14 are saturated)."""
    return max(-MAX_SCALED, min(MAX_SCALED, value * SCALE))


def to_text(scaled: int) -> str:
    """Canonical decimal text of a scaled value: ``125000`` -> ``"12.5"``."""
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), SCALE)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{SCALE_DIGITS}d}".rstrip("0")
