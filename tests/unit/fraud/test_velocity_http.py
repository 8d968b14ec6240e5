"""Velocity limits end to end over HTTP: an order over a limit is held (not rejected),
its status reads held with the reasons, the held earn waits in the review queue, and
approving it makes the points available; rejecting writes a VOID and they never do."""

from __future__ import annotations

from datetime import timedelta

from shared.ledger.entries import EntryStatus, EntryType
from tests.conftest import auth, drain, order_body


def _balance(client, tenant, customer="c1") -> dict:
    return client.get(f"/v1/customers/{customer}/balance", headers=auth(tenant.merchant)).json()


def test_over_the_daily_limit_is_held_then_approved(client, platform, tenant, set_policy, send) -> None:
    set_policy({"customer": {"pointsPerDay": 250}})
    assert send("o1")["status"] == "credited"       # 100 points
    assert send("o2")["status"] == "credited"       # 200 in the day
    held = send("o3")                               # 300 > 250
    assert held["status"] == "held" and held["points"] == 100
    assert held["reason"]["code"] == "fraud-hold"
    assert [r["code"] for r in held["reason"]["reasons"]] == ["velocity-customer-day"]
    balance = _balance(client, tenant)
    assert (balance["available"], balance["pending"]) == (200, 100)

    queue = client.get("/v1/reviews", headers=auth(tenant.admin)).json()["items"]
    assert len(queue) == 1 and queue[0]["kind"] == "earn" and queue[0]["details"]["orderId"] == "o3"
    inspected = client.get(f"/v1/reviews/{queue[0]['reviewId']}", headers=auth(tenant.admin)).json()
    assert inspected["reasons"][0]["limit"] == 250
    assert [e["entryType"] for e in inspected["customer"]["recentEntries"]] == ["EARN", "EARN", "EARN"]

    decided = client.post(f"/v1/reviews/{queue[0]['reviewId']}/approve", json={"note": "regular customer"},
                          headers=auth(tenant.admin))
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    drain(platform)
    balance = _balance(client, tenant)
    assert (balance["available"], balance["pending"]) == (300, 0)
    status = client.get("/v1/orders/o3", headers=auth(tenant.merchant)).json()
    assert status["status"] == "credited" and status["reason"]["code"] == "review-approved"
    # The hold itself is still in the ledger, settled by a new COMMITTED entry.
    entries = platform.ledger.entries_for_order("acme", "c1", "o3")
    assert [(e["entryType"], e["status"]) for e in entries] == [("EARN", "PENDING"), ("EARN", "COMMITTED")]
    assert entries[1]["settlesEntryId"] == entries[0]["id"]


def test_rejected_hold_is_voided_and_never_available(client, platform, tenant, set_policy, send) -> None:
    set_policy({"customer": {"pointsPerHour": 50}})
    assert send("o1")["status"] == "held"
    review = client.get("/v1/reviews", headers=auth(tenant.admin)).json()["items"][0]
    rejected = client.post(f"/v1/reviews/{review['reviewId']}/reject", json={"note": "stolen card"},
                           headers=auth(tenant.admin))
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    drain(platform)
    balance = _balance(client, tenant)
    assert (balance["available"], balance["pending"]) == (0, 0)
    entries = platform.ledger.entries_for_order("acme", "c1", "o1")
    assert [(e["entryType"], e["status"], e["signedAmount"]) for e in entries] == [
        (EntryType.EARN.value, EntryStatus.PENDING.value, 100), (EntryType.VOID.value, "COMMITTED", 0)]
    assert client.get("/v1/orders/o1", headers=auth(tenant.merchant)).json()["status"] == "rejected"
    # A later approval is refused: the decision is final, and nothing more is written.
    again = client.post(f"/v1/reviews/{review['reviewId']}/approve", headers=auth(tenant.admin))
    assert again.status_code == 409 and again.json()["type"].endswith("/review-decided")
    assert platform.ledger.head("acme", "c1").balance == 0


def test_the_window_rolls(client, platform, tenant, clock, set_policy, send) -> None:
    set_policy({"customer": {"pointsPerHour": 150}})
    assert send("o1")["status"] == "credited"
    assert send("o2")["status"] == "held"
    clock.advance(timedelta(minutes=61))
    assert send("o3")["status"] == "credited"


def test_orders_of_one_batch_count_against_each_other(client, platform, tenant, set_policy) -> None:
    """Several orders of one customer in one ingest call are planned on each other's head."""
    set_policy({"customer": {"pointsPerDay": 250}})
    orders = [order_body("c1", f"b{i}") for i in range(4)]
    assert client.post("/v1/orders/batch", json={"orders": orders}, headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    statuses = [client.get(f"/v1/orders/b{i}", headers=auth(tenant.merchant)).json()["status"] for i in range(4)]
    assert statuses == ["credited", "credited", "held", "held"]


def test_distinct_cards_per_day(client, platform, tenant, clock, set_policy, send) -> None:
    set_policy({"customer": {"distinctCardsPerDay": 2}})
    assert send("o1", cardFingerprint="card-a")["status"] == "credited"
    assert send("o2", cardFingerprint="card-b")["status"] == "credited"
    assert send("o3", cardFingerprint="card-a")["status"] == "credited"
    held = send("o4", cardFingerprint="card-c")
    assert held["status"] == "held" and held["reason"]["reasons"][0]["code"] == "distinct-cards"
    # Over the limit, the customer's orders are held until the window has passed.
    assert send("o5")["status"] == "held"
    clock.advance(timedelta(hours=24, minutes=1))
    assert send("o6", cardFingerprint="card-d")["status"] == "credited"


def test_tenant_wide_limit(client, platform, tenant, set_policy, send) -> None:
    set_policy({"tenant": {"pointsPerHour": 250}})
    assert send("o1", customer="c1")["status"] == "credited"
    assert send("o2", customer="c2")["status"] == "credited"
    held = send("o3", customer="c3")
    assert held["status"] == "held" and held["reason"]["reasons"][0]["code"] == "velocity-tenant-hour"


def test_a_redelivered_order_changes_nothing(client, platform, tenant, set_policy, send) -> None:
    set_policy({"customer": {"pointsPerHour": 50}})
    send("o1")
    client.post("/v1/orders", json=order_body("c1", "o1"),
                headers=auth(tenant.merchant))
    drain(platform)
    assert len(platform.reviews.list("acme")) == 1
    assert platform.ledger.head("acme", "c1").pending == 100
