"""A scheduled tier evaluation is a local date, evaluated once whatever the tenant's time
zone does: moved west after an evaluation, the same date comes round again as a later
instant and must not be evaluated twice (found by an outside review: a customer in grace was
downgraded by the second run, six hours after the first kept them); moved east, the next date
is evaluated at its own midnight."""

from __future__ import annotations

from datetime import datetime, timezone

from shared.domain.tenants import TenantSettings
from tests.conftest import drain
from tests.unit.tiers.conftest import bare_tenant, earn, program


def _at(clock, moment: datetime) -> None:  # type: ignore[no-untyped-def]
    clock.advance(moment - clock.now())


def _zone(platform, zone: str) -> None:  # type: ignore[no-untyped-def]
    platform.tenants.save(TenantSettings(tenantId="t1", name="t1", currency="EUR", timeZone=zone))


def test_a_date_evaluated_is_not_evaluated_again_after_the_zone_moves_west(platform, clock) -> None:  # type: ignore
    bare_tenant(platform, "t1")  # Europe/Paris
    platform.tiers.save_program("t1", program(windowMonths=1))
    earn(platform, "t1", "c1", "o1", 600)
    drain(platform)
    assert platform.customers.get("t1", "c1")["tier"] == "gold"
    _at(clock, datetime(2026, 11, 30, 23, 10, tzinfo=timezone.utc))  # 1 Dec 00:10 in Paris
    platform.tiers.run_due()
    _at(clock, datetime(2026, 12, 31, 23, 10, tzinfo=timezone.utc))  # 1 Jan 00:10 in Paris
    [first] = platform.tiers.run_due()
    assert first.in_grace == 1 and platform.customers.get("t1", "c1")["tier"] == "gold"
    _zone(platform, "America/New_York")
    _at(clock, datetime(2027, 1, 1, 5, 10, tzinfo=timezone.utc))  # 1 Jan 00:10 in New York
    assert platform.tiers.run_due() == [], "1 January was evaluated already"
    assert platform.customers.get("t1", "c1")["tier"] == "gold", "the grace holds until the next date"
    _at(clock, datetime(2027, 2, 1, 5, 10, tzinfo=timezone.utc))  # 1 Feb 00:10 in New York
    [second] = platform.tiers.run_due()
    assert second.downgraded == 1
