"""The one written form of decimals, instants and dates (shared.domain.inputs, issue 12).

Each parser is checked against an independent oracle on generated text: what it
accepts is exactly the grammar, and an accepted text has exactly one value (the
oracle's), which survives a write and a re-read unchanged."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.domain.inputs import (EARLIEST_BIRTH_DATE, BirthDate, DecimalText, Instant, JoinDate, decimal_core,
                                  latest_birth_date, latest_join_date, parse_date, parse_decimal, parse_instant)

# Characters that make plausible near-misses: other digits, separators, signs, exponents, spaces.
NEAR = "0123456789.,-+eE_ \t\n\u00a0\u0661\u0660\uff11\u0966:TZz"
near_text = st.text(alphabet=st.sampled_from(NEAR), max_size=24)
any_text = st.one_of(near_text, st.text(max_size=16))


def _decimal_oracle(text: str, int_digits: int, decimals: int) -> Decimal | None:
    """Independent of the parser: walk the characters."""
    whole, dot, fraction = text.partition(".")
    ascii_digits = set("0123456789")
    if not whole or len(whole) > int_digits or not set(whole) <= ascii_digits:
        return None
    if len(whole) > 1 and whole[0] == "0":
        return None  # no leading zero: one spelling per value
    if dot and (not fraction or len(fraction) > decimals or not set(fraction) <= ascii_digits):
        return None
    value = Decimal(int(whole))
    if fraction:
        value += Decimal(int(fraction)) / Decimal(10) ** len(fraction)
    return value


@settings(max_examples=300, deadline=None)
@given(st.one_of(near_text, st.from_regex(decimal_core(8, 3), fullmatch=True)),
       st.sampled_from([(8, 3), (4, 4), (1, 4), (13, 3), (7, 6), (3, 0)]))
def test_a_decimal_is_accepted_exactly_when_it_is_plain_ascii_digits(text: str, shape: tuple[int, int]) -> None:
    expected = _decimal_oracle(text, *shape)
    try:
        value = parse_decimal(text, *shape)
    except ValueError:
        assert expected is None, f"{text!r} refused"
        return
    assert expected is not None, f"{text!r} accepted as {value!r}"
    assert value == expected
    # One value: its plain notation reads back as the same value, the same way.
    again = parse_decimal(format(value, "f"), *shape)
    assert again == value and format(again, "f") == format(value, "f") == text


@pytest.mark.parametrize("text", [" 10 ", "10 ", "1_000", "\u0661\u0660", "\uff11\uff10", "1e3", "1E+3", "+10",
                                  "-10", "10.", ".5", "10.0001", "010", "00.5", "1,5", "10\n", "", "NaN", "Infinity", "0x10",
                                  "123456789"])
def test_the_reviewed_and_other_generous_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text, 8, 3)


class _Amount(BaseModel):
    amount: DecimalText(8, 3)  # type: ignore[valid-type]


@pytest.mark.parametrize("value", [10, 10.5, True, None, [], {"amount": "1"}])
def test_json_numbers_and_other_types_are_refused_for_decimals(value) -> None:
    with pytest.raises(ValidationError) as caught:
        _Amount.model_validate({"amount": value})
    assert caught.value.errors()[0]["loc"] == ("amount",)


def test_python_decimals_meet_the_same_grammar() -> None:
    assert _Amount(amount=Decimal("1E+2")).amount == 100
    for bad in (Decimal("-1"), Decimal("NaN"), Decimal("Infinity"), Decimal("0.0001")):
        with pytest.raises(ValidationError):
            _Amount(amount=bad)


# --- instants -------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(8999, 12, 30),
                        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30)),
                                                   timezone(timedelta(hours=-11))]))


def _rfc3339(moment: datetime, precision: int) -> str:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if precision:
        text += "." + f"{moment.microsecond:06d}"[:precision]
    offset = moment.strftime("%z")
    return text + ("Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}")


@settings(max_examples=200, deadline=None)
@given(instants, st.sampled_from([0, 3, 6]))
def test_an_rfc3339_instant_with_an_offset_reads_as_exactly_that_instant(moment: datetime, precision: int) -> None:
    text = _rfc3339(moment, precision)
    parsed = parse_instant(text)
    truncated = moment.replace(microsecond=int(f"{moment.microsecond:06d}"[:precision].ljust(6, "0")))
    assert parsed == truncated and parsed.utcoffset() == moment.utcoffset()


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_anything_else_is_refused_as_an_instant(text: str) -> None:
    looks_right = re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)", text, re.ASCII)
    if looks_right:
        return  # covered above
    with pytest.raises(ValueError):
        parse_instant(text)


@pytest.mark.parametrize("text", ["1700000000", "1700000000.5", "2026-11-01T12:00:00", "2026-11-01 12:00:00Z",
                                  "2026-11-01T12:00Z", "2026-11-01T12:00:00.1234567Z", "2026-11-01T12:00:00+0100",
                                  "2026-11-01t12:00:00z", "2026-02-30T00:00:00Z", "2026-11-01T24:00:00Z",
                                  "2026-11-01T12:00:60Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
                                  "1969-12-31T23:59:59Z", "\u0662\u0660\u0662\u0666-11-01T12:00:00Z",
                                  "2026-11-01T12:00:00Z\n", " 2026-11-01T12:00:00Z"])
def test_epoch_naive_and_impossible_instants_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_instant(text)


class _At(BaseModel):
    at: Instant


@pytest.mark.parametrize("value", [1700000000, 1700000000.0, datetime(2026, 1, 1)])
def test_epoch_numbers_and_naive_datetimes_are_refused(value) -> None:
    with pytest.raises(ValidationError):
        _At(at=value)


# --- dates ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.one_of(any_text, st.dates().map(date.isoformat)))
def test_a_date_is_yyyy_mm_dd_and_a_real_day(text: str) -> None:
    try:
        expected = date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d\d-\d\d", text, re.ASCII) else None
    except ValueError:
        expected = None
    try:
        value = parse_date(text)
    except ValueError:
        assert expected is None
        return
    assert value == expected and value.isoformat() == text


class _Person(BaseModel):
    born: BirthDate
    joined: JoinDate


@pytest.mark.parametrize("born, joined, bad", [
    ("2999-01-01", "2025-01-01", "born"),
    ("1899-12-31", "2025-01-01", "born"),
    ("1990-01-01", "9999-12-31", "joined"),
    ("1990-01-01", "1969-12-31", "joined"),
    ("1990-01-01", "20250101", "joined"),
    ("1990-01-01", 1700000000, "joined"),
])
def test_birth_and_join_dates_are_plausible(born, joined, bad) -> None:
    with pytest.raises(ValidationError) as caught:
        _Person.model_validate({"born": born, "joined": joined})
    assert [e["loc"] for e in caught.value.errors()] == [(bad,)]


def test_the_date_bounds_are_inclusive() -> None:
    person = _Person.model_validate({"born": EARLIEST_BIRTH_DATE.isoformat(), "joined": latest_join_date().isoformat()})
    assert person.born == EARLIEST_BIRTH_DATE
    assert _Person.model_validate({"born": latest_birth_date().isoformat(), "joined": "1970-01-01"})
    with pytest.raises(ValidationError):
        _Person.model_validate({"born": (latest_birth_date() + timedelta(days=1)).isoformat(), "joined": "2025-01-01"})
