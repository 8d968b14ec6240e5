"""The dry runs' copy-on-write view over a real store: reads see the real
documents and the view's own writes, merged; the real store never changes. (The
port's contract itself is held by tests/integration/store/test_store_contract.py,
which runs on the overlay too.)"""

from __future__ import annotations

import time

import pytest

from shared.dryrun.overlay import OverlayStore
from shared.errors import DocumentExists, PreconditionFailed
from shared.store.layout import CUSTOMERS
from shared.store.port import Filter, Query
from shared.store.sqlite import SqliteDocumentStore


def people(store: SqliteDocumentStore) -> None:
    for n, age in ((1, 30), (2, 20), (3, 40), (4, 10)):
        store.create(CUSTOMERS, {"id": f"p{n}", "pk": "t1", "tenantId": "t1", "age": age})


def test_writes_stay_in_the_view_and_merge_into_its_queries(sqlite_store: SqliteDocumentStore) -> None:
    people(sqlite_store)
    view = OverlayStore(sqlite_store, time.time)
    before = sqlite_store.query(CUSTOMERS, Query(pk="t1", order_by="age", limit=100))
    view.create(CUSTOMERS, {"id": "p5", "pk": "t1", "tenantId": "t1", "age": 25})
    view.upsert(CUSTOMERS, {**view.read(CUSTOMERS, "t1", "p1"), "age": 5})  # type: ignore[dict-item]
    view.delete(CUSTOMERS, "t1", "p3")
    by_age = view.query(CUSTOMERS, Query(pk="t1", order_by="age", limit=3))
    assert [(d["id"], d["age"]) for d in by_age] == [("p1", 5), ("p4", 10), ("p2", 20)]
    older = view.query(CUSTOMERS, Query(pk="t1", filters=(Filter("age", ">=", 20),), order_by="age",
                                        descending=True, limit=10))
    assert [d["id"] for d in older] == ["p5", "p2"]
    assert view.read(CUSTOMERS, "t1", "p3") is None and view.writes == 3
    with pytest.raises(DocumentExists):
        view.create(CUSTOMERS, {"id": "p2", "pk": "t1"})
    with pytest.raises(PreconditionFailed):
        view.upsert(CUSTOMERS, {"id": "p2", "pk": "t1"}, if_match='"stale"')
    assert sqlite_store.query(CUSTOMERS, Query(pk="t1", order_by="age", limit=100)) == before
    assert sqlite_store.read(CUSTOMERS, "t1", "p5") is None
