"""An order id names one order per tenant, whichever door it comes through: the API's
sends claim it (``shared.app.claims``), and so do imported historical orders. Found by an
outside review: an import credited an order id already sent for another customer, and one
file credited one order id to two customers. A re-run of an import (or the projector's
status written in between) finds its own claims and changes nothing."""

from __future__ import annotations

from tests.conftest import auth, drain, order_body
from tests.unit.imports.conftest import ndjson, run_import


def _row(order_id: str, customer: str, points: int = 100) -> dict:
    return {"orderId": order_id, "customerId": customer, "amount": "10.00", "currency": "EUR",
            "timestamp": "2026-10-01T11:00:00Z", "points": points}


def _credited(platform, *customers: str) -> int:  # type: ignore[no-untyped-def]
    return sum(platform.ledger.head("acme", c).orders_credited for c in customers)


def test_one_file_cannot_credit_one_order_id_to_two_customers(platform, tenant) -> None:  # type: ignore
    status = run_import(platform, "acme", ndjson([_row("h2", "c2"), _row("h2", "c3")]), kind="orders")
    assert (status["rowsDone"], status["rowsFailed"]) == (1, 1), status
    [error] = platform.imports.errors("acme", status["importId"])
    assert error["line"] == 2 and error["errors"][0]["field"] == "orderId"
    assert _credited(platform, "c2", "c3") == 1


def test_an_import_cannot_credit_an_order_id_sent_through_the_api(client, platform, tenant) -> None:  # type: ignore
    assert client.post("/v1/orders", headers=auth(tenant.merchant), json=order_body("c1", "o77")).status_code == 202
    drain(platform)
    for customer in ("c2", "c1"):  # another customer; the same customer with another body
        status = run_import(platform, "acme", ndjson([_row("o77", customer)]), kind="orders")
        assert (status["rowsDone"], status["rowsFailed"]) == (0, 1), status
    assert _credited(platform, "c1", "c2") == 1


def test_the_api_cannot_send_an_imported_order_id_for_another_customer(client, platform, tenant) -> None:  # type: ignore
    assert run_import(platform, "acme", ndjson([_row("h9", "c2")]), kind="orders")["rowsDone"] == 1
    sent = client.post("/v1/orders", headers=auth(tenant.merchant), json=order_body("c1", "h9"))
    assert sent.status_code in (409, 422), sent.text
    drain(platform)
    assert _credited(platform, "c1", "c2") == 1


def test_a_rerun_finds_its_own_claims_before_and_after_the_projector(platform, tenant) -> None:  # type: ignore
    data = ndjson([_row("h1", "c1"), _row("h2", "c2")])
    first = run_import(platform, "acme", data, kind="orders")
    again = run_import(platform, "acme", data, kind="orders")  # before the projector wrote the statuses
    drain(platform)
    third = run_import(platform, "acme", data, kind="orders")  # after
    assert [s["rowsFailed"] for s in (first, again, third)] == [0, 0, 0]
    assert _credited(platform, "c1", "c2") == 2 and platform.ledger.head("acme", "c1").balance == 100
