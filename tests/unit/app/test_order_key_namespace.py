"""An order's idempotency key never collides with another writer's key in the customer's
ledger (``Order.ledger_key``).

Every write to a customer's ledger is keyed in one namespace: orders by their key (or id),
the other writers ``<kind>:<their key>``. An explicit order key may be any printable ASCII,
so before this an order keyed ``redeem:X`` refused that customer's later redemption keyed
``X``, an order keyed ``adjust:K`` was rejected after an adjustment keyed ``K``, and an
order keyed ``cancel:<rid>`` blocked the cancel of a live reservation (an outside review).
The class of test: each writer whose ledger key a client can steer, before and after an
order keyed with that writer's ledger key."""

from __future__ import annotations

import pytest

from shared.domain.orders import ORDER_KEY_NAMESPACE, Order
from tests.conftest import auth, drain, order_body


def _adjust(client, tenant, key: str, points: int = 1000):  # type: ignore[no-untyped-def]
    return client.post("/v1/customers/c1/adjustments", json={
        "points": points, "reasonCode": "goodwill", "reason": "seed", "idempotencyKey": key}, headers=auth(tenant.admin))


def _order(client, platform, tenant, order_id: str, key: str) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/v1/orders", json=order_body("c1", order_id, "10.00", idempotencyKey=key),
                           headers=auth(tenant.merchant))
    assert response.status_code == 202, response.text
    drain(platform)
    return client.get(f"/v1/orders/{order_id}", headers=auth(tenant.merchant)).json()


def test_a_redemption_after_an_order_keyed_with_its_ledger_key(platform, tenant, client) -> None:  # type: ignore
    assert _adjust(client, tenant, "seed").status_code == 201
    assert _order(client, platform, tenant, "o-1", "redeem:basket-7")["status"] == "credited"
    response = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": "basket-7", "points": 50},
                           headers=auth(tenant.merchant))
    assert response.status_code == 201, response.text


def test_an_order_keyed_with_an_adjustments_ledger_key(platform, tenant, client) -> None:  # type: ignore
    assert _adjust(client, tenant, "k1").status_code == 201
    assert _order(client, platform, tenant, "o-2", "adjust:k1")["status"] == "credited"
    assert _adjust(client, tenant, "k1").json().get("duplicate") is True  # the adjustment's own key still replays


def test_a_reservation_cancel_after_an_order_keyed_with_its_ledger_key(platform, tenant, client) -> None:  # type: ignore
    assert _adjust(client, tenant, "seed").status_code == 201
    reserved = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": "hold-1", "points": 100,
                                                                "mode": "reserve"}, headers=auth(tenant.merchant))
    rid = reserved.json()["redemptionId"]
    assert _order(client, platform, tenant, "o-3", f"cancel:{rid}")["status"] == "credited"
    cancel = client.post(f"/v1/customers/c1/redemptions/{rid}/cancel", headers=auth(tenant.merchant))
    assert cancel.status_code == 201, cancel.text
    drain(platform)  # the balance is a read model
    assert client.get("/v1/customers/c1/balance", headers=auth(tenant.merchant)).json()["reserved"] == 0


def test_a_refund_after_an_order_keyed_with_its_ledger_key(platform, tenant, client) -> None:  # type: ignore
    assert _order(client, platform, tenant, "o-4", "o-4-key")["status"] == "credited"
    assert _order(client, platform, tenant, "o-5", "refund:o-4:r1")["status"] == "credited"
    refund = client.post("/v1/orders/o-4/refunds", json={"refundId": "r1", "amount": "10.00", "currency": "EUR"},
                         headers=auth(tenant.merchant))
    assert refund.status_code == 201, refund.text


@pytest.mark.parametrize("key, ledger", [("plain-key", "plain-key"), ("pos:1234", ORDER_KEY_NAMESPACE + "pos:1234"),
                                         (None, "o-6")])
def test_the_ledger_key_of_an_order(key, ledger) -> None:  # type: ignore[no-untyped-def]
    order = Order.model_validate(order_body("c1", "o-6", idempotencyKey=key) if key else order_body("c1", "o-6"))
    assert order.ledger_key == ledger
    assert ":" not in order.order_id  # why a key without ':' cannot be another writer's

