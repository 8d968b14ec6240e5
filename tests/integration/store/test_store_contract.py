"""The document-store contract, held against both adapters.

Every test taking the ``store`` fixture runs on each: on the embedded SQLite store
(a fresh file) and on the Cosmos DB adapter against cosmosdb-server (a fresh
database). What the emulator cannot show is tested on SQLite only, each with the
reason next to it:

* the change feed: cosmosdb-server's change feed never advances (and the Cosmos
  adapter does not read it: the Functions trigger does);
* concurrent writers: the ETag race is also run on Cosmos, but SQLite's
  single-writer lock and its read-your-writes across threads are its own.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from shared.errors import (
    BatchFailed,
    BatchSkipped,
    DocumentExists,
    ImmutableDocument,
    PreconditionFailed,
    StoreError,
)
from shared.store.layout import CUSTOMERS, LEDGER
from shared.store.port import Create, Delete, DocumentStore, Filter, PartitionBatch, Query, Upsert, read_many


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.cosmos), "overlay"])
def store(request: pytest.FixtureRequest) -> Iterator[DocumentStore]:
    if request.param == "overlay":
        # The dry runs' copy-on-write view (shared.dryrun.overlay), writes kept in memory
        # over a real store: it must keep the same contract.
        from shared.dryrun.overlay import OverlayStore

        yield OverlayStore(request.getfixturevalue("sqlite_store"), time.time)
        return
    yield request.getfixturevalue(f"{request.param}_store")


def body(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document without the store's own properties."""
    return {k: v for k, v in doc.items() if k not in ("_etag", "_ts")}


def doc(id: str, pk: str = "t1:c1", **fields: Any) -> dict[str, Any]:
    return {"id": id, "pk": pk, **fields}


# --- single documents ------------------------------------------------------------------


def test_create_then_read_returns_the_document_with_etag_and_ts(store: DocumentStore) -> None:
    created = store.create(CUSTOMERS, doc("a", name="Ada", points=12))
    read = store.read(CUSTOMERS, "t1:c1", "a")

    assert read is not None
    assert body(read) == {"id": "a", "pk": "t1:c1", "name": "Ada", "points": 12}
    assert read["_etag"] == created["_etag"] and isinstance(read["_etag"], str) and read["_etag"]
    assert isinstance(read["_ts"], int) and abs(read["_ts"] - time.time()) < 300
    assert not {"_rid", "_self", "_attachments"} & read.keys()


def test_read_of_a_missing_document_is_none(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("a"))
    assert store.read(CUSTOMERS, "t1:c1", "nope") is None
    assert store.read(CUSTOMERS, "t1:other", "a") is None  # same id, other partition


def test_read_many_answers_each_key_in_the_order_asked_as_read_does(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("a", v=1))
    store.create(CUSTOMERS, doc("b", pk="t1:c2", v=2))
    store.create(CUSTOMERS, doc("a", pk="t1:c2", v=3))  # same id, other partition
    keys = [("t1:c2", "b"), ("t1:c1", "nope"), ("t1:c1", "a"), ("t1:c2", "a"), ("t1:c1", "a")]

    found = read_many(store, CUSTOMERS, keys)

    assert found == [store.read(CUSTOMERS, pk, id) for pk, id in keys]
    assert [d and d["v"] for d in found] == [2, None, 1, 3, 1]
    assert found[2] is not found[4]  # a key asked twice: two documents, each the caller's own
    assert read_many(store, CUSTOMERS, []) == []


def test_create_refuses_a_duplicate_id_in_the_same_partition_only(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("a", v=1))
    with pytest.raises(DocumentExists):
        store.create(CUSTOMERS, doc("a", v=2))
    assert body(store.read(CUSTOMERS, "t1:c1", "a") or {})["v"] == 1

    store.create(CUSTOMERS, doc("a", pk="t1:c2", v=3))  # ids are unique per partition
    assert body(store.read(CUSTOMERS, "t1:c2", "a") or {})["v"] == 3


def test_upsert_creates_then_replaces_and_changes_the_etag(store: DocumentStore) -> None:
    first = store.upsert(CUSTOMERS, doc("a", v=1))
    second = store.upsert(CUSTOMERS, doc("a", v=2))

    assert second["_etag"] != first["_etag"]
    assert body(store.read(CUSTOMERS, "t1:c1", "a") or {}) == doc("a", v=2)


def test_upsert_with_the_current_etag_succeeds(store: DocumentStore) -> None:
    first = store.create(CUSTOMERS, doc("a", v=1))
    second = store.upsert(CUSTOMERS, doc("a", v=2), if_match=first["_etag"])
    assert body(second) == doc("a", v=2)
    assert store.read(CUSTOMERS, "t1:c1", "a")["_etag"] == second["_etag"]  # type: ignore[index]


def test_upsert_with_a_stale_etag_is_refused_and_changes_nothing(store: DocumentStore) -> None:
    first = store.create(CUSTOMERS, doc("a", v=1))
    store.upsert(CUSTOMERS, doc("a", v=2))

    with pytest.raises(PreconditionFailed):
        store.upsert(CUSTOMERS, doc("a", v=3), if_match=first["_etag"])
    assert body(store.read(CUSTOMERS, "t1:c1", "a") or {})["v"] == 2


def test_upsert_with_an_etag_of_a_deleted_document_is_refused(store: DocumentStore) -> None:
    first = store.create(CUSTOMERS, doc("a", v=1))
    store.delete(CUSTOMERS, "t1:c1", "a")

    with pytest.raises(PreconditionFailed):
        store.upsert(CUSTOMERS, doc("a", v=2), if_match=first["_etag"])
    assert store.read(CUSTOMERS, "t1:c1", "a") is None


def test_a_read_document_can_be_written_back_as_it_is(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("a", v=1))
    read = store.read(CUSTOMERS, "t1:c1", "a")
    assert read is not None
    read["v"] = 2
    written = store.upsert(CUSTOMERS, read, if_match=read["_etag"])
    assert body(written) == doc("a", v=2)


def test_delete_removes_and_honours_the_etag(store: DocumentStore) -> None:
    first = store.create(CUSTOMERS, doc("a", v=1))
    store.upsert(CUSTOMERS, doc("a", v=2))

    with pytest.raises(PreconditionFailed):
        store.delete(CUSTOMERS, "t1:c1", "a", if_match=first["_etag"])
    current = store.read(CUSTOMERS, "t1:c1", "a")
    assert current is not None

    store.delete(CUSTOMERS, "t1:c1", "a", if_match=current["_etag"])
    assert store.read(CUSTOMERS, "t1:c1", "a") is None


def test_delete_of_a_missing_document_is_an_error(store: DocumentStore) -> None:
    with pytest.raises(StoreError) as caught:
        store.delete(CUSTOMERS, "t1:c1", "nope")
    assert not isinstance(caught.value, (PreconditionFailed, DocumentExists))


def test_documents_round_trip_unicode_and_nested_json(store: DocumentStore) -> None:
    value = {
        "name": "Zoë Ærøskøbing — 名前 😀",
        "quote": 'a "quoted" \\ back\\slash\nnew line',
        "nested": {"list": [1, 2.5, None, True, False, {"deep": ["x", {"deeper": "ÿ"}]}], "empty": {}},
        "empty_list": [],
        "zero": 0,
        "negative": -17,
        "null": None,
    }
    store.create(CUSTOMERS, doc("ünï-😀", **value))
    read = store.read(CUSTOMERS, "t1:c1", "ünï-😀")
    assert read is not None and body(read) == doc("ünï-😀", **value)


def test_unknown_container_is_an_error(store: DocumentStore) -> None:
    with pytest.raises(StoreError):
        store.read("no-such-container", "p", "a")


# --- queries -----------------------------------------------------------------------------


@pytest.fixture
def people(store: DocumentStore) -> DocumentStore:
    rows = [
        doc("p1", pk="t1:c1", tenantId="t1", age=31, tier="gold", meta={"region": "eu"}),
        doc("p2", pk="t1:c1", tenantId="t1", age=25, tier="silver", meta={"region": "us"}),
        doc("p3", pk="t1:c2", tenantId="t1", age=47, tier=None, meta={"region": "eu"}),
        doc("p4", pk="t1:c2", tenantId="t1", age=19),  # no tier at all
        doc("p5", pk="t2:c1", tenantId="t2", age=52, tier="gold"),
    ]
    for row in rows:
        store.create(CUSTOMERS, row)
    return store


def ids(docs: list[dict[str, Any]]) -> list[str]:
    return [d["id"] for d in docs]


def test_query_inside_one_partition(people: DocumentStore) -> None:
    found = people.query(CUSTOMERS, Query(pk="t1:c2", order_by="age"))
    assert ids(found) == ["p4", "p3"]
    assert all("_etag" in d and "_ts" in d for d in found)


def test_query_across_partitions(people: DocumentStore) -> None:
    found = people.query(CUSTOMERS, Query(pk=None, filters=(Filter("tenantId", "=", "t1"),), order_by="age"))
    assert ids(found) == ["p4", "p2", "p1", "p3"]


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("=", 31, ["p1"]),
        ("!=", 31, ["p4", "p2", "p3", "p5"]),
        ("<", 31, ["p4", "p2"]),
        ("<=", 31, ["p4", "p2", "p1"]),
        (">", 31, ["p3", "p5"]),
        (">=", 47, ["p3", "p5"]),
        ("in", [19, 52, 99], ["p4", "p5"]),
    ],
)
def test_query_comparisons(people: DocumentStore, op: str, value: Any, expected: list[str]) -> None:
    found = people.query(CUSTOMERS, Query(pk=None, filters=(Filter("age", op, value),), order_by="age"))  # type: ignore[arg-type]
    assert ids(found) == expected


def test_query_strings_and_in_on_strings(people: DocumentStore) -> None:
    found = people.query(CUSTOMERS, Query(pk=None, filters=(Filter("tier", "in", ["gold", "bronze"]),), order_by="age"))
    assert ids(found) == ["p1", "p5"]


def test_query_none_matches_null_and_missing_fields(people: DocumentStore) -> None:
    missing = people.query(CUSTOMERS, Query(pk=None, filters=(Filter("tier", "=", None),), order_by="age"))
    present = people.query(CUSTOMERS, Query(pk=None, filters=(Filter("tier", "!=", None),), order_by="age"))
    assert ids(missing) == ["p4", "p3"]
    assert ids(present) == ["p2", "p1", "p5"]


def test_query_not_equal_to_a_value_matches_no_null_or_missing_field(people: DocumentStore) -> None:
    """p3's tier is null, p4 has none: neither is "not gold" on any adapter (Cosmos DB's own
    null != "gold" is true; the adapter keeps SQLite's answer)."""
    found = people.query(CUSTOMERS, Query(pk=None, filters=(Filter("tier", "!=", "gold"),), order_by="age"))
    assert ids(found) == ["p2"]


def test_query_a_boolean_matches_the_boolean(store: DocumentStore) -> None:
    for name, flag in (("yes", True), ("no", False), ("none", None)):
        store.create(CUSTOMERS, doc(name, flag=flag))
    store.create(CUSTOMERS, doc("absent"))
    found = store.query(CUSTOMERS, Query(pk="t1:c1", filters=(Filter("flag", "=", True),), limit=10))
    assert ids(found) == ["yes"]
    found = store.query(CUSTOMERS, Query(pk="t1:c1", filters=(Filter("flag", "!=", True),), limit=10))
    assert ids(found) == ["no"]


@pytest.mark.parametrize(("op", "value"), [("in", ["gold", None]), ("in", [True]), ("<", None), (">=", True)])
def test_comparisons_the_adapters_would_answer_differently_are_refused(op: str, value: Any) -> None:
    """Cosmos DB's IN (null) matches null and SQLite's never; a boolean range is 1 or 0 to
    SQLite: refused before any adapter answers."""
    with pytest.raises(AssertionError):
        Filter("tier", op, value)  # type: ignore[arg-type]


def test_query_nested_field(people: DocumentStore) -> None:
    found = people.query(CUSTOMERS, Query(pk=None, filters=(Filter("meta.region", "=", "eu"),), order_by="age"))
    assert ids(found) == ["p1", "p3"]


def test_query_several_filters_are_anded(people: DocumentStore) -> None:
    filters = (Filter("tenantId", "=", "t1"), Filter("age", ">", 20), Filter("tier", "!=", None))
    assert ids(people.query(CUSTOMERS, Query(pk=None, filters=filters, order_by="age"))) == ["p2", "p1"]


def test_query_order_descending_and_limit(people: DocumentStore) -> None:
    found = people.query(CUSTOMERS, Query(pk=None, order_by="age", descending=True, limit=2))
    assert ids(found) == ["p5", "p3"]
    one = people.query(CUSTOMERS, Query(pk="t1:c1", order_by="age", limit=1))
    assert ids(one) == ["p2"]


def test_query_values_are_parameters_never_sql(people: DocumentStore) -> None:
    hostile = "x' OR 1=1 --"
    assert people.query(CUSTOMERS, Query(pk=None, filters=(Filter("tier", "=", hostile),))) == []
    assert people.query(CUSTOMERS, Query(pk=hostile)) == []


def test_query_refuses_a_field_path_that_is_not_an_identifier() -> None:
    with pytest.raises(ValueError):
        Filter('age"] OR 1=1 --', "=", 1)
    with pytest.raises(ValueError):
        Query(pk=None, order_by="a b")


# --- batches -----------------------------------------------------------------------------


def test_batch_applies_every_kind_of_operation(store: DocumentStore) -> None:
    old = store.create(CUSTOMERS, doc("old", v=0))
    store.create(CUSTOMERS, doc("gone", v=0))

    result = store.batch(CUSTOMERS, "t1:c1", [
        Create(doc("new", v=1)),
        Upsert(doc("up", v=2)),
        Upsert(doc("old", v=3), if_match=old["_etag"]),
        Delete("gone"),
    ])

    assert [body(r) for r in result[:3]] == [doc("new", v=1), doc("up", v=2), doc("old", v=3)]
    assert all(r["_etag"] for r in result[:3])
    assert result[3] == {"id": "gone", "pk": "t1:c1"}
    assert body(store.read(CUSTOMERS, "t1:c1", "old") or {})["v"] == 3
    assert store.read(CUSTOMERS, "t1:c1", "gone") is None
    assert store.read(CUSTOMERS, "t1:c1", "new") is not None


def test_batch_failure_names_the_failing_operation(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("taken"))
    with pytest.raises(BatchFailed) as caught:
        store.batch(CUSTOMERS, "t1:c1", [Create(doc("free")), Create(doc("taken")), Create(doc("later"))])
    assert caught.value.index == 1
    assert isinstance(caught.value.cause, DocumentExists)


def test_batch_precondition_failure_names_its_cause(store: DocumentStore) -> None:
    first = store.create(CUSTOMERS, doc("a", v=1))
    store.upsert(CUSTOMERS, doc("a", v=2))
    with pytest.raises(BatchFailed) as caught:
        store.batch(CUSTOMERS, "t1:c1", [Upsert(doc("a", v=3), if_match=first["_etag"]), Create(doc("b"))])
    assert caught.value.index == 0
    assert isinstance(caught.value.cause, PreconditionFailed)
    assert body(store.read(CUSTOMERS, "t1:c1", "a") or {})["v"] == 2


def test_a_one_operation_batch_raises_the_operations_own_error(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("taken"))
    with pytest.raises(DocumentExists):
        store.batch(CUSTOMERS, "t1:c1", [Create(doc("taken"))])


def test_batch_refuses_an_operation_of_another_partition(store: DocumentStore) -> None:
    with pytest.raises(StoreError):
        store.batch(CUSTOMERS, "t1:c1", [Create(doc("a")), Create(doc("b", pk="t1:c2"))])
    assert store.read(CUSTOMERS, "t1:c1", "a") is None


def test_batches_fill_result_or_error_for_each_partition_independently(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("taken", pk="t1:c2"))
    works = [
        PartitionBatch("t1:c1", [Create(doc("x", pk="t1:c1")), Create(doc("y", pk="t1:c1"))]),
        PartitionBatch("t1:c2", [Create(doc("z", pk="t1:c2")), Create(doc("taken", pk="t1:c2"))]),
        PartitionBatch("t1:c3", [Create(doc("w", pk="t1:c3"))]),
    ]

    store.batches(CUSTOMERS, works)

    assert works[0].error is None and ids(works[0].result or []) == ["x", "y"]
    assert works[1].result is None and isinstance(works[1].error, BatchFailed) and works[1].error.index == 1
    assert works[2].error is None and ids(works[2].result or []) == ["w"]
    assert store.read(CUSTOMERS, "t1:c1", "y") is not None
    assert store.read(CUSTOMERS, "t1:c3", "w") is not None


@pytest.mark.parametrize("failing", ["duplicate", "stale-etag"])
def test_batches_of_a_partition_after_its_failed_one_are_skipped(store: DocumentStore, failing: str) -> None:
    """The port's chain: a caller (the ledger) plans a partition's later batches on what its
    earlier ones write, so once one fails the later ones of that partition are not attempted;
    other partitions' batches still are. (The Cosmos adapter sent them: an entry written on a
    head that was never stored, its running balance counting the failed batch's points.)"""
    store.create(CUSTOMERS, doc("taken", pk="t1:c1"))
    stored = store.create(CUSTOMERS, doc("guarded", pk="t1:c1", n=1))
    store.upsert(CUSTOMERS, {**body(stored), "n": 2})
    first = (Create(doc("taken", pk="t1:c1")) if failing == "duplicate"
             else Upsert({**body(stored), "n": 3}, if_match=stored["_etag"]))
    works = [
        PartitionBatch("t1:c1", [first]),
        PartitionBatch("t1:c2", [Create(doc("other", pk="t1:c2"))]),
        PartitionBatch("t1:c1", [Create(doc("planned-on-it", pk="t1:c1"))]),
        PartitionBatch("t1:c1", [Create(doc("and-this", pk="t1:c1"))]),
    ]
    store.batches(CUSTOMERS, works)
    assert works[0].error is not None and works[0].result is None
    assert works[1].error is None and store.read(CUSTOMERS, "t1:c2", "other") is not None
    for later in works[2:]:
        assert isinstance(later.error, BatchSkipped) and later.result is None
    assert store.read(CUSTOMERS, "t1:c1", "planned-on-it") is None
    assert store.read(CUSTOMERS, "t1:c1", "and-this") is None


@pytest.mark.parametrize("value", [2**53 - 1, -(2**53 - 1), 2**53 - 2, 10**15 + 1])
def test_integers_up_to_the_exact_json_range_round_trip(store: DocumentStore, value: int) -> None:
    """What the ledger's running totals may reach (shared/ledger/entries.py MAX_RUNNING_TOTAL):
    every adapter gives it back exactly (Cosmos DB keeps numbers as doubles)."""
    store.create(CUSTOMERS, doc("big", total=value, nested={"v": value}))
    got = store.read(CUSTOMERS, "t1:c1", "big")
    assert got is not None and got["total"] == value and got["nested"]["v"] == value
    found = store.query(CUSTOMERS, Query(pk="t1:c1", filters=(Filter("total", "=", value),), limit=5))
    assert [d["id"] for d in found] == ["big"]


# --- append-only containers ----------------------------------------------------------------


def test_append_only_container_accepts_creates(store: DocumentStore) -> None:
    store.create(LEDGER, doc("e1", seq=1))
    store.batch(LEDGER, "t1:c1", [Create(doc("e2", seq=2)), Create(doc("e3", seq=3))])
    assert ids(store.query(LEDGER, Query(pk="t1:c1", order_by="seq"))) == ["e1", "e2", "e3"]


def test_append_only_container_refuses_every_change_and_keeps_the_document(store: DocumentStore) -> None:
    entry = store.create(LEDGER, doc("e1", points=100))

    with pytest.raises(ImmutableDocument):
        store.upsert(LEDGER, doc("e1", points=999))
    with pytest.raises(ImmutableDocument):
        store.upsert(LEDGER, doc("e1", points=999), if_match=entry["_etag"])  # a replace
    with pytest.raises(ImmutableDocument):
        store.delete(LEDGER, "t1:c1", "e1")
    with pytest.raises(ImmutableDocument):
        store.delete(LEDGER, "t1:c1", "e1", if_match=entry["_etag"])
    with pytest.raises(ImmutableDocument):
        store.batch(LEDGER, "t1:c1", [Create(doc("e2")), Upsert(doc("e1", points=999))])
    with pytest.raises(ImmutableDocument):
        store.batch(LEDGER, "t1:c1", [Delete("e1")])
    with pytest.raises(ImmutableDocument):
        store.upsert(LEDGER, doc("brand-new"))  # even an upsert that would only create

    after = store.read(LEDGER, "t1:c1", "e1")
    assert after == entry
    assert store.read(LEDGER, "t1:c1", "e2") is None
    assert store.read(LEDGER, "t1:c1", "brand-new") is None


def test_append_only_refusal_in_batches_is_per_partition(store: DocumentStore) -> None:
    store.create(LEDGER, doc("e1"))
    works = [
        PartitionBatch("t1:c1", [Delete("e1")]),
        PartitionBatch("t1:c2", [Create(doc("e1", pk="t1:c2"))]),
    ]
    store.batches(LEDGER, works)
    assert isinstance(works[0].error, ImmutableDocument) and works[0].result is None
    assert works[1].error is None
    assert store.read(LEDGER, "t1:c1", "e1") is not None


# --- concurrency (both adapters) ---------------------------------------------------------


def test_concurrent_etag_guarded_increments_lose_no_update(store: DocumentStore) -> None:
    store.create(CUSTOMERS, doc("counter", n=0))
    threads, increments = 4, 5
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(increments):
                while True:
                    current = store.read(CUSTOMERS, "t1:c1", "counter")
                    assert current is not None
                    try:
                        store.upsert(CUSTOMERS, dict(current, n=current["n"] + 1), if_match=current["_etag"])
                        break
                    except PreconditionFailed:
                        continue  # lost the race: re-read and retry
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors
    assert (store.read(CUSTOMERS, "t1:c1", "counter") or {})["n"] == threads * increments


# --- batch atomicity: all or nothing on every store (tests/emulators/cosmosdb-server.js fix 3) ---

def test_a_failing_batch_writes_nothing(store: DocumentStore) -> None:
    kept = store.create(CUSTOMERS, {"id": "kept", "pk": "p", "v": 1})
    store.create(CUSTOMERS, {"id": "taken", "pk": "p"})

    with pytest.raises(BatchFailed) as caught:
        store.batch(CUSTOMERS, "p", [
            Create({"id": "new", "pk": "p"}),
            Upsert({"id": "kept", "pk": "p", "v": 2}, if_match=kept["_etag"]),
            Delete("taken"),
            Create({"id": "taken", "pk": "p"}),
            Create({"id": "taken", "pk": "p"}),  # refused: created by the operation before
        ])

    assert caught.value.index == 4
    assert store.read(CUSTOMERS, "p", "new") is None
    assert store.read(CUSTOMERS, "p", "kept") == kept
    assert store.read(CUSTOMERS, "p", "taken") is not None


def test_a_failing_batch_among_batches_rolls_back_alone(store: DocumentStore) -> None:
    store.create(CUSTOMERS, {"id": "taken", "pk": "b"})
    works = [
        PartitionBatch("a", [Create({"id": "x", "pk": "a"})]),
        PartitionBatch("b", [Create({"id": "y", "pk": "b"}), Create({"id": "taken", "pk": "b"})]),
    ]
    store.batches(CUSTOMERS, works)
    assert works[0].error is None and store.read(CUSTOMERS, "a", "x") is not None
    assert isinstance(works[1].error, BatchFailed) and store.read(CUSTOMERS, "b", "y") is None


@pytest.mark.parametrize("failing", range(5))
def test_a_batch_failing_at_any_operation_leaves_the_partition_as_it_was(store: DocumentStore, failing: int) -> None:
    """Every kind of operation before the failing one is undone: a create, a replace, a
    conditional upsert, a delete and a create of what the delete removed."""
    kept = store.create(CUSTOMERS, {"id": "kept", "pk": "p", "v": 1})
    store.create(CUSTOMERS, {"id": "gone", "pk": "p", "v": 1})
    store.create(CUSTOMERS, {"id": "taken", "pk": "p"})
    before = {d["id"]: d for d in store.query(CUSTOMERS, Query(pk="p"))}
    operations = [
        Create({"id": "new", "pk": "p"}),
        Upsert({"id": "kept", "pk": "p", "v": 2}, if_match=kept["_etag"]),
        Delete("gone"),
        Create({"id": "gone", "pk": "p", "v": 2}),
        Upsert({"id": "other", "pk": "p"}),
    ]
    operations.insert(failing, Create({"id": "taken", "pk": "p"}))  # refused: it exists

    with pytest.raises(BatchFailed) as caught:
        store.batch(CUSTOMERS, "p", operations)

    assert caught.value.index == failing
    assert {d["id"]: d for d in store.query(CUSTOMERS, Query(pk="p"))} == before
