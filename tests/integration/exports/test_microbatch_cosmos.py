"""Micro-batches on Cosmos DB (cosmosdb-server), which keeps no change log: the customers
with rows in a run's window come from one cross-partition query of the ledger by
``createdAt`` (``ExportService._customers_in_window``), so a run every few minutes reads
the partitions of those customers only, not a query per customer of the tenant."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.orders import Order
from shared.local.workers import QueueConsumer
from shared.platform import Platform
from shared.store.layout import LEDGER
from tests.conftest import order_body

pytestmark = pytest.mark.cosmos


def _credit(platform: Platform, customer: str, order_id: str) -> None:
    platform.intake.accept("acme", [Order.model_validate(order_body(customer, order_id))])
    consumer = QueueConsumer(platform, platform.bus)  # the local platform's consumer: claims, ingests, acks
    while consumer.step():
        pass
    assert platform.bus.depth() == 0


def test_a_micro_batch_on_cosmos_reads_only_the_customers_with_rows_in_its_window(cosmos_platform: Platform,
                                                                                  clock, monkeypatch) -> None:  # type: ignore
    p = cosmos_platform
    for customer in ("c1", "c2", "c3", "c4"):
        _credit(p, customer, f"first-{customer}")
    clock.advance(timedelta(minutes=1))
    history = p.exports.microbatch("acme")
    assert sum(f["rows"] for f in history["files"] if f["subject"] == "transactions") == 4
    clock.advance(timedelta(minutes=3))
    _credit(p, "c2", "late-1")
    _credit(p, "c4", "late-2")
    clock.advance(timedelta(minutes=1))
    partitions: set[str] = set()
    query = p.store.query

    def counted(container, q):  # type: ignore[no-untyped-def]
        if container == LEDGER and q.pk is not None:
            partitions.add(q.pk)
        return query(container, q)

    monkeypatch.setattr(p.store, "query", counted)
    manifest = p.exports.microbatch("acme")
    assert partitions == {"acme:c2", "acme:c4"}, partitions
    rows = {f["subject"]: f["rows"] for f in manifest["files"]}
    assert rows["transactions"] == 2 and rows["orders"] == 2, rows


def test_history_imported_on_cosmos_is_in_the_next_micro_batch_once(cosmos_platform: Platform, clock) -> None:  # type: ignore
    """Imported rows are found by ``recordedAt`` (the window's second query, while an import
    ran): the query Cosmos DB answers for a boolean field and an instant."""
    from shared.exports.service import rows_per_subject
    from tests.unit.imports.conftest import ndjson, run_import

    p = cosmos_platform
    _credit(p, "c1", "live-1")
    clock.advance(timedelta(minutes=1))
    p.exports.microbatch("acme")
    clock.advance(timedelta(minutes=6))
    rows = [{"orderId": f"h{n}", "customerId": customer, "amount": "12.50", "currency": "EUR",
             "timestamp": f"2024-03-0{n}T10:00:00Z", "points": 5} for n, customer in ((1, "c2"), (2, "c3"))]
    assert run_import(p, "acme", ndjson(rows), kind="orders")["rowsDone"] == 2
    clock.advance(timedelta(minutes=1))
    manifest = p.exports.microbatch("acme")
    counted = rows_per_subject(manifest)  # summed over the files of each date partition (two dates)
    assert counted["transactions"] == 2 and counted["orders"] == 2, manifest["files"]
    clock.advance(timedelta(minutes=6))
    again = p.exports.microbatch("acme")
    assert rows_per_subject(again)["transactions"] == 0 and rows_per_subject(again)["orders"] == 0, again["files"]

