"""The one written form of a number, an instant and a date that the API accepts.

Pydantic's defaults are generous: a ``Decimal`` field takes ``" 10 "``,
``"1_000"``, ``"1e3"`` and Arabic-Indic digits, a ``datetime`` field takes epoch
seconds (as a number or a string) and naive times, a ``date`` field takes any
year. Each of those is a second way to write a value, and some of them are a
way to write a *different* value than the client meant (``"1_000"`` read as
1000 where a typo was meant). The types here accept exactly one grammar each,
and each publishes that grammar in the OpenAPI document as an anchored
``pattern`` with a ``maxLength``, built from the very regular expression the
parser uses, so the document and the server cannot drift
(``tests/unit/domain/test_inputs.py`` checks both on generated inputs).

Guarantees:

* ``DecimalText``: a JSON *string* of ASCII digits without a leading zero
  ("0.5", not "00.5"), an optional single ``.`` followed by at least one and at
  most ``decimals`` digits, nothing else (no sign, no exponent, no spaces, no
  ``_``): so a value written back in plain notation is the very text that came in. JSON numbers are refused: a binary
  float cannot carry 0.10 exactly, and one accepted notation is simpler than
  two. (Python code may pass a ``Decimal``; it is held to the same grammar.)
* ``Instant``: an RFC 3339 date-time string with an explicit offset (``Z`` or
  ``+hh:mm``), at most microsecond precision, inside
  ``[EARLIEST_INSTANT, LATEST_INSTANT]``. Epoch numbers, epoch strings and
  naive times are refused. (Python code may pass an aware ``datetime``.)
* ``CalendarDate``: ``YYYY-MM-DD`` and nothing else. Range checks per field
  (a birth date is not in the future) are the caller's, see ``date_bounds``.

Every refusal is an ``InputError`` (a ``ValueError``) whose message says what the
accepted form is and whose ``kind`` says why: ``*_syntax`` when the text is not in
the grammar (exactly when the published pattern does not match it), ``*_invalid``
for a well-formed but impossible date, ``*_range`` outside the bounds. In a model
it becomes a pydantic error of that type, and the API a 422 problem naming the field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from shared.clock import EARLIEST_INSTANT, LATEST_INSTANT, instant_problem


class InputError(ValueError):
    """A refused input: ``kind`` is the pydantic error type it becomes (see the module docstring)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _as_pydantic(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Run ``parse`` in a validator: an ``InputError`` becomes an error of its own type."""
    def validate(value: Any) -> Any:
        try:
            return parse(value)
        except InputError as error:
            raise PydanticCustomError(error.kind, str(error)) from None
    return validate


# --- decimals -----------------------------------------------------------------


def decimal_core(int_digits: int, decimals: int) -> str:
    """The unanchored regular expression of a decimal with at most ``int_digits``
    integer digits, no leading zero, and ``decimals`` fraction digits. ``[0-9]`` (not
    ``\\d``): only ASCII digits, in Python's ``re`` and in ECMA-262 alike."""
    assert int_digits >= 1 and decimals >= 0
    fraction = rf"(\.[0-9]{{1,{decimals}}})?" if decimals else ""
    whole = rf"(0|[1-9][0-9]{{0,{int_digits - 1}}})" if int_digits > 1 else "[0-9]"
    return whole + fraction


def decimal_pattern(int_digits: int, decimals: int) -> str:
    """The OpenAPI (ECMA-262) pattern: anchored at both ends."""
    return f"^{decimal_core(int_digits, decimals)}$"


@functools.lru_cache(maxsize=None)
def _decimal_regex(int_digits: int, decimals: int) -> re.Pattern[str]:
    """``decimal_core`` compiled once per shape: an ingest batch parses thousands of
    amounts, and building the pattern's text and finding it in ``re``'s cache each
    time cost several µs of the order's validation."""
    return re.compile(decimal_core(int_digits, decimals))


def parse_decimal(text: str, int_digits: int, decimals: int) -> Decimal:
    """The value of ``text`` if it is written in the one accepted form, else ValueError."""
    if not isinstance(text, str):
        raise InputError("decimal_syntax",
                         "must be a string of digits such as \"10.00\" (JSON numbers are not accepted)")
    # fullmatch, never match + "$": Python's "$" also matches before a final newline.
    if _decimal_regex(int_digits, decimals).fullmatch(text) is None:
        places = f", optionally a '.' and 1 to {decimals} digits" if decimals else ""
        raise InputError("decimal_syntax", f"must be ASCII digits (at most {int_digits}, no leading zero){places}, "
                                           "nothing else, as a JSON string, e.g. \"10\"")
    value = Decimal(text)
    assert value.is_finite() and value >= 0
    return value


def _decimal_validator(int_digits: int, decimals: int) -> Callable[[Any], Decimal]:
    def validate(value: Any) -> Decimal:
        if isinstance(value, Decimal):
            # From Python code, not from JSON: the same grammar, on the plain notation.
            if not value.is_finite():
                raise InputError("decimal_syntax", "must be a finite number")
            return parse_decimal(format(value, "f"), int_digits, decimals)
        return parse_decimal(value, int_digits, decimals)
    return validate


def DecimalText(int_digits: int, decimals: int, description: str | None = None,
                **bounds: Any) -> Any:
    """A ``Decimal`` field that accepts only the one written form (see the module docstring).
    ``bounds`` (``gt``, ``ge``, ``le``) belong here rather than on the field's ``Field()``
    when the field is optional: pydantic cannot put a field's bounds inside ``X | None``
    and would publish them as raw, unknown keywords."""
    schema: dict[str, Any] = {"type": "string", "pattern": decimal_pattern(int_digits, decimals),
                              "maxLength": int_digits + (1 + decimals if decimals else 0)}
    if description:
        schema["description"] = description
    validator = BeforeValidator(_as_pydantic(_decimal_validator(int_digits, decimals)))
    return Annotated[Decimal, Field(**bounds), validator, WithJsonSchema(schema)]


# --- instants -----------------------------------------------------------------

# RFC 3339 section 5.6 date-time, upper-case T and Z, at most microseconds (Python's
# precision: a seventh digit would be dropped silently, two strings one value).
INSTANT_CORE = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
                r"(Z|[+-][0-9]{2}:[0-9]{2})")
INSTANT_PATTERN = f"^{INSTANT_CORE}$"
_INSTANT_REGEX = re.compile(INSTANT_CORE)
INSTANT_MAX_LENGTH = 32  # 2026-05-01T12:00:00.123456+05:30
INSTANT_EXAMPLE = "2026-05-01T12:00:00Z"


def parse_instant(text: Any) -> datetime:
    """The instant ``text`` names, if it is RFC 3339 with an offset and in range; else ValueError."""
    if isinstance(text, datetime):
        moment = text  # from Python code: must still be aware and in range
    else:
        if not isinstance(text, str) or _INSTANT_REGEX.fullmatch(text) is None:
            raise InputError("instant_syntax", f"must be an RFC 3339 date-time with an offset, e.g. {INSTANT_EXAMPLE} "
                             "(epoch numbers and times without an offset are not accepted)")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InputError("instant_invalid", f"is not a real date and time (e.g. {INSTANT_EXAMPLE})") from None
    if (problem := instant_problem(moment)) is not None:
        raise InputError("instant_range", problem)
    return moment


Instant = Annotated[datetime, BeforeValidator(_as_pydantic(parse_instant)), WithJsonSchema(
    {"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN, "maxLength": INSTANT_MAX_LENGTH,
     "description": f"RFC 3339 with an offset, e.g. {INSTANT_EXAMPLE}; "
                    f"from {EARLIEST_INSTANT:%Y-%m-%d} to {LATEST_INSTANT:%Y-%m-%d}"})]


# --- dates --------------------------------------------------------------------

DATE_CORE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_DATE_REGEX = re.compile(DATE_CORE)
DATE_PATTERN = f"^{DATE_CORE}$"
DATE_MAX_LENGTH = 10


def parse_date(text: Any) -> date:
    """The calendar date ``text`` names if it is ``YYYY-MM-DD``; else ValueError."""
    if isinstance(text, date) and not isinstance(text, datetime):
        return text  # from Python code
    if not isinstance(text, str) or _DATE_REGEX.fullmatch(text) is None:
        raise InputError("date_syntax", "must be a date written YYYY-MM-DD, e.g. 2026-05-01")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError("date_invalid", "is not a real calendar date") from None


def today_utc() -> date:
    return datetime.now(timezone.utc).date()


def date_bounds(earliest: date, latest: Callable[[], date], description: str) -> AfterValidator:
    """Refuse a date outside ``[earliest, latest()]`` (``latest`` is called per value,
    so "not in the future" moves with the calendar)."""
    def check(value: date) -> date:
        last = latest()
        if not earliest <= value <= last:
            raise PydanticCustomError("date_range", f"must be from {earliest.isoformat()} to {last.isoformat()} ({description})")
        return value
    return AfterValidator(check)


def CalendarDate(description: str | None = None) -> Any:
    schema: dict[str, Any] = {"type": "string", "format": "date", "pattern": DATE_PATTERN,
                              "maxLength": DATE_MAX_LENGTH}
    if description:
        schema["description"] = description
    return Annotated[date, BeforeValidator(_as_pydantic(parse_date)), WithJsonSchema(schema)]


# The instants' window, as dates (a simulation's day range, a customer's join date).
EARLIEST_DATE = EARLIEST_INSTANT.date()
LATEST_DATE = (LATEST_INSTANT - timedelta(days=1)).date()

# A person born before 1900 is not a customer; nobody is born tomorrow. "Today" is
# today in the earliest time zone (UTC+14), so a birthday entered just after local
# midnight anywhere is accepted.
EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def latest_birth_date() -> date:
    return (datetime.now(timezone.utc) + timedelta(hours=14)).date()


# A membership may be recorded up to a year ahead (a pre-registered opening), not
# further; and none began before 1970 (no order of ours is older).
EARLIEST_JOIN_DATE = EARLIEST_DATE


def latest_join_date() -> date:
    return today_utc() + timedelta(days=366)


BirthDate = Annotated[CalendarDate(f"YYYY-MM-DD, from {EARLIEST_BIRTH_DATE.isoformat()} to today"),
                      date_bounds(EARLIEST_BIRTH_DATE, latest_birth_date, "not before 1900, not in the future")]
JoinDate = Annotated[CalendarDate(f"YYYY-MM-DD, from {EARLIEST_JOIN_DATE.isoformat()} to one year from today"),
                     date_bounds(EARLIEST_JOIN_DATE, latest_join_date, "at most a year ahead")]
WindowDate = Annotated[CalendarDate(f"YYYY-MM-DD, from {EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()}"),
                       date_bounds(EARLIEST_DATE, lambda: LATEST_DATE, "the instants' window")]
