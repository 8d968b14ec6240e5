"""Redemptions over the HTTP API: direct, two-phase, replays, timeouts, review,
and every bad input refused with a clear 4xx and nothing written."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from shared.jobs import JOBS
from tests.conftest import auth
from tests.unit.spend.conftest import fund, ledger_invariants

REDEEM = "/v1/customers/{}/redemptions"


def _snapshot(platform) -> list:
    db = sqlite3.connect(platform.store.path)
    rows = db.execute("SELECT container, pk, id, etag FROM docs WHERE container != 'audit' "
                      "ORDER BY container, pk, id").fetchall()
    db.close()
    return rows


def _reward(client, tenant, **fields) -> dict:
    body = {"rewardId": "mug", "name": "A mug", "pointsCost": 300, **fields}
    response = client.post("/v1/rewards", json=body, headers=auth(tenant.admin))
    assert response.status_code == 201, response.text
    return response.json()


def test_direct_redemption_is_one_committed_entry(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    response = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "points": 400},
                           headers=auth(tenant.merchant))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "completed" and body["available"] == 600 and body["redemptionId"].startswith("rd-")
    entries = ledger_invariants(platform, "acme", "c1")
    assert [(e["entryType"], e["status"], e["signedAmount"]) for e in entries] == [
        ("ADJUST", "COMMITTED", 1000), ("REDEEM", "COMMITTED", -400)]
    assert entries[-1]["attributes"]["redemptionId"] == body["redemptionId"]
    replay = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "points": 400},
                         headers=auth(tenant.merchant))
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert replay.json()["redemptionId"] == body["redemptionId"] and replay.json()["available"] == 600
    assert len(platform.ledger.entries("acme", "c1")) == 2
    reused = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "points": 1},
                         headers=auth(tenant.merchant))
    assert reused.status_code == 409 and "different request" in reused.json()["detail"]


def test_reserve_then_confirm_and_double_confirm_replays(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    reserved = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "points": 700, "mode": "reserve"},
                           headers=auth(tenant.merchant)).json()
    assert reserved["status"] == "reserved" and reserved["available"] == 300 and reserved["expiresAt"]
    head = platform.ledger.head("acme", "c1")
    assert head.balance == 300 and head.reserved == 700
    # The reserved points are not spendable by anyone else.
    other = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r2", "points": 301},
                        headers=auth(tenant.merchant))
    assert other.status_code == 422 and other.json()["available"] == 300
    url = f"{REDEEM.format('c1')}/{reserved['redemptionId']}"
    first = client.post(url + "/confirm", headers=auth(tenant.merchant))
    assert first.status_code == 201 and first.json()["status"] == "confirmed"
    again = client.post(url + "/confirm", headers=auth(tenant.merchant))
    assert again.status_code == 200 and again.json()["status"] == "confirmed" and again.json()["duplicate"]
    cancel = client.post(url + "/cancel", headers=auth(tenant.merchant))
    assert cancel.status_code == 409 and cancel.json()["state"] == "confirmed"
    assert client.get(url, headers=auth(tenant.analyst)).json()["status"] == "confirmed"
    entries = ledger_invariants(platform, "acme", "c1")
    assert [(e["entryType"], e["status"], e["signedAmount"]) for e in entries[1:]] == [
        ("REDEEM", "PENDING", -700), ("REDEEM", "COMMITTED", 0)]
    assert entries[2]["settlesEntryId"] == entries[1]["id"]
    head = platform.ledger.head("acme", "c1")
    assert head.balance == 300 and head.reserved == 0


def test_cancel_gives_points_back_and_confirm_after_cancel_is_409(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 500)
    rid = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "points": 500, "mode": "reserve"},
                      headers=auth(tenant.merchant)).json()["redemptionId"]
    url = f"{REDEEM.format('c1')}/{rid}"
    cancelled = client.post(url + "/cancel", headers=auth(tenant.merchant))
    assert cancelled.status_code == 201 and cancelled.json() | {"available": 500} == cancelled.json()
    before = _snapshot(platform)
    late = client.post(url + "/confirm", headers=auth(tenant.merchant))
    assert late.status_code == 409 and late.json()["type"].endswith("reservation-settled")
    assert late.json()["state"] == "cancelled" and _snapshot(platform) == before
    assert [e["entryType"] for e in ledger_invariants(platform, "acme", "c1")] == ["ADJUST", "REDEEM", "RELEASE"]


def test_a_reservation_is_released_by_the_job_at_the_very_instant_it_expires(client, platform, tenant,
                                                                            clock) -> None:
    # Found by the state machine: at expiresAt a confirm is refused (expired), so the job must release it then,
    # not one run later.
    client.put("/v1/spend/policy", json={"reservationTtlSeconds": 120}, headers=auth(tenant.admin))
    fund(platform, "acme", "c1", 500)
    rid = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "points": 200, "mode": "reserve"},
                      headers=auth(tenant.merchant)).json()["redemptionId"]
    clock.advance(timedelta(seconds=120))
    late = client.post(f"{REDEEM.format('c1')}/{rid}/confirm", headers=auth(tenant.merchant))
    assert late.status_code == 409 and late.json()["type"].endswith("reservation-expired")
    job = next(j for j in JOBS if j.name == "reservations")
    assert job.run(platform)["released"] == 1
    assert platform.ledger.head("acme", "c1").balance == 500


def test_an_unconfirmed_reservation_expires_and_the_job_releases_it_once(client, platform, tenant, clock) -> None:
    client.put("/v1/spend/policy", json={"reservationTtlSeconds": 120}, headers=auth(tenant.admin))
    fund(platform, "acme", "c1", 500)
    fund(platform, "acme", "c2", 500)
    rid = client.post(REDEEM.format("c1"), json={"idempotencyKey": "r1", "points": 200, "mode": "reserve"},
                      headers=auth(tenant.merchant)).json()["redemptionId"]
    kept = client.post(REDEEM.format("c2"), json={"idempotencyKey": "r1", "points": 200, "mode": "reserve"},
                       headers=auth(tenant.merchant)).json()["redemptionId"]
    job = next(j for j in JOBS if j.name == "reservations")
    assert job.run(platform)["released"] == 0
    clock.advance(timedelta(seconds=60))
    client.post(f"{REDEEM.format('c2')}/{kept}/confirm", headers=auth(tenant.merchant))
    clock.advance(timedelta(seconds=61))
    url = f"{REDEEM.format('c1')}/{rid}"
    assert client.get(url, headers=auth(tenant.merchant)).json()["status"] == "expired"
    before = _snapshot(platform)
    late = client.post(url + "/confirm", headers=auth(tenant.merchant))
    assert late.status_code == 409 and late.json()["type"].endswith("reservation-expired")
    assert _snapshot(platform) == before
    assert job.run(platform) == {"scanned": 2, "released": 1}
    assert job.run(platform)["released"] == 0  # twice: same ledger
    assert platform.ledger.head("acme", "c1").balance == 500
    assert platform.ledger.head("acme", "c2").balance == 300
    assert [e["entryType"] for e in ledger_invariants(platform, "acme", "c1")] == ["ADJUST", "REDEEM", "RELEASE"]
    view = client.get(url, headers=auth(tenant.merchant)).json()
    assert view["status"] == "expired" and view["pointsReleased"] is True


def test_rewards_stock_limits_and_validity(client, platform, tenant, clock) -> None:
    _reward(client, tenant, stock=2, perCustomerLimit=1)
    for customer in ("c1", "c2", "c3"):
        fund(platform, "acme", customer, 1000)
    ok = client.post(REDEEM.format("c1"), json={"idempotencyKey": "k", "rewardId": "mug"},
                     headers=auth(tenant.merchant))
    assert ok.status_code == 201 and ok.json()["points"] == 300 and ok.json()["rewardId"] == "mug"
    before = _snapshot(platform)
    limited = client.post(REDEEM.format("c1"), json={"idempotencyKey": "k2", "rewardId": "mug"},
                          headers=auth(tenant.merchant))
    assert limited.status_code == 409 and limited.json()["type"].endswith("redemption-limit-reached")
    assert _snapshot(platform) == before  # and the stock unit it took was given back
    reserved = client.post(REDEEM.format("c2"), json={"idempotencyKey": "k", "rewardId": "mug", "mode": "reserve"},
                           headers=auth(tenant.merchant)).json()
    assert client.get("/v1/rewards/mug", headers=auth(tenant.analyst)).json()["remaining"] == 0
    before = _snapshot(platform)
    sold_out = client.post(REDEEM.format("c3"), json={"idempotencyKey": "k", "rewardId": "mug"},
                           headers=auth(tenant.merchant))
    assert sold_out.status_code == 409 and sold_out.json()["type"].endswith("out-of-stock")
    assert _snapshot(platform) == before
    client.post(f"{REDEEM.format('c2')}/{reserved['redemptionId']}/cancel", headers=auth(tenant.merchant))
    assert client.get("/v1/rewards/mug", headers=auth(tenant.analyst)).json()["remaining"] == 1
    assert client.post(REDEEM.format("c3"), json={"idempotencyKey": "k", "rewardId": "mug"},
                       headers=auth(tenant.merchant)).status_code == 201
    # Validity window.
    until = (clock.now() + timedelta(days=1)).isoformat()
    _reward(client, tenant, rewardId="xmas", validUntil=until)
    clock.advance(timedelta(days=2))
    late = client.post(REDEEM.format("c2"), json={"idempotencyKey": "x", "rewardId": "xmas"},
                       headers=auth(tenant.merchant))
    assert late.status_code == 409 and late.json()["type"].endswith("reward-not-available")
    unknown = client.post(REDEEM.format("c2"), json={"idempotencyKey": "u", "rewardId": "nope"},
                          headers=auth(tenant.merchant))
    assert unknown.status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"idempotencyKey": "b", "points": -5}, "points"),
    ({"idempotencyKey": "b", "points": 0}, "points"),
    ({"idempotencyKey": "b", "points": 2.5}, "points"),
    ({"idempotencyKey": "b", "points": 10.0}, "points"),
    ({"idempotencyKey": "b", "points": "10"}, "points"),
    ({"idempotencyKey": "b"}, "body"),
    ({"idempotencyKey": "b", "points": 5, "rewardId": "mug"}, "body"),
    ({"points": 5}, "idempotencyKey"),
    ({"idempotencyKey": "b", "points": 5, "mode": "later"}, "mode"),
    ({"idempotencyKey": "b", "points": 5, "extra": 1}, "extra"),
])
def test_bad_redemptions_are_422_naming_the_field_and_write_nothing(client, platform, tenant, body, field) -> None:
    fund(platform, "acme", "c1", 100)
    before = _snapshot(platform)
    response = client.post(REDEEM.format("c1"), json=body, headers=auth(tenant.merchant))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    assert _snapshot(platform) == before


def test_more_than_available_is_422_with_the_balance_and_nothing_written(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 100)
    before = _snapshot(platform)
    response = client.post(REDEEM.format("c1"), json={"idempotencyKey": "b", "points": 101},
                           headers=auth(tenant.merchant))
    assert response.status_code == 422 and response.json()["available"] == 100
    assert response.json()["requested"] == 101 and _snapshot(platform) == before
    assert client.post(REDEEM.format("nobody"), json={"idempotencyKey": "b", "points": 1},
                       headers=auth(tenant.merchant)).status_code == 404
    assert client.post(REDEEM.format("c1"), json={"idempotencyKey": "b", "points": 1},
                       headers=auth(tenant.analyst)).status_code == 403


def test_large_redemptions_wait_for_review(client, platform, tenant) -> None:
    client.put("/v1/spend/policy", json={"reviewThresholdPoints": 1000}, headers=auth(tenant.admin))
    fund(platform, "acme", "c1", 5000)
    small = client.post(REDEEM.format("c1"), json={"idempotencyKey": "s", "points": 999},
                        headers=auth(tenant.merchant))
    assert small.status_code == 201 and small.json()["status"] == "completed"
    big = client.post(REDEEM.format("c1"), json={"idempotencyKey": "b", "points": 1000},
                      headers=auth(tenant.merchant))
    assert big.status_code == 202 and big.json()["status"] == "in-review" and big.json()["available"] == 3001
    rid = big.json()["redemptionId"]
    url = f"{REDEEM.format('c1')}/{rid}"
    confirm = client.post(url + "/confirm", headers=auth(tenant.merchant))
    assert confirm.status_code == 409 and confirm.json()["type"].endswith("reservation-in-review")
    queue = client.get("/v1/redemption-reviews", headers=auth(tenant.admin)).json()["items"]
    assert [q["details"]["redemptionId"] for q in queue] == [rid] and queue[0]["kind"] == "redemption"
    assert queue[0]["entryId"] == big.json()["entryId"]
    assert client.post(url + "/approve", json={}, headers=auth(tenant.merchant)).status_code == 403
    approved = client.post(url + "/approve", json={"reason": "known customer"}, headers=auth(tenant.admin))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "confirmed" and approved.json()["reviewStatus"] == "approved"
    assert client.get("/v1/redemption-reviews", headers=auth(tenant.admin)).json()["items"] == []
    assert client.post(url + "/reject", json={}, headers=auth(tenant.admin)).status_code == 409
    # Through the queue itself (what its own routes call): reject releases the points.
    second = client.post(REDEEM.format("c1"), json={"idempotencyKey": "b2", "points": 2000, "mode": "reserve"},
                         headers=auth(tenant.merchant)).json()
    review = platform.reviews.list("acme", status="open")[0]
    decided = platform.reviews.reject("acme", review["reviewId"], None, "odd")
    assert decided["status"] == "rejected"
    view = client.get(f"{REDEEM.format('c1')}/{second['redemptionId']}", headers=auth(tenant.admin)).json()
    assert view["status"] == "rejected" and view["pointsReleased"]
    # A merchant cancelling a reservation under review withdraws the review.
    third = client.post(REDEEM.format("c1"), json={"idempotencyKey": "b3", "points": 1500, "mode": "reserve"},
                        headers=auth(tenant.merchant)).json()
    cancelled = client.post(f"{REDEEM.format('c1')}/{third['redemptionId']}/cancel", headers=auth(tenant.merchant))
    assert cancelled.status_code == 201 and cancelled.json()["status"] == "cancelled"
    assert platform.reviews.list("acme", status="withdrawn")[0]["details"]["redemptionId"] == third["redemptionId"]
    assert platform.ledger.head("acme", "c1").balance == 3001
    actions = [r["action"] for r in platform.audit.records("acme", 0, 100)]
    assert actions.count("review.approved") == 1 and actions.count("review.rejected") == 1
    ledger_invariants(platform, "acme", "c1")


def test_a_redemption_over_the_customers_hourly_velocity_goes_to_review_not_refusal(client, platform,
                                                                                      tenant) -> None:
    policy = client.put("/v1/fraud/policy", json={"customer": {"redemptionsPerHour": 1}}, headers=auth(tenant.admin))
    assert policy.status_code == 200, policy.text
    fund(platform, "acme", "c1", 500)
    first = client.post(REDEEM.format("c1"), json={"idempotencyKey": "v1", "points": 100},
                        headers=auth(tenant.merchant))
    assert first.status_code == 201 and first.json()["status"] == "completed"
    second = client.post(REDEEM.format("c1"), json={"idempotencyKey": "v2", "points": 100},
                         headers=auth(tenant.merchant))
    assert second.status_code == 202 and second.json()["status"] == "in-review"
    assert second.json()["available"] == 300  # reserved: not spendable twice while in review
    [review] = platform.reviews.list("acme", status="open")
    assert [r["code"] for r in review["reasons"]] == ["redemption-velocity"]
    assert review["details"]["redemptionId"] == second.json()["redemptionId"]
    fund(platform, "acme", "c2", 10)
    other = client.post(REDEEM.format("c2"), json={"idempotencyKey": "v3", "points": 1},
                        headers=auth(tenant.merchant))
    assert other.status_code == 201 and other.json()["status"] == "completed"  # c1's count is not c2's


def test_a_review_lost_after_the_ledger_write_is_submitted_again_by_the_retry(client, platform, tenant,
                                                                               monkeypatch) -> None:
    client.put("/v1/spend/policy", json={"reviewThresholdPoints": 100}, headers=auth(tenant.admin))
    fund(platform, "acme", "c1", 500)
    real_submit = platform.reviews.submit

    def queue_down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("review queue unavailable")

    monkeypatch.setattr(platform.reviews, "submit", queue_down)
    body = {"idempotencyKey": "big", "points": 200}
    failed = client.post(REDEEM.format("c1"), json=body, headers=auth(tenant.merchant))
    assert failed.status_code == 500 and platform.reviews.list("acme", status="open") == []
    monkeypatch.setattr(platform.reviews, "submit", real_submit)
    retry = client.post(REDEEM.format("c1"), json=body, headers=auth(tenant.merchant))
    assert retry.status_code in (200, 202) and retry.json()["status"] == "in-review"
    [review] = platform.reviews.list("acme", status="open")
    assert review["details"]["redemptionId"] == retry.json()["redemptionId"]
    again = client.post(REDEEM.format("c1"), json=body, headers=auth(tenant.merchant))
    assert again.status_code in (200, 202) and len(platform.reviews.list("acme", status="open")) == 1
