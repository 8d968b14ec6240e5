"""The return window's arithmetic (shared/pending/window.py): local calendar days."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from shared.pending.window import matures_at


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def test_fourteen_local_days_across_the_autumn_change_keep_the_wall_time() -> None:
    # 10:00 in Paris on 20 October (UTC+2) + 14 days = 10:00 in Paris on 3 November (UTC+1).
    assert matures_at(utc("2026-10-20T10:00:00+02:00"), 14, "Europe/Paris") == utc("2026-11-03T10:00:00+01:00")


def test_a_window_in_auckland_counts_its_own_calendar_days() -> None:
    # 23:30 UTC on 1 March is 12:30 on 2 March in Auckland: 2 days later is 12:30 on 4 March there.
    assert matures_at(utc("2026-03-01T23:30:00+00:00"), 2, "Pacific/Auckland") == utc("2026-03-03T23:30:00+00:00")


def test_a_wall_time_in_the_spring_gap_lands_just_after_it() -> None:
    # 02:30 on 29 March 2026 does not exist in Paris (02:00 -> 03:00): zoneinfo reads it as 03:30 CEST.
    assert matures_at(utc("2026-03-28T02:30:00+01:00"), 1, "Europe/Paris") == utc("2026-03-29T03:30:00+02:00")


def test_out_of_range_windows_are_a_bug_not_an_input() -> None:
    with pytest.raises(AssertionError):
        matures_at(utc("2026-03-01T00:00:00+00:00"), 366, "UTC")


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(timezone.utc)),
       st.integers(min_value=1, max_value=365),
       st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Pacific/Auckland", "Asia/Kolkata"]))
def test_maturity_is_after_acceptance_by_the_window_give_or_take_a_dst_hour(accepted, days, zone) -> None:
    due = matures_at(accepted, days, zone)
    hours = (due - accepted).total_seconds() / 3600
    assert abs(hours - 24 * days) <= 1
