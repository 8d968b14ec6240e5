"""The projector: idempotent, order-insensitive, guarded against concurrent moves."""

from __future__ import annotations

from shared.app.projections import BALANCE_ID, Projector
from shared.store.layout import BALANCES, LEDGER
from shared.store.port import Filter, Query
from tests.conftest import order_body


def _all_ledger_docs(platform) -> list[dict]:
    return platform.store.query(LEDGER, Query(pk=None, filters=(Filter("docType", "in", ["entry", "order"]),),
                                              limit=1000))


def test_redelivered_and_reordered_changes_are_no_ops(client, platform, tenant) -> None:
    from tests.conftest import auth, drain

    for n in range(3):
        client.post("/v1/orders", json=order_body(order_id=f"o{n}", amount="2"), headers=auth(tenant.merchant))
    drain(platform)
    balance = platform.store.read(BALANCES, "acme:c1", BALANCE_ID)
    assert balance["available"] == 60 and balance["lastSeq"] == 3
    docs = _all_ledger_docs(platform)
    projector = Projector(platform.store, platform.clock)
    projector.apply(list(reversed(docs)))
    report = projector.apply(docs)
    assert report.balances_updated == 0
    again = platform.store.read(BALANCES, "acme:c1", BALANCE_ID)
    assert {k: again[k] for k in ("available", "lastSeq")} == {"available": 60, "lastSeq": 3}
    assert platform.intake.status("acme", "o2")["status"] == "credited"


def test_an_older_entry_never_moves_the_balance_back(platform) -> None:
    projector = Projector(platform.store, platform.clock)
    entry = {"docType": "entry", "pk": "t:c", "tenantId": "t", "customerId": "c", "seq": 2,
             "runningBalance": 20, "runningPending": 0, "runningLifetimeEarned": 20, "ordersCredited": 2,
             "createdAt": "2026-11-01T00:00:00Z"}
    projector.apply([entry])
    projector.apply([dict(entry, seq=1, runningBalance=10)])
    assert platform.store.read(BALANCES, "t:c", BALANCE_ID)["available"] == 20


def test_an_order_status_carries_the_orders_fingerprint_from_new_and_older_records(
        client, platform, tenant) -> None:
    from shared.ledger.service import fingerprint_of
    from shared.store.layout import ORDER_STATUS, order_pk
    from tests.conftest import auth, drain

    client.post("/v1/orders", json=order_body(order_id="o1", amount="2"), headers=auth(tenant.merchant))
    drain(platform)
    record = next(d for d in _all_ledger_docs(platform) if d["docType"] == "order")
    expected = fingerprint_of(record["order"])
    # Ingest stores the fingerprint it computed on the record (the projector does not hash the order again) ...
    assert record["fingerprint"] == expected
    assert platform.store.read(ORDER_STATUS, order_pk("acme", "o1"), "o1")["fingerprint"] == expected
    # ... and a record written before that, without one, still gives its status the order's fingerprint.
    older = {k: v for k, v in record.items() if k != "fingerprint"}
    Projector(platform.store, platform.clock).apply([dict(older, orderId="o9", id="order-o9")])
    assert platform.store.read(ORDER_STATUS, order_pk("acme", "o9"), "o9")["fingerprint"] == expected
