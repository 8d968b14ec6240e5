"""Every mechanic that writes new points stamps them with the tenant's expiry policy, so the
expiry job takes them when the policy says: an order's earn, an adjustment, a birthday, both
sides of a referral. (An outside review found referral rewards written unstamped; birthday and
anniversary awards were too: such points never expired, and since customers spend their
soonest-expiring points first, they were kept for ever.) Imports have their own test
(tests/unit/imports/test_import_expiry.py); a voucher's refund gives back the purchase's own
lots (tests/unit/vouchers/test_voucher_refund_lots.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Callable

import pytest

from shared.app.corrections import AdjustmentRequest
from shared.app.customers import CustomerProfile
from shared.expiry.service import read_book
from shared.occasions.service import OccasionSettings
from tests.conftest import TenantKeys, auth, drain, order_body
from tests.unit.expiry.conftest import earn, move_to, policy_tenant

POLICY = {"kind": "rolling", "months": 1}


def _order(client, platform, clock, keys: TenantKeys) -> str:  # type: ignore[no-untyped-def]
    earn(client, platform, clock, keys, "o1")
    return "c1"


def _adjustment(client, platform, clock, keys: TenantKeys) -> str:  # type: ignore[no-untyped-def]
    platform.corrections.adjust("exp", "c1", AdjustmentRequest(points=100, reasonCode="goodwill", reason="sorry",
                                                               idempotencyKey="adj-1"), "admin")
    return "c1"


def _birthday(client, platform, clock, keys: TenantKeys) -> str:  # type: ignore[no-untyped-def]
    today = clock.now().date()
    platform.occasions.save_settings("exp", OccasionSettings(birthdayPoints=100))
    platform.customers.register("exp", CustomerProfile(customerId="bday", joinDate=date(2020, 1, 1),
                                                       birthDate=today.replace(year=1990)))
    assert platform.occasions.run_tenant("exp")["awarded"] == 1
    return "bday"


def _referral(role: str) -> Callable[..., str]:
    def make(client, platform, clock, keys: TenantKeys) -> str:  # type: ignore[no-untyped-def]
        assert client.put("/v1/referrals/programme", json={"referrerPoints": 500, "refereePoints": 250,
                                                           "minimumAmount": "20.00", "currency": "EUR"},
                          headers=auth(keys.admin)).status_code == 200
        code = client.post("/v1/customers/c1/referral-code", headers=auth(keys.merchant)).json()["code"]
        assert client.post("/v1/customers", json={"customerId": "bob", "joinDate": "2026-01-01",
                                                  "referralCode": code}, headers=auth(keys.merchant)
                           ).status_code == 201
        sent = client.post("/v1/orders", json=order_body("bob", "big", "40.00", timestamp=clock.now().isoformat()),
                           headers=auth(keys.merchant))
        assert sent.status_code == 202, sent.text
        drain(platform)
        return "c1" if role == "referrer" else "bob"
    return make


def _credits(platform, customer_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e for e in platform.ledger.entries("exp", customer_id, limit=100) if e["signedAmount"] > 0]


@pytest.mark.parametrize("mechanic", [_order, _adjustment, _birthday, _referral("referrer"), _referral("referee")],
                         ids=["order", "adjustment", "birthday", "referrer", "referee"])
def test_new_points_expire_by_the_tenant_policy_whatever_wrote_them(client, platform, clock, mechanic) -> None:  # type: ignore[no-untyped-def]
    keys = policy_tenant(platform, "exp", policy=POLICY)
    customer = mechanic(client, platform, clock, keys)
    drain(platform)  # the change feed puts the customer on the expiry calendar
    credits = _credits(platform, customer)
    assert credits, "the mechanic credited nothing"
    month = clock.now() + timedelta(days=31)
    for credit in credits:
        expires = (credit.get("attributes") or {}).get("expiresAt")
        assert expires is not None, f"{credit['entryType']} {credit.get('attributes')} never expires"
    lots = read_book(platform.store, "exp", customer).open_lots()
    assert lots and all(lot.expires_at is not None and lot.expires_at <= month for lot in lots)
    move_to(clock, month + timedelta(days=1))
    platform.expiry.run()
    assert platform.ledger.head("exp", customer).balance == 0
