"""A refund meets an order whose points a fraud review holds, in every order of events:
whatever the review decides and whenever the merchant refunds, an order refunded in full
leaves none of its points spendable or pending, and takes none of the customer's other
points (found by an outside review: a refund before the decision clawed back nothing, and
the approval then credited the refunded order's points in full).

A refund waits for the decision (409 ``held-for-review``, nothing written), in a return
window or not; a review's rejection means the order earned nothing to claw back."""

from __future__ import annotations

import pytest

from tests.conftest import auth

OTHER_POINTS = 30  # the customer's own points, which no refund of the held order may take


def _refund(client, tenant, refund_id: str, amount: str = "10.00"):  # type: ignore[no-untyped-def]
    return client.post("/v1/orders/o1/refunds", json={"refundId": refund_id, "amount": amount, "currency": "EUR"},
                       headers=auth(tenant.merchant))


@pytest.mark.parametrize("window", [False, True], ids=["no-window", "window"])
@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("refund_first", [True, False], ids=["refund-then-decide", "decide-then-refund"])
@pytest.mark.parametrize("first_amount", ["10.00", "4.00"], ids=["full", "partial-first"])
def test_a_full_refund_of_a_held_order_leaves_none_of_its_points(client, platform, tenant, set_policy, send,
                                                                  window, decision, refund_first,
                                                                  first_amount) -> None:  # type: ignore
    if window:
        settings = platform.tenants.get("acme")
        platform.tenants.save(settings.model_copy(update={"pending_days": 14}))
    adjusted = client.post("/v1/customers/c1/adjustments", headers=auth(tenant.admin), json={
        "points": OTHER_POINTS, "reasonCode": "goodwill", "reason": "welcome", "idempotencyKey": "welcome"})
    assert adjusted.status_code == 201, adjusted.text
    set_policy({"customer": {"pointsPerHour": 50}})
    assert send("o1")["status"] == "held"
    [review] = client.get("/v1/reviews", headers=auth(tenant.admin)).json()["items"]
    if refund_first:
        before = platform.ledger.head("acme", "c1")
        first = _refund(client, tenant, "r1", first_amount)
        assert first.status_code == 409 and first.json()["type"].endswith("/held-for-review"), first.text
        assert platform.ledger.head("acme", "c1") == before, "a refused refund writes nothing"
    decided = client.post(f"/v1/reviews/{review['reviewId']}/{decision}", headers=auth(tenant.admin))
    assert decided.status_code == 200, decided.text
    if first_amount != "10.00":
        assert _refund(client, tenant, "r2a", first_amount).status_code == 201
        rest = f"{10 - float(first_amount):.2f}"
        assert _refund(client, tenant, "r2b", rest).status_code == 201
    else:
        assert _refund(client, tenant, "r2").status_code == 201
    head = platform.ledger.head("acme", "c1")
    assert (head.balance, head.pending) == (OTHER_POINTS, 0), head
    again = _refund(client, tenant, "r3")
    assert again.status_code == 422, "refunded in full already"
