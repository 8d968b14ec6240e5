"""The expiry job after a tenant moves its time zone: each local day's cut-off is processed
once, whatever the move, so a lot is never left spendable past the cut-off of the zone the
tenant is in. (An outside review: the job marked a tenant done by its local date's text; after
a move west the new zone was on a date of the same text whose midnight is hours later, so the
run was skipped and an overdue lot survived a whole day while the expiries API said overdue.)"""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.conftest import auth
from tests.unit.api.test_rules_api import activate, save
from tests.unit.expiry.conftest import earn, move_to, policy_tenant


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def short_lived(client, platform, clock):  # type: ignore[no-untyped-def]
    """A Berlin tenant whose rule earns 50 points expiring a day after the order."""
    keys = policy_tenant(platform, "zz", "Europe/Berlin", None)
    save(client, keys.admin, 'rule "short" then earn 50 points expiring in 1 days')
    assert activate(client, keys.admin, 1).status_code == 200
    move_to(clock, at("2027-01-05T03:00:00+00:00"))
    earn(client, platform, clock, keys, "o1")  # expires 2027-01-06T03:00Z: 04:00 in Berlin, 22:00 on 01-05 in NY
    return keys


def test_a_move_west_gets_the_new_zones_cut_off_the_same_local_date(client, platform, clock, short_lived) -> None:  # type: ignore[no-untyped-def]
    move_to(clock, at("2027-01-05T23:15:00+00:00"))  # Berlin's run of 01-06: not due before its midnight
    assert platform.expiry.run().lots_expired == 0
    move_to(clock, at("2027-01-06T06:00:00+00:00"))  # 01:00 on 01-06 in New York
    moved = client.patch("/v1/tenant", json={"timeZone": "America/New_York"}, headers=auth(short_lived.admin))
    assert moved.status_code == 200, moved.text
    overdue = client.get("/v1/customers/c1/expiries", headers=auth(short_lived.merchant)).json()["items"]
    assert overdue and overdue[0]["overdue"] is True
    assert platform.expiry.run().lots_expired == 1  # New York's midnight of 01-06 is past the lot
    assert platform.ledger.head("zz", "c1").balance == 0
    assert platform.expiry.run().lots_expired == 0  # and done for that cut-off


def test_a_move_east_neither_repeats_nor_skips(client, platform, clock, short_lived) -> None:  # type: ignore[no-untyped-def]
    moved = client.patch("/v1/tenant", json={"timeZone": "America/New_York"}, headers=auth(short_lived.admin))
    assert moved.status_code == 200
    move_to(clock, at("2027-01-06T05:30:00+00:00"))  # New York's run of 01-06
    assert platform.expiry.run().lots_expired == 1
    move_to(clock, at("2027-01-06T06:00:00+00:00"))  # 07:00 on 01-06 in Berlin: an earlier cut-off
    assert client.patch("/v1/tenant", json={"timeZone": "Europe/Berlin"}, headers=auth(short_lived.admin)
                        ).status_code == 200
    report = platform.expiry.run()
    assert report.lots_expired == 0 and platform.ledger.head("zz", "c1").balance == 0
