"""The SQLite store's per-thread connections end with their threads (shared.store.sqlite)."""

from __future__ import annotations

import gc
import threading

from shared.store.layout import CONTAINERS, CUSTOMERS
from shared.store.sqlite import SqliteDocumentStore


def test_a_threads_connection_is_closed_when_the_thread_ends(tmp_path):
    store = SqliteDocumentStore(tmp_path / "c.db", CONTAINERS, synchronous="NORMAL")
    try:
        store.upsert(CUSTOMERS, {"pk": "t:c1", "id": "c1", "customerId": "c1"})
        before = len(store._all)
        seen: list[object] = []

        def read() -> None:
            assert store.read(CUSTOMERS, "t:c1", "c1") is not None
            seen.append(store._conn())

        for _ in range(20):  # a pool that replaces its threads
            thread = threading.Thread(target=read)
            thread.start()
            thread.join()
        gc.collect()
        assert len(seen) == 20 and len(set(map(id, seen))) >= 1
        assert len(store._all) == before, "every ended thread's connection was closed and forgotten"
        # The store still reads and writes from this thread and from new ones.
        store.upsert(CUSTOMERS, {"pk": "t:c2", "id": "c2", "customerId": "c2"})
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
        assert store.read(CUSTOMERS, "t:c2", "c2") is not None
    finally:
        store.close()


def test_a_lower_cache_applies_to_this_thread_and_to_later_connections(tmp_path):
    store = SqliteDocumentStore(tmp_path / "c.db", CONTAINERS, synchronous="NORMAL")
    try:
        store.set_cache_kib(8 * 1024)
        assert store._conn().execute("PRAGMA cache_size").fetchone()[0] == -8 * 1024
        found: list[int] = []
        thread = threading.Thread(target=lambda: found.append(store._conn().execute("PRAGMA cache_size").fetchone()[0]))
        thread.start()
        thread.join()
        assert found == [-8 * 1024]
    finally:
        store.close()
