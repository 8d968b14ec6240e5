"""Expiry policy arithmetic (shared/expiry/policy.py): pure, in the tenant's time zone."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from shared.expiry.policy import ExpiryPolicy, cutoff, last_valid_day

UTC = ZoneInfo("UTC")


@pytest.mark.parametrize("earned, months, last", [
    (date(2026, 3, 15), 12, date(2027, 3, 15)),
    (date(2026, 1, 31), 1, date(2026, 2, 28)),      # clamped to the month's end
    (date(2027, 11, 30), 3, date(2028, 2, 29)),     # leap year
    (date(2026, 12, 1), 120, date(2036, 12, 1)),
])
def test_rolling_months(earned, months, last) -> None:
    assert ExpiryPolicy(kind="rolling", months=months).last_valid_day(earned) == last


@pytest.mark.parametrize("earned, after, last", [
    (date(2026, 2, 10), 1, date(2026, 6, 30)),
    (date(2026, 2, 10), 0, date(2026, 3, 31)),
    (date(2026, 11, 1), 1, date(2027, 3, 31)),      # across the year
    (date(2026, 12, 31), 8, date(2028, 12, 31)),
])
def test_end_of_quarter(earned, after, last) -> None:
    assert ExpiryPolicy(kind="endOfQuarter", quartersAfter=after).last_valid_day(earned) == last


def test_end_of_quarter_defaults_to_the_quarter_after_earning() -> None:
    assert ExpiryPolicy(kind="endOfQuarter").last_valid_day(date(2026, 8, 1)) == date(2026, 12, 31)


def test_the_earning_day_is_local() -> None:
    # 23:30 UTC on 31 March is already 1 April (Q2) in Auckland.
    earned = datetime(2026, 3, 31, 23, 30, tzinfo=timezone.utc)
    policy = ExpiryPolicy(kind="endOfQuarter", quartersAfter=0)
    assert policy.expires_at(earned, UTC) == datetime(2026, 4, 1, tzinfo=timezone.utc)
    auckland = ZoneInfo("Pacific/Auckland")
    expires = policy.expires_at(earned, auckland)
    assert last_valid_day(expires, auckland) == date(2026, 6, 30)
    assert ExpiryPolicy(kind="never").expires_at(earned, auckland) is None


def test_cutoff_is_local_midnight() -> None:
    now = datetime(2026, 12, 31, 11, 30, tzinfo=timezone.utc)
    assert cutoff(now, ZoneInfo("Pacific/Auckland")) == datetime(2026, 12, 31, 11, 0, tzinfo=timezone.utc)
    assert cutoff(now, UTC) == datetime(2026, 12, 31, tzinfo=timezone.utc)


@pytest.mark.parametrize("bad", [{"kind": "rolling"}, {"kind": "rolling", "months": 0},
                                 {"kind": "endOfQuarter", "quartersAfter": 9}, {"kind": "never", "months": 1},
                                 {"kind": "weekly"}, {"kind": "rolling", "months": 2, "days": 1}])
def test_bad_policies_are_refused(bad) -> None:
    with pytest.raises(ValidationError):
        ExpiryPolicy.model_validate(bad)
