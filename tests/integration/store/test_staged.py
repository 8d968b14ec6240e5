"""A staged container (shared.store.sqlite): appends go to a small recent table, a
bounded merge moves them into the main table, and every read sees both as one.

What must hold whatever the split between the two tables: an id is refused when its
twin is in either table (idempotency markers rest on it), a batch is still
all-or-nothing, reads and the change feed see each document exactly once (also
across a merge, and after a kill -9 in the middle of one), and the merged view is
exactly the sequence appended."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.clock import ManualClock
from shared.errors import BatchFailed, DocumentExists
from shared.ledger.entries import EntryDraft, EntryType, Head
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.store.layout import CONTAINERS, LEDGER
from shared.store.port import ContainerSpec, Create, Filter, PartitionBatch, Query
from shared.store.sqlite import SqliteDocumentStore, table_of, tables_of
from tests.conftest import run_in_threads

THINGS = ContainerSpec("things", append_only=True, change_feed=True, indexed=("seq",), filtered=("kind",),
                       sparse=("seq",))
MAIN, RECENT = tables_of("things", staged=("things",))


def _store(path: Path, **options) -> SqliteDocumentStore:
    options.setdefault("merge_rows", 5)
    options.setdefault("merge_threshold", 1_000_000)  # merges only when a test asks
    return SqliteDocumentStore(path, [THINGS], synchronous="NORMAL", staged=("things",), **options)


def _doc(pk: str, seq: int, kind: str = "entry") -> dict:
    return {"id": f"e-{seq:06d}", "pk": pk, "seq": seq, "kind": kind}


def _counts(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (conn.execute(f"SELECT COUNT(*) FROM {MAIN}").fetchone()[0],
                conn.execute(f"SELECT COUNT(*) FROM {RECENT}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path: Path):
    s = _store(tmp_path / "staged.db")
    yield s
    s.close()


def test_an_id_whose_twin_is_in_the_main_table_is_refused(store, tmp_path: Path) -> None:
    store.create("things", _doc("p", 1))
    assert store.merge_recent() == 1
    assert _counts(tmp_path / "staged.db") == (1, 0)
    with pytest.raises(DocumentExists):
        store.create("things", _doc("p", 1))
    # In a batch: the whole batch is refused, the new document beside it not written.
    with pytest.raises(BatchFailed) as refused:
        store.batch("things", "p", [Create(_doc("p", 2)), Create(_doc("p", 1))])
    assert refused.value.index == 1
    assert store.read("things", "p", "e-000002") is None
    assert _counts(tmp_path / "staged.db") == (1, 0)


def test_an_id_whose_twin_is_in_the_recent_table_is_refused(store) -> None:
    store.create("things", _doc("p", 1))
    with pytest.raises(DocumentExists):
        store.create("things", _doc("p", 1))


def test_one_refused_batch_among_many_leaves_the_others_written(store) -> None:
    store.create("things", _doc("a", 1))
    store.merge_recent()
    batches = [PartitionBatch("a", [Create(_doc("a", 2)), Create(_doc("a", 1))]),  # twin in main
               PartitionBatch("b", [Create(_doc("b", 1)), Create(_doc("b", 2))])]
    store.batches("things", batches)
    assert isinstance(batches[0].error, BatchFailed) and batches[1].error is None
    assert store.read("things", "a", "e-000002") is None
    assert [d["seq"] for d in store.query("things", Query(pk="b", order_by="seq"))] == [1, 2]


def test_reads_across_a_merge_boundary_see_each_document_once(store, tmp_path: Path) -> None:
    for seq in range(1, 8):
        store.create("things", _doc("p", seq, "odd" if seq % 2 else "even"))
    assert store.merge_recent(everything=False) == 0  # below the threshold: no step
    moved = store._merge_step(store._table("things"), at_least=0)  # one step: 5 of 7
    assert moved == (5, 2) and _counts(tmp_path / "staged.db") == (5, 2)
    for seq in range(8, 11):
        store.create("things", _doc("p", seq, "odd" if seq % 2 else "even"))
    assert [d["seq"] for d in store.query("things", Query(pk="p", order_by="seq", descending=True, limit=4))] \
        == [10, 9, 8, 7]
    assert [d["seq"] for d in store.query("things", Query(pk="p", order_by="seq", limit=7))] == list(range(1, 8))
    odd = store.query("things", Query(pk="p", filters=(Filter("kind", "=", "odd"), Filter("seq", "<", 9)),
                                      order_by="seq", descending=True, limit=10))
    assert [d["seq"] for d in odd] == [7, 5, 3, 1]
    assert len(store.query("things", Query(pk="p", limit=100))) == 10
    assert [d["seq"] if d else None for d in store.read_many(
        "things", [("p", "e-000001"), ("p", "e-000010"), ("p", "nope")])] == [1, 10, None]
    assert [c.lsn for c in store.changes("things", 0, 100)] == list(range(1, 11))
    assert [c.doc["seq"] for c in store.changes("things", 4, 3)] == [5, 6, 7]
    assert store.latest_lsn("things") == 10
    store.merge_recent()
    assert _counts(tmp_path / "staged.db") == (10, 0)
    assert store.latest_lsn("things") == 10
    store.create("things", _doc("p", 11))
    assert [c.lsn for c in store.changes("things", 9, 100)] == [10, 11]


def test_the_container_name_is_a_read_only_view(store, tmp_path: Path) -> None:
    store.create("things", _doc("p", 1))
    conn = sqlite3.connect(tmp_path / "staged.db")
    try:
        assert conn.execute(f"SELECT COUNT(*) FROM {table_of('things')}").fetchone()[0] == 1
        with pytest.raises(sqlite3.OperationalError, match="view"):
            conn.execute(f"DELETE FROM {table_of('things')}")
    finally:
        conn.close()
    assert store.merged_table("things") == MAIN and _counts(tmp_path / "staged.db") == (1, 0)


def test_the_writer_merges_past_the_threshold(tmp_path: Path) -> None:
    store = _store(tmp_path / "auto.db", merge_rows=4, merge_threshold=6)
    try:
        for seq in range(1, 21):
            store.create("things", _doc("p", seq))
            assert _counts(tmp_path / "auto.db")[1] < 6 + 1
        assert sum(_counts(tmp_path / "auto.db")) == 20
        assert [d["seq"] for d in store.query("things", Query(pk="p", order_by="seq", limit=100))] \
            == list(range(1, 21))
    finally:
        store.close()


def test_a_merge_leaves_erasure_zeroing_deleted_content(tmp_path: Path) -> None:
    """The merge deletes its moved rows without zeroing them (their content is in the
    main table); a document deleted afterwards on the same connection is zeroed."""
    path = tmp_path / "erase.db"
    store = SqliteDocumentStore(path, [THINGS, ContainerSpec("plain")], synchronous="NORMAL", staged=("things",),
                                merge_rows=5, merge_threshold=1_000_000)
    secret = "ZEROME-" + os.urandom(8).hex()
    try:
        store.upsert("plain", {"id": "k", "pk": "k", "wrapped": secret})
        for seq in range(1, 13):
            store.create("things", _doc("p", seq))
        assert store.merge_recent("things") == 12
        assert store._conn().execute("PRAGMA secure_delete").fetchone()[0] == 1
        store.delete("plain", "k", "k")
        assert store.forget_deleted()
    finally:
        store.close()
    assert secret.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert _counts(path) == (12, 0)


def test_staging_and_unstaging_a_file_keep_every_document(tmp_path: Path) -> None:
    path = tmp_path / "moved.db"
    plain = SqliteDocumentStore(path, [THINGS], synchronous="NORMAL", staged=())
    for seq in range(1, 4):
        plain.create("things", _doc("p", seq))
    plain.close()
    staged = _store(path)
    staged.create("things", _doc("p", 4))
    assert _counts(path) == (3, 1)
    with pytest.raises(DocumentExists):
        staged.create("things", _doc("p", 2))  # its twin came over in the renamed main table
    staged.close()
    plain = SqliteDocumentStore(path, [THINGS], synchronous="NORMAL", staged=())
    try:
        assert [c.lsn for c in plain.changes("things", 0, 10)] == [1, 2, 3, 4]
        plain.create("things", _doc("p", 5))
        assert [d["seq"] for d in plain.query("things", Query(pk="p", order_by="seq", limit=10))] == [1, 2, 3, 4, 5]
    finally:
        plain.close()


def test_only_append_only_containers_may_be_staged(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteDocumentStore(tmp_path / "x.db", [ContainerSpec("mutable")], staged=("mutable",))


# --- the ledger ------------------------------------------------------------------------

def _earn(customer: str, key: str, points: int = 10) -> TransactionRequest:
    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN, points, counts_order=True)], outcome={"points": points})
    return TransactionRequest("t", customer, key, fingerprint_of({"key": key, "points": points}), plan)


def test_a_ledger_duplicate_is_replayed_whichever_table_holds_its_twin(tmp_path: Path) -> None:
    store = SqliteDocumentStore(tmp_path / "l.db", CONTAINERS, synchronous="NORMAL")
    try:
        ledger = Ledger(store, ManualClock())
        first = ledger.append([_earn("c1", "k1"), _earn("c1", "k2")])
        store.merge_recent(LEDGER)
        assert _ledger_counts(store)[1] == 0
        ledger._forget_head(first[0].entries[0]["pk"])  # a new process: nothing cached
        again = ledger.append([_earn("c1", "k1"), _earn("c1", "k3")])
        assert again[0].duplicate and again[0].transaction_id == first[0].transaction_id
        assert not again[1].duplicate and again[1].entries[0]["seq"] == 3
        assert ledger.append([_earn("c1", "k3")])[0].duplicate  # its twin in the recent table
        assert ledger.head("t", "c1").balance == 30
        assert [e["seq"] for e in ledger.entries("t", "c1")] == [3, 2, 1]
    finally:
        store.close()


def _ledger_counts(store: SqliteDocumentStore) -> tuple[int, int]:
    conn = sqlite3.connect(store.path)
    try:
        return tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables_of(LEDGER))  # type: ignore[return-value]
    finally:
        conn.close()


# --- kill -9 in the middle of a merge -----------------------------------------------------

_MERGER = """
import sys
from shared.store.sqlite import SqliteDocumentStore
from shared.store.port import ContainerSpec, Create, PartitionBatch
spec = ContainerSpec("things", append_only=True, change_feed=True, indexed=("seq",), filtered=("kind",),
                     sparse=("seq",))
store = SqliteDocumentStore(sys.argv[1], [spec], synchronous="FULL", staged=("things",),
                            merge_rows=1_000_000, merge_threshold=1_000_000)
rows = int(sys.argv[2])
for low in range(0, rows, 5000):
    store.batches("things", [PartitionBatch(f"p{n % 50}", [Create({"id": f"e{n}", "pk": f"p{n % 50}", "seq": n,
                                                                  "kind": "k" * 200})])
                             for n in range(low, min(rows, low + 5000))])
print("merging", flush=True)
while True:  # merge everything, then write and merge again, until killed
    store.merge_recent()
    store.batches("things", [PartitionBatch("q", [Create({"id": f"x{rows}", "pk": "q", "seq": rows})])])
    rows += 1
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_a_kill_9_in_the_middle_of_a_merge_loses_and_doubles_nothing(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "killed.db"
    rows = 20_000
    child = subprocess.Popen([sys.executable, "-c", _MERGER, str(path), str(rows)], stdout=subprocess.PIPE,
                             cwd=Path(__file__).resolve().parents[3], text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "merging"
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    conn = sqlite3.connect(path)
    try:
        in_main = {r[0] for r in conn.execute(f"SELECT pk || '/' || id FROM {MAIN}")}
        in_recent = {r[0] for r in conn.execute(f"SELECT pk || '/' || id FROM {RECENT}")}
        total = conn.execute(f"SELECT COUNT(*) FROM {MAIN}").fetchone()[0] \
            + conn.execute(f"SELECT COUNT(*) FROM {RECENT}").fetchone()[0]
    finally:
        conn.close()
    assert not in_main & in_recent  # nothing doubled
    assert total == len(in_main | in_recent)
    extra = {d for d in in_main | in_recent if d.startswith("q/")}
    assert {f"p{n % 50}/e{n}" for n in range(rows)} == (in_main | in_recent) - extra  # nothing lost
    assert extra == {f"q/x{n}" for n in range(rows, rows + len(extra))}  # the later writes: a prefix
    store = _store(path)
    try:
        assert len(store.changes("things", 0, 10 * rows)) == total
        store.merge_recent()
        assert _counts(path) == (total, 0)
    finally:
        store.close()


# --- the property ----------------------------------------------------------------------------

_STEP = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(["a", "b", "c"]), st.integers(0, 12)),
    st.tuples(st.just("merge"), st.integers(1, 6), st.just(0)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_STEP, max_size=40))
def test_the_merged_view_equals_the_appended_sequence(tmp_path_factory, steps) -> None:
    path = tmp_path_factory.mktemp("prop") / "p.db"
    store = _store(path, merge_rows=3)
    appended: list[tuple[str, str]] = []
    try:
        for kind, a, b in steps:
            if kind == "merge":
                for _ in range(a):
                    store._merge_step(store._table("things"), at_least=0)
                continue
            doc = {"id": f"d{b}", "pk": a, "seq": b + 1}
            if (a, doc["id"]) in appended:
                with pytest.raises(DocumentExists):
                    store.create("things", doc)
            else:
                store.create("things", doc)
                appended.append((a, doc["id"]))
        assert [(c.doc["pk"], c.doc["id"]) for c in store.changes("things", 0, 1000)] == appended
        assert [c.lsn for c in store.changes("things", 0, 1000)] == list(range(1, len(appended) + 1))
        for pk in "abc":
            mine = sorted((int(i[1:]) + 1 for p, i in appended if p == pk), reverse=True)
            assert [d["seq"] for d in store.query("things", Query(pk=pk, order_by="seq", descending=True,
                                                                  limit=100))] == mine
        assert sum(_counts(path)) == len(appended)
    finally:
        store.close()


def test_a_reader_beside_a_merging_writer_sees_each_document_once(tmp_path: Path) -> None:
    """Two stores on one file (two processes' connections): one appends and merges every few
    writes, the other reads the partition, the change feed and its newest LSN meanwhile.
    Each read is one snapshot: always a gapless prefix of what was appended."""
    path = tmp_path / "shared.db"
    writer = _store(path, merge_rows=7, merge_threshold=10)
    reader = _store(path)
    written = 300
    seen: list[int] = []
    problems: list[str] = []

    finished = threading.Event()

    def write() -> None:
        try:
            for low in range(1, written + 1, 3):
                writer.batch("things", "p", [Create(_doc("p", seq)) for seq in range(low, min(written + 1, low + 3))])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            problems.append(repr(exc))
        finally:
            finished.set()

    def read() -> None:
        while not (finished.is_set() and seen and seen[-1] == written) and not (finished.is_set() and problems):
            seqs = [d["seq"] for d in reader.query("things", Query(pk="p", order_by="seq", limit=10_000))]
            lsns = [c.lsn for c in reader.changes("things", 0, 10_000)]
            if seqs != list(range(1, len(seqs) + 1)) or lsns != list(range(1, len(lsns) + 1)):
                problems.append(f"{seqs[:5]}... {len(seqs)} / {len(lsns)}")
                return
            if reader.latest_lsn("things") < len(lsns):
                problems.append("latest_lsn behind the feed")
            seen.append(len(seqs))

    try:
        run_in_threads(lambda job: job(), [(write,), (read,)], timeout=120)
    finally:
        writer.close()
        reader.close()
    assert not problems, problems
    assert seen[-1] == written and seen == sorted(seen)
    assert _counts(path)[1] < 10 + 3  # merged as it went


def test_read_many_finds_documents_in_either_part_without_reading_the_whole_ledger(sqlite_store) -> None:
    """Keys answered from the main and the recent table alike, in the order asked; and the
    statement seeks each part by its primary key (joined to the view, SQLite materialised
    both parts whole: an import's marker reads grew with the ledger)."""
    from shared.store.port import read_many

    sqlite_store.batches(LEDGER, [PartitionBatch("t:c1", [Create({"id": "old", "pk": "t:c1", "docType": "x"})])])
    sqlite_store.merge_recent(LEDGER)
    sqlite_store.batches(LEDGER, [PartitionBatch("t:c2", [Create({"id": "new", "pk": "t:c2", "docType": "x"})])])
    main, recent = sqlite_store._table(LEDGER).parts
    conn = sqlite_store._conn()
    assert conn.execute(f"SELECT count(*) FROM {main}").fetchone()[0] == 1
    assert conn.execute(f"SELECT count(*) FROM {recent}").fetchone()[0] == 1
    found = read_many(sqlite_store, LEDGER, [("t:c2", "new"), ("t:c1", "nope"), ("t:c1", "old"), ("t:c2", "new")])
    assert [d and d["id"] for d in found] == ["new", None, "old", "new"]
    keys = [("t:c1", "old"), ("t:c2", "new")]
    plan = " ".join(str(row[-1]) for row in conn.execute(
        "EXPLAIN QUERY PLAN WITH k(pk, id) AS (VALUES (?, ?), (?, ?)) "
        + " UNION ALL ".join(f"SELECT t.pk, t.id, t.body, t.etag, t.ts FROM k CROSS JOIN {part} AS t"
                             " ON t.pk = k.pk AND t.id = k.id" for part in (main, recent)),
        [v for key in keys for v in key]))
    assert "MATERIALIZE" not in plan.replace("MATERIALIZE k", "") and f"SCAN {main}" not in plan
