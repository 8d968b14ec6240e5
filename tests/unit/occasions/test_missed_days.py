"""Every local date of a tenant is run, even one no hourly fan-out saw: a day-long timer
outage, or a time-zone change that jumps the local date forward (found by an outside review:
those days' birthdays were never awarded that year). The fan-out catches up at most
``CATCH_UP_DAYS`` back from the last date it enqueued; a tenant it never saw starts today
(turning birthdays on does not pay last week's), and a zone moved west pays nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.app.customers import CustomerProfile
from shared.domain.tenants import TenantSettings
from shared.jobs import BY_NAME, run_job, work_items
from shared.occasions.service import OccasionSettings
from tests.conftest import make_tenant


def _hourly(platform, clock, hours: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(hours):
        run_job(BY_NAME["occasions"], platform)
        work_items(platform).run()
        work_items(platform).run()
        clock.advance(timedelta(hours=1))


def _at(clock, moment: datetime) -> None:  # type: ignore[no-untyped-def]
    clock.advance(moment - clock.now())


def _tenant(platform, tenant_id: str, zone: str) -> None:  # type: ignore[no-untyped-def]
    platform.tenants.save(TenantSettings(tenantId=tenant_id, name=tenant_id, currency="EUR", timeZone=zone))


def _born(platform, tenant_id: str, customer_id: str, month_day: str) -> None:  # type: ignore[no-untyped-def]
    platform.customers.register(tenant_id, CustomerProfile(customerId=customer_id, joinDate="2020-05-05",
                                                           birthDate=f"1990-{month_day}"))


def test_a_day_without_any_run_is_caught_up(platform, clock) -> None:  # type: ignore[no-untyped-def]
    make_tenant(platform, "acme")  # Europe/Paris
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=100))
    _born(platform, "acme", "b4", "12-04")
    _at(clock, datetime(2026, 12, 3, 0, 10, tzinfo=timezone.utc))
    _hourly(platform, clock, 20)  # 3 December
    _at(clock, datetime(2026, 12, 4, 23, 10, tzinfo=timezone.utc))  # no run at all on 4 December (Paris)
    _hourly(platform, clock, 48)
    assert platform.ledger.head("acme", "b4").balance == 100


def test_a_zone_change_that_skips_a_local_date_is_caught_up_and_west_pays_once(platform,
                                                                               clock) -> None:  # type: ignore
    _tenant(platform, "t", "Pacific/Honolulu")
    platform.occasions.save_settings("t", OccasionSettings(birthdayPoints=100))
    _born(platform, "t", "b4", "12-04")
    _born(platform, "t", "b5", "12-05")
    _at(clock, datetime(2026, 12, 4, 9, 10, tzinfo=timezone.utc))  # 3 Dec 23:10 in Honolulu
    _hourly(platform, clock, 1)
    _tenant(platform, "t", "Pacific/Kiritimati")  # now 5 Dec 00:10 there: 4 Dec never seen
    _hourly(platform, clock, 30)
    _tenant(platform, "t", "Pacific/Honolulu")  # back west: 5 Dec again
    _hourly(platform, clock, 30)
    assert platform.ledger.head("t", "b4").balance == 100
    assert platform.ledger.head("t", "b5").balance == 100


def test_a_tenant_the_fan_out_never_saw_starts_today(platform, clock) -> None:  # type: ignore[no-untyped-def]
    make_tenant(platform, "acme")
    _born(platform, "acme", "b1", "12-01")
    _born(platform, "acme", "b4", "12-04")
    _at(clock, datetime(2026, 12, 4, 8, 0, tzinfo=timezone.utc))
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=100))
    _hourly(platform, clock, 2)
    assert platform.ledger.head("acme", "b4").balance == 100
    assert platform.ledger.head("acme", "b1").balance == 0, "turning birthdays on does not pay last week's"
