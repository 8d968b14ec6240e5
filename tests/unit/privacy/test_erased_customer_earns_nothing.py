"""An erased customer's account takes no new points: an order sent for them afterwards is
rejected (``customer-erased``), as a transfer to them is refused; the points they had stay
in the books (the ledger is not erased, docs/privacy.md). Before, the order was credited."""

from __future__ import annotations

from tests.conftest import auth, drain, order_body


def test_an_order_for_an_erased_customer_is_rejected_and_credits_nothing(platform, tenant, client) -> None:  # type: ignore
    client.post("/v1/orders", json=order_body("c1", "before"), headers=auth(tenant.merchant))
    drain(platform)
    before = platform.ledger.head("acme", "c1").balance
    assert before > 0
    platform.erasures.erase("acme", "c1", None, "ticket 7")
    accepted = client.post("/v1/orders", json=order_body("c1", "after"), headers=auth(tenant.merchant))
    assert accepted.status_code == 202, accepted.text
    drain(platform)
    answer = client.get("/v1/orders/after", headers=auth(tenant.merchant)).json()
    assert answer["status"] == "rejected" and answer["reason"]["code"] == "customer-erased", answer
    assert platform.ledger.head("acme", "c1").balance == before


def test_an_import_row_for_an_erased_customer_fails_with_its_reason(platform, tenant) -> None:  # type: ignore
    from tests.unit.imports.conftest import ndjson, run_import

    platform.erasures.erase("acme", "c2", None, "ticket 8")
    status = run_import(platform, "acme", ndjson([
        {"orderId": "h1", "customerId": "c2", "amount": "12.50", "currency": "EUR",
         "timestamp": "2024-03-01T10:00:00Z", "points": 5},
        {"orderId": "h2", "customerId": "c3", "amount": "12.50", "currency": "EUR",
         "timestamp": "2024-03-01T10:00:00Z", "points": 5}]), kind="orders")
    assert status["rowsDone"] == 1 and status["rowsFailed"] == 1, status
    [error] = platform.imports.errors("acme", status["importId"])
    assert "was erased" in error["errors"][0]["reason"]
    assert platform.ledger.head("acme", "c2").balance == 0
