"""Contract guarantees the Cosmos emulator cannot show, held on the embedded store.

* Batch atomicity: cosmosdb-server applies a batch's operations one by one and
  keeps those before a failure, while the real Cosmos DB service (and the SQLite
  store) roll the whole batch back. On Cosmos the guarantee is the service's.
* The change feed: cosmosdb-server's change feed never advances; on Azure the
  Functions Cosmos DB trigger reads it, not our adapter.
* Concurrent writers from threads: SQLite serialises writers with its own lock;
  a create race must have exactly one winner and lose no other write.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from shared.errors import BatchFailed, DocumentExists, PreconditionFailed
from shared.store.layout import CONTAINERS, CUSTOMERS, LEDGER
from shared.store.port import Create, Delete, PartitionBatch, Upsert
from shared.store.sqlite import SqliteDocumentStore


@pytest.fixture
def store(sqlite_store: SqliteDocumentStore) -> Iterator[SqliteDocumentStore]:
    yield sqlite_store


def test_a_failing_batch_writes_nothing(store: SqliteDocumentStore) -> None:
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


def test_a_failing_batch_among_batches_rolls_back_alone(store: SqliteDocumentStore) -> None:
    store.create(CUSTOMERS, {"id": "taken", "pk": "b"})
    works = [
        PartitionBatch("a", [Create({"id": "x", "pk": "a"})]),
        PartitionBatch("b", [Create({"id": "y", "pk": "b"}), Create({"id": "taken", "pk": "b"})]),
    ]
    store.batches(CUSTOMERS, works)
    assert works[0].error is None and store.read(CUSTOMERS, "a", "x") is not None
    assert isinstance(works[1].error, BatchFailed) and store.read(CUSTOMERS, "b", "y") is None


def test_change_feed_lists_writes_in_commit_order_with_rising_lsn(store: SqliteDocumentStore) -> None:
    store.create(LEDGER, {"id": "e1", "pk": "p1", "n": 1})
    store.batch(LEDGER, "p2", [Create({"id": "e2", "pk": "p2", "n": 2}), Create({"id": "e3", "pk": "p2", "n": 3})])
    store.create(CUSTOMERS, {"id": "not-fed", "pk": "p1"})  # customers has no change feed
    store.create(LEDGER, {"id": "e4", "pk": "p1", "n": 4})

    changes = store.changes(LEDGER, after_lsn=0, limit=100)
    assert [c.doc["id"] for c in changes] == ["e1", "e2", "e3", "e4"]
    lsns = [c.lsn for c in changes]
    assert lsns == sorted(lsns) and len(set(lsns)) == len(lsns)
    assert all(c.container == LEDGER and c.doc["_etag"] and c.doc["_ts"] for c in changes)
    assert store.latest_lsn(LEDGER) == lsns[-1]


def test_change_feed_resumes_after_a_checkpoint_and_pages(store: SqliteDocumentStore) -> None:
    for i in range(5):
        store.create(LEDGER, {"id": f"e{i}", "pk": "p", "n": i})
    first = store.changes(LEDGER, after_lsn=0, limit=2)
    rest = store.changes(LEDGER, after_lsn=first[-1].lsn, limit=100)
    assert [c.doc["id"] for c in first + rest] == [f"e{i}" for i in range(5)]
    assert store.changes(LEDGER, after_lsn=rest[-1].lsn, limit=100) == []


def test_change_feed_does_not_show_a_refused_batch(store: SqliteDocumentStore) -> None:
    store.create(LEDGER, {"id": "e1", "pk": "p"})
    with pytest.raises(BatchFailed):
        store.batch(LEDGER, "p", [Create({"id": "e2", "pk": "p"}), Create({"id": "e1", "pk": "p"})])
    assert [c.doc["id"] for c in store.changes(LEDGER, 0, 100)] == ["e1"]


def test_concurrent_creates_of_one_id_have_exactly_one_winner(store: SqliteDocumentStore) -> None:
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def racer(n: int) -> None:
        barrier.wait()
        try:
            store.create(LEDGER, {"id": "seq-1", "pk": "p", "writer": n})
            result = "won"
        except DocumentExists:
            result = "lost"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert len(store.changes(LEDGER, 0, 100)) == 1


def test_concurrent_writers_on_separate_connections_lose_nothing(tmp_path: Path) -> None:
    # Two store objects on one file: two processes' worth of connections.
    path = tmp_path / "shared.db"
    stores = [SqliteDocumentStore(path, CONTAINERS) for _ in range(2)]
    errors: list[BaseException] = []

    def writer(store: SqliteDocumentStore, prefix: str) -> None:
        try:
            for i in range(25):
                store.batch(LEDGER, "p", [Create({"id": f"{prefix}-{i}-a", "pk": "p"}),
                                          Create({"id": f"{prefix}-{i}-b", "pk": "p"})])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(stores[n % 2], f"w{n}")) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors
        changes = stores[0].changes(LEDGER, 0, 1000)
        assert len(changes) == 4 * 25 * 2
        # Each batch's two documents are adjacent in the feed: batches commit whole.
        for a, b in zip(changes[::2], changes[1::2]):
            assert a.doc["id"].endswith("-a") and b.doc["id"] == a.doc["id"][:-1] + "b"
    finally:
        for s in stores:
            s.close()


def test_etag_guard_under_threads_refuses_the_stale_writer(store: SqliteDocumentStore) -> None:
    first = store.create(CUSTOMERS, {"id": "c", "pk": "p", "n": 0})
    barrier = threading.Barrier(6)
    won: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        barrier.wait()
        try:
            store.upsert(CUSTOMERS, {"id": "c", "pk": "p", "n": n}, if_match=first["_etag"])
            with lock:
                won.append(n)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(won) == 1
    assert (store.read(CUSTOMERS, "p", "c") or {})["n"] == won[0]
