"""Upcoming expiries over HTTP, and the tenant's expiry policy as a setting."""

from __future__ import annotations

from datetime import timedelta

from shared.store.layout import AUDIT
from shared.store.port import Query
from tests.conftest import auth
from tests.unit.expiry.conftest import earn, policy_tenant

QUARTER = {"kind": "endOfQuarter", "quartersAfter": 0}


def test_upcoming_expiries_by_last_valid_day_soonest_first(client, platform, clock) -> None:
    keys = policy_tenant(platform, "up", "Europe/Paris", {"kind": "rolling", "months": 2})
    earn(client, platform, clock, keys, "o1", "10.00")      # 100, valid through 2027-01-01 (Paris)
    earn(client, platform, clock, keys, "o2", "2.00")       # 20, same day: one item of two lots
    clock.advance(timedelta(days=5))
    earn(client, platform, clock, keys, "o3", "3.00")       # 30, through 2027-01-06
    response = client.get("/v1/customers/c1/expiries", headers=auth(keys.analyst))
    assert response.status_code == 200
    body = response.json()
    assert body["timeZone"] == "Europe/Paris" and body["available"] == 150 and body["neverExpiring"] == 0
    assert [(i["expiresOn"], i["points"], i["lots"], i["overdue"]) for i in body["items"]] == [
        ("2027-01-01", 120, 2, False), ("2027-01-06", 30, 1, False)]
    assert body["items"][0]["expiresAt"] == "2027-01-01T23:00:00.000000Z"  # local midnight, 2 Jan, in UTC
    limited = client.get("/v1/customers/c1/expiries?limit=1", headers=auth(keys.merchant)).json()
    assert len(limited["items"]) == 1 and limited["more"] is True


def test_unknown_customer_is_404_and_other_tenants_customers_are_unknown(client, platform, clock) -> None:
    keys = policy_tenant(platform, "t1", "UTC", QUARTER)
    policy_tenant(platform, "t2", "UTC", QUARTER, customers=("only-t2",))
    for customer in ("nobody", "only-t2"):
        response = client.get(f"/v1/customers/{customer}/expiries", headers=auth(keys.analyst))
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/customers/c1/expiries?limit=0", headers=auth(keys.analyst)).status_code == 422
    assert client.get("/v1/customers/c1/expiries").status_code == 401


def test_the_expiry_policy_is_a_validated_audited_setting(client, platform, clock) -> None:
    keys = policy_tenant(platform, "pol", "UTC", None)
    bad = [{"kind": "rolling"}, {"kind": "rolling", "months": 0}, {"kind": "rolling", "months": 121},
           {"kind": "endOfQuarter", "months": 3}, {"kind": "never", "quartersAfter": 1}, {"kind": "yearly"},
           {"kind": "rolling", "months": 12, "extra": 1}, "12 months"]
    for policy in bad:
        response = client.patch("/v1/tenant", json={"expiryPolicy": policy}, headers=auth(keys.admin))
        assert response.status_code == 422, policy
        assert any("expiryPolicy" in str(e["field"]) for e in response.json()["errors"]), response.json()
        assert platform.tenants.get("pol").expiry_policy is None
    assert client.patch("/v1/tenant", json={"expiryPolicy": QUARTER}, headers=auth(keys.merchant)).status_code == 403
    ok = client.patch("/v1/tenant", json={"expiryPolicy": {"kind": "rolling", "months": 12}},
                      headers=auth(keys.admin))
    assert ok.status_code == 200 and ok.json()["expiryPolicy"]["months"] == 12
    records = platform.store.query(AUDIT, Query(pk="pol", limit=100))
    assert any(r.get("action") == "tenant.settings.changed" and "expiryPolicy" in (r.get("after") or {})
               for r in records)
    earn(client, platform, clock, keys, "o1")
    assert client.get("/v1/customers/c1/expiries", headers=auth(keys.analyst)).json()["items"][0]["expiresOn"] \
        == "2027-11-01"


def test_a_positive_adjustment_is_a_lot_with_the_policy_expiry(client, platform, clock) -> None:
    keys = policy_tenant(platform, "adj", "UTC", QUARTER)
    response = client.post("/v1/customers/c1/adjustments", json={
        "points": 25, "reasonCode": "goodwill", "reason": "late delivery", "idempotencyKey": "adj-1"},
        headers=auth(keys.admin))
    assert response.status_code == 201, response.text
    (lot,) = platform.expiry.book("adj", "c1").lots.values()
    assert lot.entry_type == "ADJUST" and lot.expires_at.isoformat() == "2027-01-01T00:00:00+00:00"
