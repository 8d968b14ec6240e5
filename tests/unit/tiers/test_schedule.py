"""Windows and evaluation dates in the tenant's time zone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.tiers.schedule import last_evaluation, next_evaluation, window_start

from .conftest import program

PARIS = ZoneInfo("Europe/Paris")
UTC = timezone.utc


def test_window_is_calendar_months_back_in_local_time_with_the_day_clamped() -> None:
    end = datetime(2026, 3, 31, 10, 0, tzinfo=UTC)  # 12:00 in Paris (summer time since 29 March)
    assert window_start(end, 1, PARIS) == datetime(2026, 2, 28, 11, 0, tzinfo=UTC)  # 12:00 winter time
    assert window_start(end, 12, PARIS) == datetime(2025, 3, 31, 10, 0, tzinfo=UTC)


def test_monthly_evaluation_is_local_midnight_of_the_day() -> None:
    monthly = program(evaluation={"frequency": "monthly", "dayOfMonth": 1})
    # 1 July 00:00 in Paris is 30 June 22:00 UTC.
    assert last_evaluation(monthly, datetime(2026, 6, 30, 22, 30, tzinfo=UTC), PARIS) == \
        datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
    assert last_evaluation(monthly, datetime(2026, 6, 30, 21, 59, tzinfo=UTC), PARIS) == \
        datetime(2026, 5, 31, 22, 0, tzinfo=UTC)
    assert next_evaluation(monthly, datetime(2026, 6, 30, 22, 0, tzinfo=UTC), PARIS) == \
        datetime(2026, 7, 31, 22, 0, tzinfo=UTC)


def test_yearly_evaluation() -> None:
    yearly = program(evaluation={"frequency": "yearly", "month": 4, "day": 1})
    assert last_evaluation(yearly, datetime(2026, 3, 1, tzinfo=UTC), PARIS) == datetime(2025, 3, 31, 22, tzinfo=UTC)
    assert next_evaluation(yearly, datetime(2026, 3, 1, tzinfo=UTC), PARIS) == datetime(2026, 3, 31, 22, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(minutes=st.integers(0, 3 * 366 * 24 * 60), day=st.integers(1, 28),
       zone=st.sampled_from(("Europe/Paris", "America/New_York", "Pacific/Auckland", "UTC")))
def test_last_is_at_or_before_now_and_next_after_and_nothing_between(minutes, day, zone) -> None:
    tz = ZoneInfo(zone)
    now = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    monthly = program(evaluation={"frequency": "monthly", "dayOfMonth": day})
    last, following = last_evaluation(monthly, now, tz), next_evaluation(monthly, now, tz)
    assert last <= now < following
    assert last.astimezone(tz).day == day and last.astimezone(tz).hour == 0
    assert following.astimezone(tz).day == day
    assert 27 <= (following - last).days <= 31
