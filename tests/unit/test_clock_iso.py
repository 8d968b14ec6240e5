"""``shared.clock.iso`` is one text, whichever way it is written: the fast path
(``isoformat``) gives exactly ``strftime``'s characters of the UTC instant, for any
instant and any offset. Stored times are compared as text: a difference would misorder them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clock import iso

offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@settings(max_examples=1000, deadline=None)
@given(moment=st.datetimes(min_value=datetime(2, 1, 2), max_value=datetime(9998, 12, 30)), zone=offsets)
def test_iso_is_strftime_of_the_utc_instant(moment: datetime, zone: timezone) -> None:
    aware = moment.replace(tzinfo=zone)
    assert iso(aware) == aware.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_iso_keeps_strftime_for_years_before_1000() -> None:
    moment = datetime(999, 5, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
    assert iso(moment) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert iso(datetime(2021, 1, 2, 3, 4, 5, tzinfo=timezone.utc)) == "2021-01-02T03:04:05.000000Z"
