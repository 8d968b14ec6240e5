"""The embedded store's WAL is checkpointed beside its writers (shared.store.sqlite_checkpoint)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

from shared.store.layout import CONTAINERS, CUSTOMERS, LEDGER
from shared.store.sqlite import SqliteDocumentStore
from shared.store.sqlite_checkpoint import BACKSTOP_PAGES, WalCheckpointer


def _wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def _rows_in_file_alone(db, copy) -> int:
    shutil.copy(db, copy)
    conn = sqlite3.connect(copy)
    try:
        return conn.execute("SELECT COUNT(*) FROM c_customers").fetchone()[0]
    except sqlite3.DatabaseError:
        return -1  # copied while a checkpoint was writing: look again
    finally:
        conn.close()


def test_committed_writes_reach_the_database_file_without_a_writer_checkpointing(tmp_path):
    store = SqliteDocumentStore(tmp_path / "a.db", CONTAINERS, synchronous="NORMAL")
    try:
        # Writers leave checkpoints to the background thread until the log is this long.
        assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
        runs_before = store._checkpointer.runs
        for n in range(50):
            store.upsert(CUSTOMERS, {"pk": f"t:c{n}", "id": f"c{n}", "customerId": f"c{n}", "tenantId": "t"})
        _wait_for(lambda: store._checkpointer.runs > runs_before)
        # A copy of the database file alone (no -wal beside it) comes to hold every committed
        # document: checkpoints copied them back, and nothing but the background thread ran one.
        _wait_for(lambda: _rows_in_file_alone(tmp_path / "a.db", tmp_path / "copy.db") == 50)
        thread = store._checkpointer._thread
    finally:
        store.close()
    assert thread is None or not thread.is_alive(), "close stops the checkpointer thread"


def test_the_ledgers_merges_are_checkpointed_too(tmp_path):
    store = SqliteDocumentStore(tmp_path / "m.db", CONTAINERS, synchronous="NORMAL", merge_rows=10,
                                merge_threshold=20)
    try:
        for n in range(30):
            store.create(LEDGER, {"pk": "t:c1", "id": f"e{n:03d}", "docType": "entry", "tenantId": "t", "seq": n})
        assert store.merge_recent(LEDGER) > 0
        runs = store._checkpointer.runs
        _wait_for(lambda: store._checkpointer.runs > runs)
    finally:
        store.close()


def test_the_thread_ends_when_idle_and_a_later_nudge_starts_another(tmp_path):
    db = tmp_path / "i.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    checkpointer = WalCheckpointer(str(db), threading.Lock(), lambda c: None, interval=0.05, idle_seconds=0.3)
    try:
        conn.execute("INSERT INTO t VALUES (1)")
        checkpointer.nudge()
        _wait_for(lambda: checkpointer.runs == 1)
        first = checkpointer._thread
        assert first is not None
        _wait_for(lambda: not first.is_alive())
        assert checkpointer._thread is None
        conn.execute("INSERT INTO t VALUES (2)")
        checkpointer.nudge()
        second = checkpointer._thread
        _wait_for(lambda: checkpointer.runs == 2)
    finally:
        checkpointer.close()
        conn.close()
    assert second is not first and not second.is_alive()


def test_nudges_within_an_interval_make_one_checkpoint(tmp_path):
    db = tmp_path / "n.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA synchronous=OFF")  # a test table: commits without waiting on the disk
    checkpointer = WalCheckpointer(str(db), threading.Lock(), lambda c: None, interval=2.0, idle_seconds=5.0)
    try:
        checkpointer.nudge()
        _wait_for(lambda: checkpointer.runs == 1)
        for n in range(20):  # commits keep coming within the interval
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            checkpointer.nudge()
        time.sleep(0.3)
        assert checkpointer.runs == 1, "the pages of an interval's commits are copied in one checkpoint"
        _wait_for(lambda: checkpointer.runs == 2)
    finally:
        checkpointer.close()
        conn.close()


def test_a_closed_checkpointer_ignores_nudges(tmp_path):
    checkpointer = WalCheckpointer(str(tmp_path / "x.db"), threading.Lock(), lambda c: None)
    checkpointer.close()
    checkpointer.nudge()
    assert checkpointer._thread is None and checkpointer.runs == 0


def test_a_store_file_gone_gets_no_new_file_from_the_checkpointer(tmp_path):
    missing = tmp_path / "gone" / "g.db"
    (tmp_path / "gone").mkdir()
    checkpointer = WalCheckpointer(str(missing), threading.Lock(), lambda c: None)
    try:
        checkpointer.nudge()
        thread = checkpointer._thread
        assert thread is not None
        thread.join(10)
        assert not thread.is_alive() and checkpointer.runs == 0
        assert not missing.exists(), "the thread opens the file read-write, never creating it"
    finally:
        checkpointer.close()
