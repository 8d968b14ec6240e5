"""The tenant's earn counters (shared.fraud.velocity.TenantCounters): the hour's and the
day's counter move together, under concurrent ingest instances and at any crash point."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.fraud.velocity import TenantCounters
from tests.conftest import Died, StoreThatDies, run_in_threads

NOON = datetime(2026, 11, 1, 12, 30, tzinfo=timezone.utc)


def test_concurrent_adds_count_every_point_once_in_the_hour_and_the_day(sqlite_store) -> None:
    counters = TenantCounters(sqlite_store)
    run_in_threads(lambda n: counters.add("acme", NOON, n), [(n,) for n in range(1, 21)], timeout=60)
    assert counters.totals("acme", NOON) == (210, 210)
    counters.add("acme", NOON + timedelta(hours=1), 5)  # the next hour: a new hour, the same day
    assert counters.totals("acme", NOON + timedelta(hours=1)) == (5, 215)


def test_a_crash_at_any_write_leaves_the_day_equal_to_its_hours(sqlite_store) -> None:
    counters = TenantCounters(sqlite_store)
    counters.add("acme", NOON, 7)
    for at in range(3):
        try:
            TenantCounters(StoreThatDies(sqlite_store, at)).add("acme", NOON, 10)  # type: ignore[arg-type]
            break
        except Died:
            hour, day = counters.totals("acme", NOON)
            assert hour == day == 7
    assert counters.totals("acme", NOON) == (17, 17)
