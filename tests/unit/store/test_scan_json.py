"""``scan_json`` on the SQLite store: pages of raw JSON that, joined, are exactly the
documents a query of the same range and filters returns, in (pk, order) order; pages cut
inside a partition and across partitions; bounds, filters and the sparse order column
respected; a store without ``scan_json`` answers None (callers read with ``query``)."""

from __future__ import annotations

import json

import pytest

from shared.store.layout import CONTAINERS, LEDGER
from shared.store.port import Filter, scan_json
from shared.store.sqlite import SqliteDocumentStore


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    store = SqliteDocumentStore(tmp_path / "s.db", CONTAINERS)
    for customer, count in (("a", 5), ("b", 1), ("c", 0), ("d", 9)):
        for seq in range(1, count + 1):
            store.create(LEDGER, {"id": f"e{seq}", "pk": f"t:{customer}", "docType": "entry", "tenantId": "t",
                                  "customerId": customer, "seq": seq, "createdAt": f"2026-01-0{1 + seq % 3}"})
        store.create(LEDGER, {"id": "o1", "pk": f"t:{customer}", "docType": "order", "tenantId": "t",
                              "createdAt": "2026-01-01"})  # no seq: never scanned
    store.create(LEDGER, {"id": "e1", "pk": "u:a", "docType": "entry", "tenantId": "u", "customerId": "a", "seq": 1,
                          "createdAt": "2026-01-01"})  # outside the range
    yield store
    store.close()


@pytest.mark.parametrize("limit", [1, 2, 4, 5, 100])
def test_pages_join_to_the_documents_in_key_order(store, limit) -> None:  # type: ignore[no-untyped-def]
    filters = (Filter("docType", "=", "entry"), Filter("createdAt", ">", "2026-01-01"))
    seen, after, pages = [], None, 0
    while True:
        page = scan_json(store, LEDGER, "t:a", "t:d", filters, "seq", after, limit)
        docs = [json.loads(line) for line in page.ndjson.split(b"\n") if line]
        assert len(docs) == page.count <= limit
        seen += docs
        pages += 1
        if page.after is None:
            break
        assert page.after == (docs[-1]["pk"], docs[-1]["seq"])
        after = page.after
    expected = [(c, s) for c, n in (("a", 5), ("b", 1), ("d", 9)) for s in range(1, n + 1) if s % 3 != 0]
    assert [(d["customerId"], d["seq"]) for d in seen] == expected
    assert all("_etag" not in d for d in seen)


def test_the_range_bounds_are_inclusive(store) -> None:  # type: ignore[no-untyped-def]
    page = scan_json(store, LEDGER, "t:b", "t:b", (), "seq", None, 100)
    assert page.count == 1 and json.loads(page.ndjson)["pk"] == "t:b" and page.after is None
    assert scan_json(store, LEDGER, "t:c", "t:c", (), "seq", None, 100).count == 0


def test_a_store_without_scan_json_answers_none() -> None:
    class Plain:
        pass

    assert scan_json(Plain(), LEDGER, "a", "b", (), "seq", None, 10) is None  # type: ignore[arg-type]


def test_pages_read_both_parts_of_the_staged_ledger(store) -> None:  # type: ignore[no-untyped-def]
    # Rows merged into the main part and rows still in the recent part, interleaved in one
    # partition: every page is in key order and the pages join to every row exactly once.
    store.merge_recent(LEDGER)
    for seq in range(6, 12):
        store.create(LEDGER, {"id": f"e{seq}", "pk": "t:a", "docType": "entry", "tenantId": "t",
                              "customerId": "a", "seq": seq, "createdAt": "2026-01-02"})
    main, recent = store._table(LEDGER).parts  # noqa: SLF001 - the test pins where the rows are
    counts = [store._execute(f"SELECT COUNT(*) FROM {part} WHERE pk = 't:a'", []).fetchone()[0] for part in (main, recent)]
    assert counts == [6, 6]
    for limit in (1, 3, 7, 100):
        seen, after = [], None
        while True:
            page = scan_json(store, LEDGER, "t:a", "t:a", (Filter("docType", "=", "entry"),), "seq", after, limit)
            seen += [json.loads(line)["seq"] for line in page.ndjson.split(b"\n") if line]
            if page.after is None:
                break
            after = page.after
        assert seen == list(range(1, 12)), limit
