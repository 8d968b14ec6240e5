"""The review API and the policy API: decisions attributed and audited, a second
decision refused (409), tenants isolated, bad policies refused (422) with nothing
written, the redemption velocity check."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.ledger.entries import EntryDraft, EntryStatus, EntryType
from shared.ledger.service import Plan, TransactionRequest
from tests.conftest import auth, drain, order_body


@pytest.fixture
def held_review(client, platform, tenant, set_policy, send) -> dict:
    set_policy({"customer": {"pointsPerHour": 50}})
    assert send("o1")["status"] == "held"
    return client.get("/v1/reviews", headers=auth(tenant.admin)).json()["items"][0]


def test_a_decision_is_attributed_and_audited(client, platform, tenant, held_review) -> None:
    response = client.post(f"/v1/reviews/{held_review['reviewId']}/approve", json={"note": "checked by phone"},
                           headers=auth(tenant.admin))
    body = response.json()
    admin_key_id = tenant.admin.split("_")[1]
    assert body["decidedBy"] == {"keyId": admin_key_id, "role": "tenant-admin"} and body["note"] == "checked by phone"
    record = [r for r in platform.audit.records("acme") if r["action"] == "review.approved"]
    assert len(record) == 1 and record[0]["actor"]["keyId"] == admin_key_id
    assert record[0]["reason"] == "checked by phone" and record[0]["after"]["result"]["points"] == 100
    approving = platform.ledger.entries("acme", "c1", limit=1)[0]
    assert approving["attributes"]["decidedBy"] == admin_key_id
    assert approving["attributes"]["reviewId"] == held_review["reviewId"]
    assert client.get("/v1/reviews?status=approved", headers=auth(tenant.admin)).json()["items"][0]["status"] \
        == "approved"
    assert client.get("/v1/reviews", headers=auth(tenant.admin)).json()["items"] == []


def test_double_decision_is_409_and_writes_nothing(client, platform, tenant, held_review) -> None:
    url = f"/v1/reviews/{held_review['reviewId']}"
    assert client.post(url + "/approve", headers=auth(tenant.admin)).status_code == 200
    head, audits = platform.ledger.head("acme", "c1"), len(platform.audit.records("acme"))
    for action in ("approve", "reject"):
        again = client.post(f"{url}/{action}", headers=auth(tenant.admin))
        assert again.status_code == 409, again.text
        assert again.json()["status"] == 409 and again.json()["type"].endswith("/review-decided")
    assert platform.ledger.head("acme", "c1") == head
    assert len(platform.audit.records("acme")) == audits


def test_another_tenants_admin_can_neither_see_nor_decide(client, platform, tenant, other_tenant, held_review) -> None:
    url = f"/v1/reviews/{held_review['reviewId']}"
    assert client.get("/v1/reviews", headers=auth(other_tenant.admin)).json()["items"] == []
    assert client.get(url, headers=auth(other_tenant.admin)).status_code == 404
    assert client.post(url + "/approve", headers=auth(other_tenant.admin)).status_code == 404
    assert client.post(url + "/reject", headers=auth(other_tenant.admin)).status_code == 404
    assert platform.reviews.get("acme", held_review["reviewId"])["status"] == "open"
    assert platform.ledger.head("acme", "c1").pending == 100


def test_only_tenant_admins_review(client, tenant, held_review) -> None:
    for key in (tenant.merchant, tenant.analyst):
        assert client.get("/v1/reviews", headers=auth(key)).status_code == 403
        assert client.post(f"/v1/reviews/{held_review['reviewId']}/approve", headers=auth(key)).status_code == 403


def test_unknown_review_and_bad_note(client, tenant, held_review) -> None:
    assert client.get("/v1/reviews/rv-000000000000000000000000", headers=auth(tenant.admin)).status_code == 404
    assert client.get("/v1/reviews/not-a-review", headers=auth(tenant.admin)).status_code == 422
    bad = client.post(f"/v1/reviews/{held_review['reviewId']}/approve", json={"note": "x" * 2000},
                      headers=auth(tenant.admin))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "note"
    assert client.get("/v1/reviews?status=maybe", headers=auth(tenant.admin)).status_code == 422


@pytest.mark.parametrize("body, field", [
    ({"customer": {"pointsPerHour": 0}}, "customer.pointsPerHour"),
    ({"customer": {"pointsPerHour": -5}}, "customer.pointsPerHour"),
    ({"customer": {"pointsPerDay": 1.5}}, "customer.pointsPerDay"),
    ({"customer": {"pointsPerDay": "100"}}, "customer.pointsPerDay"),
    ({"customer": {"pointsPerHour": 500, "pointsPerDay": 100}}, "customer"),
    ({"tenant": {"pointsPerHour": 500, "pointsPerDay": 100}}, "tenant"),
    ({"anomaly": {"multiplier": 1}}, "anomaly.multiplier"),
    ({"anomaly": {"baselineDays": 3}}, "anomaly.baselineDays"),
    ({"anomaly": {"enabled": "yes"}}, "anomaly.enabled"),
    ({"customer": {"cardsPerDay": 3}}, "customer.cardsPerDay"),
])
def test_bad_policy_is_422_naming_the_field_and_nothing_changes(client, platform, tenant, body, field) -> None:
    audits = len(platform.audit.records("acme"))
    response = client.put("/v1/fraud/policy", json=body, headers=auth(tenant.admin))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]]
    assert client.get("/v1/fraud/policy", headers=auth(tenant.admin)).json() == platform.fraud.policies.get(
        "acme").view() == {"customer": {k: None for k in ("pointsPerHour", "pointsPerDay", "pointsPerMonth",
                                                          "redemptionsPerHour", "transfersPerHour",
                                                          "distinctCardsPerDay", "distinctDevicesPerDay")},
                           "tenant": {"pointsPerHour": None, "pointsPerDay": None},
                           "anomaly": {"enabled": True, "multiplier": 50, "baselineDays": 30, "floorPoints": 100000}}
    assert len(platform.audit.records("acme")) == audits


def test_policy_change_is_audited_and_per_tenant(client, platform, tenant, other_tenant, set_policy) -> None:
    saved = set_policy({"customer": {"pointsPerDay": 1000}})
    assert saved["customer"]["pointsPerDay"] == 1000
    record = platform.audit.records("acme")[-1]
    assert record["action"] == "fraud.policy.changed"
    assert record["before"]["customer"]["pointsPerDay"] is None and record["after"]["customer"]["pointsPerDay"] == 1000
    assert client.get("/v1/fraud/policy", headers=auth(other_tenant.admin)).json()["customer"]["pointsPerDay"] is None
    assert client.put("/v1/fraud/policy", json={}, headers=auth(tenant.merchant)).status_code == 403


def test_redemption_velocity_check(platform, tenant, clock, set_policy) -> None:
    controls = platform.fraud.controls
    assert controls.check_redemption("acme", "c1") == []  # no limit set
    set_policy({"customer": {"redemptionsPerHour": 2}})
    platform.ledger.append_one(TransactionRequest("acme", "c1", "seed", "f", lambda h: Plan(
        [EntryDraft(EntryType.ADJUST, 1000)], {})))
    for number, status in enumerate((EntryStatus.COMMITTED, EntryStatus.PENDING)):
        platform.ledger.append_one(TransactionRequest("acme", "c1", f"r{number}", "f", lambda h, s=status: Plan(
            [EntryDraft(EntryType.REDEEM, -10, s)], {})))
    reasons = controls.check_redemption("acme", "c1")
    assert [r["code"] for r in reasons] == ["redemption-velocity"] and reasons[0]["count"] == 3
    assert controls.check_redemption("acme", "c2") == []
    clock.advance(timedelta(minutes=61))
    assert controls.check_redemption("acme", "c1") == []


def test_held_reviews_survive_a_lost_submission(client, platform, tenant, set_policy) -> None:
    """The review comes from the change feed: replaying the feed re-submits idempotently."""
    set_policy({"customer": {"pointsPerHour": 50}})
    client.post("/v1/orders", json=order_body("c1", "o9"), headers=auth(tenant.merchant))
    drain(platform)
    record = platform.ledger.record("acme", "c1", "order-o9")
    platform.fraud.holds.project([record, record])
    assert len(platform.reviews.list("acme")) == 1
