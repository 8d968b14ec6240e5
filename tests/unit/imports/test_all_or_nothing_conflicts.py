"""``mode=all-or-nothing`` applies nothing when a row conflicts with another row of the file
or with what is stored, not only when a row is malformed (found by an outside review: these
rows failed only when applied, after the rows before them were written). Checked in the
validation pass, read only: an order id repeated with other content, an order id another
order holds, a second opening balance of a customer (in the file or in the ledger).
Repeats further apart than one chunk of the file are still found only when applied
(docs/imports.md: left open)."""

from __future__ import annotations

import pytest

from tests.unit.imports.conftest import ledger_docs, ndjson, run_import


def _order(n: int, customer: str = "c1", points: int = 5) -> dict:
    return {"orderId": f"h{n}", "customerId": customer, "amount": "12.50", "currency": "EUR",
            "timestamp": "2024-03-01T10:00:00Z", "points": points}


def _opening(customer: str, points: int) -> dict:
    return {"customerId": customer, "points": points, "asOf": "2023-12-31T00:00:00Z"}


@pytest.mark.parametrize(("kind", "rows"), [
    ("orders", [_order(1), _order(2), _order(1, points=50)]),
    ("orders", [_order(1), _order(2), _order(1, customer="c2")]),
    ("opening-balances", [_opening("c1", 100), _opening("c2", 5), _opening("c1", 300)]),
], ids=["order-id-twice", "order-id-two-customers", "two-openings"])
def test_a_conflict_inside_the_file_rejects_it_whole(platform, tenant, kind: str, rows: list) -> None:  # type: ignore
    status = run_import(platform, "acme", ndjson(rows), kind=kind, mode="all-or-nothing")
    assert (status["status"], status["rowsDone"]) == ("rejected", 0), status
    assert [e["line"] for e in platform.imports.errors("acme", status["importId"])] == [3]
    assert ledger_docs(platform, "acme") == []


@pytest.mark.parametrize(("kind", "before", "rows"), [
    ("orders", [_order(1)], [_order(7, customer="c2"), _order(1, points=50)]),
    ("orders", [_order(1)], [_order(7, customer="c2"), _order(1, customer="c2")]),
    ("opening-balances", [_opening("c1", 100)], [_opening("c2", 5), _opening("c1", 300)]),
], ids=["order-other-content", "order-other-customer", "opening-again"])
def test_a_conflict_with_what_is_stored_rejects_the_file_whole(platform, tenant, kind: str, before: list,
                                                               rows: list) -> None:  # type: ignore
    assert run_import(platform, "acme", ndjson(before), kind=kind)["rowsDone"] == 1
    status = run_import(platform, "acme", ndjson(rows), kind=kind, mode="all-or-nothing")
    assert (status["status"], status["rowsDone"]) == ("rejected", 0), status
    assert platform.ledger.head("acme", "c2").balance == 0
