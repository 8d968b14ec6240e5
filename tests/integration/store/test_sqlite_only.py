"""Contract guarantees the Cosmos emulator cannot show, held on the embedded store.

* The change feed: cosmosdb-server's change feed never advances; on Azure the
  Functions Cosmos DB trigger reads it, not our adapter.
* Concurrent writers from threads: SQLite serialises writers with its own lock;
  a create race must have exactly one winner and lose no other write.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import BatchFailed, DocumentExists, PreconditionFailed, StoreUnavailable
from shared.store.layout import BY_NAME, CONTAINERS, CUSTOMERS, LEDGER
from shared.store.port import (
    ContainerSpec, Create, Delete, Filter, PartitionBatch, Query, Upsert, batches_async, read_many,
)
from shared.store.sqlite import SqliteDocumentStore, column_of, field_value, table_of, tables_of
from tests.conftest import run_in_threads


@pytest.fixture
def store(sqlite_store: SqliteDocumentStore) -> Iterator[SqliteDocumentStore]:
    yield sqlite_store


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

    run_in_threads(racer, [(n,) for n in range(8)], timeout=30)
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

    run_in_threads(writer, [(stores[n % 2], f"w{n}") for n in range(4)], timeout=60)
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

    run_in_threads(writer, [(n,) for n in range(1, 7)], timeout=30)
    assert len(won) == 1
    assert (store.read(CUSTOMERS, "p", "c") or {})["n"] == won[0]


# --- The layout: one table per container, indexed fields as columns -----------------------------

_KEYS = ("a", "b", "c", "_d", "e1")  # identifiers: a field path may name them
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_LEAVES = (
    st.none() | st.booleans()
    # Signed 64-bit: what SQLite's JSON reads as an integer. Past it (up to 2**64 - 1, which orjson
    # writes) json_extract gives a REAL while field_value keeps the int, which SQLite cannot bind.
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([2**63 - 1, -(2**63), 2**53 + 1, -1, 0])
    | st.floats()  # NaN and infinities too: orjson writes null, json_extract reads NULL
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e16, 0.1])
    | _TEXT
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS) | _TEXT, inner, max_size=4),
    max_leaves=20,
)
_DOCS = st.dictionaries(st.sampled_from(_KEYS) | _TEXT, _VALUES, max_size=6)
_PATHS = st.lists(st.sampled_from(_KEYS), min_size=1, max_size=5).map(".".join)


def _paths_in(value: object, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """The field paths that reach something in ``value`` (objects, arrays and leaves alike)."""
    if isinstance(value, dict) and len(prefix) < 5:
        for key, inner in value.items():
            if key in _KEYS:
                yield ".".join(prefix + (key,))
                yield from _paths_in(inner, prefix + (key,))


def _typed(value: object) -> tuple[type, object]:
    """A value with its type (1 is not 1.0 nor "1"); floats by their bits (-0.0 is not 0.0)."""
    return type(value), value.hex() if isinstance(value, float) else value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), doc=_DOCS)
def test_field_value_is_what_json_extract_reads(data: st.DataObject, doc: dict) -> None:
    # Strings are drawn without NUL: SQLite 3.40's json_extract cuts a string at an escaped
    # NUL ("a\u0000b" reads as "a") while field_value keeps it whole.
    present = sorted(set(_paths_in(doc)))
    path = data.draw(st.sampled_from(present) | _PATHS if present else _PATHS, label="path")
    body = orjson.dumps(doc).decode()
    conn = sqlite3.connect(":memory:")
    try:
        (expected,) = conn.execute(f"SELECT json_extract(?, '$.{path}')", (body,)).fetchone()
    finally:
        conn.close()
    assert _typed(field_value(doc, path)) == _typed(expected)


def _legacy_file(path: Path) -> None:
    """A file in the earlier layout: one ``docs`` table, with its JSON-expression indexes."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE docs (container TEXT NOT NULL, pk TEXT NOT NULL, id TEXT NOT NULL, etag TEXT NOT NULL,
                           ts INTEGER NOT NULL, lsn INTEGER, body TEXT NOT NULL,
                           PRIMARY KEY (container, pk, id)) WITHOUT ROWID;
        CREATE INDEX ix_docs_lsn ON docs(container, lsn) WHERE lsn IS NOT NULL;
    """)
    for spec in CONTAINERS:  # the indexes the earlier store created (it indexed every field), names included
        for name in spec.extracted:
            conn.execute(f"CREATE INDEX ix_{spec.name}_{name.replace('.', '_')} ON docs(pk, json_extract(body, "
                         f"'$.{name}')) WHERE container = '{spec.name}'")
        if "tenantId" in spec.indexed:
            conn.execute(f"CREATE INDEX ix_{spec.name}_x_tenant ON docs(json_extract(body, '$.tenantId'))"
                         f" WHERE container = '{spec.name}'")
    rows = [
        # LSNs as the earlier store left them: per container, with a gap (11 -> 14).
        (LEDGER, "acme:c1", "e-000000000001", "etag-1", 1000, 10,
         {"docType": "entry", "seq": 1, "tenantId": "acme", "signedAmount": 5, "createdAt": "2026-01-01"}),
        (LEDGER, "acme:c1", "e-000000000002", "etag-2", 1001, 11,
         {"docType": "entry", "seq": 2, "tenantId": "acme", "signedAmount": 7, "createdAt": "2026-01-02"}),
        (LEDGER, "acme:c1", "order-o1", "etag-3", 1001, 14,
         {"docType": "orderRecord", "tenantId": "acme", "referenceOrderId": "o1"}),
        (LEDGER, "acme:c2", "e-000000000001", "etag-4", 1002, 12,
         {"docType": "entry", "seq": 1, "tenantId": "acme", "signedAmount": 3, "createdAt": "2026-01-03"}),
        (CUSTOMERS, "acme:c1", "c1", "etag-5", 999, None, {"tenantId": "acme", "updatedAt": "2026-01-01"}),
        ("retired", "x", "x1", "etag-6", 998, None, {"kept": True}),  # a container this build does not know
    ]
    conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(c, pk, i, e, ts, lsn, orjson.dumps(dict(body, id=i, pk=pk)).decode())
                      for c, pk, i, e, ts, lsn, body in rows])
    conn.commit()
    conn.close()


def _schema(path: Path) -> tuple[int, list[tuple[str, str]]]:
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        objects = conn.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()
        return version, objects
    finally:
        conn.close()


def test_a_file_in_the_earlier_layout_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    _legacy_file(path)
    store = SqliteDocumentStore(path, CONTAINERS, synchronous="NORMAL")
    try:
        entry = store.read(LEDGER, "acme:c1", "e-000000000002")
        assert entry is not None and entry["signedAmount"] == 7 and (entry["_etag"], entry["_ts"]) == ("etag-2", 1001)
        assert store.read(CUSTOMERS, "acme:c1", "c1") is not None
        # Queries on indexed fields read the columns the migration filled.
        entries = store.query(LEDGER, Query(pk="acme:c1", filters=(Filter("docType", "=", "entry"),),
                                            order_by="seq", descending=True))
        assert [d["id"] for d in entries] == ["e-000000000002", "e-000000000001"]
        by_tenant = store.query(LEDGER, Query(pk=None, filters=(Filter("tenantId", "=", "acme"),
                                                                  Filter("createdAt", ">=", "2026-01-02")),
                                              order_by="createdAt"))
        assert [(d["pk"], d["id"]) for d in by_tenant] == [("acme:c1", "e-000000000002"),
                                                            ("acme:c2", "e-000000000001")]
        assert [d["id"] for d in store.query(CUSTOMERS, Query(pk=None, filters=(Filter("tenantId", "=", "acme"),)))] \
            == ["c1"]
        # The change feed keeps the LSNs the file had; new writes continue after the highest.
        assert [(c.lsn, c.doc["pk"], c.doc["id"]) for c in store.changes(LEDGER, 0, 100)] == [
            (10, "acme:c1", "e-000000000001"), (11, "acme:c1", "e-000000000002"),
            (12, "acme:c2", "e-000000000001"), (14, "acme:c1", "order-o1")]
        assert store.latest_lsn(LEDGER) == 14
        assert [c.doc["id"] for c in store.changes(LEDGER, 11, 100)] == ["e-000000000001", "order-o1"]
        store.create(LEDGER, {"id": "e-000000000003", "pk": "acme:c1", "docType": "entry", "seq": 3,
                              "tenantId": "acme"})
        assert [(c.lsn, c.doc["id"]) for c in store.changes(LEDGER, 14, 100)] == [(15, "e-000000000003")]
        assert store.latest_lsn(LEDGER) == 15
        with pytest.raises(DocumentExists):  # the migrated rows hold their keys
            store.create(LEDGER, {"id": "e-000000000001", "pk": "acme:c1"})
    finally:
        store.close()

    conn = sqlite3.connect(path)
    try:
        # The unknown container's row is kept aside, not dropped; docs is now the view over every container.
        assert conn.execute("SELECT container, pk, id, etag, lsn FROM docs_unmigrated").fetchall() == [
            ("retired", "x", "x1", "etag-6", None)]
        assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'docs'").fetchone() == ("view",)
        assert conn.execute("SELECT container, pk, id, lsn FROM docs ORDER BY container, pk, id").fetchall() == [
            (CUSTOMERS, "acme:c1", "c1", None),
            (LEDGER, "acme:c1", "e-000000000001", 10), (LEDGER, "acme:c1", "e-000000000002", 11),
            (LEDGER, "acme:c1", "e-000000000003", 15), (LEDGER, "acme:c1", "order-o1", 14),
            (LEDGER, "acme:c2", "e-000000000001", 12)]
        # The columns hold what field_value computes from the body.
        for body, *columns in conn.execute(
                f"SELECT body, {', '.join(column_of(f) for f in BY_NAME[LEDGER].extracted)} FROM c_ledger"):
            doc = orjson.loads(body)
            assert columns == [field_value(doc, f) for f in BY_NAME[LEDGER].extracted]
    finally:
        conn.close()

    # Opening again changes nothing: no migration, no DDL, the same documents.
    before = _schema(path)
    again = SqliteDocumentStore(path, CONTAINERS, synchronous="NORMAL")
    try:
        assert _schema(path) == before
        assert [(c.lsn, c.doc["id"]) for c in again.changes(LEDGER, 0, 100)] == [
            (10, "e-000000000001"), (11, "e-000000000002"), (12, "e-000000000001"), (14, "order-o1"),
            (15, "e-000000000003")]
        assert (again.read(LEDGER, "acme:c1", "e-000000000002") or {}).get("_etag") == "etag-2"
    finally:
        again.close()


def test_a_migrated_file_has_an_index_for_every_indexed_field(tmp_path: Path) -> None:
    # The earlier layout had an index of the same name as a new one (ix_<container>_x_tenant): it must
    # not stand in for the new index, neither dropped with docs nor kept on docs_unmigrated.
    path = tmp_path / "legacy.db"
    _legacy_file(path)  # it holds a container this build does not know: docs becomes docs_unmigrated
    SqliteDocumentStore(path, CONTAINERS, synchronous="NORMAL").close()
    conn = sqlite3.connect(path)
    try:
        for spec in CONTAINERS:
            for table in tables_of(spec.name):  # a staged container: both its tables
                indexed_columns = {info[2] for index in conn.execute(f"PRAGMA index_list({table})")
                                   for info in conn.execute(f"PRAGMA index_info({index[1]})")}
                missing = {column_of(f) for f in spec.indexed} - indexed_columns
                assert not missing, (table, missing)
    finally:
        conn.close()


def test_a_newly_indexed_field_gets_its_column_filled_and_indexed(tmp_path: Path) -> None:
    path = tmp_path / "grown.db"
    docs = [
        {"id": "d1", "pk": "p", "a": 1, "b": 30, "n": {"c": "z"}},
        {"id": "d2", "pk": "p", "a": 2, "b": 10},
        {"id": "d3", "pk": "p", "a": 3, "n": {"c": "x"}},  # no b
        {"id": "d4", "pk": "p", "a": 4, "b": 20.5, "n": {"c": "y"}},
        {"id": "d5", "pk": "q", "a": 5, "b": 40},
    ]
    first = SqliteDocumentStore(path, [ContainerSpec("things", indexed=("a",))], synchronous="NORMAL")
    try:
        first.batch("things", "p", [Create(d) for d in docs if d["pk"] == "p"])
        first.create("things", docs[-1])
    finally:
        first.close()

    grown = SqliteDocumentStore(path, [ContainerSpec("things", indexed=("a", "b", "n.c"))], synchronous="NORMAL")
    try:
        found = grown.query("things", Query(pk="p", filters=(Filter("b", ">=", 10),), order_by="b", descending=True))
        assert [d["id"] for d in found] == ["d1", "d4", "d2"]
        assert [d["id"] for d in grown.query("things", Query(pk="p", filters=(Filter("b", "=", None),)))] == ["d3"]
        assert [d["id"] for d in grown.query("things", Query(pk=None, order_by="n.c"))][-3:] == ["d3", "d4", "d1"]
        grown.create("things", {"id": "d6", "pk": "p", "a": 6, "b": 15})  # written after: filled on write
        assert [d["id"] for d in grown.query("things", Query(pk="p", filters=(Filter("b", "<", 21),),
                                                             order_by="b"))] == ["d2", "d6", "d4"]
    finally:
        grown.close()

    conn = sqlite3.connect(path)
    try:
        indexes = {row[1] for row in conn.execute(f"PRAGMA index_list({table_of('things')})")}
        assert {"ix_things_x_a", f"ix_things_{column_of('b')}", f"ix_things_{column_of('n.c')}"} <= indexes
        assert [tuple(r) for r in conn.execute(f"PRAGMA index_info(ix_things_{column_of('b')})")][-1][2] \
            == column_of("b")
        plan = " ".join(r[3] for r in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT body FROM {table_of('things')} WHERE pk = 'p' AND {column_of('b')} > 1"))
        assert f"ix_things_{column_of('b')}" in plan
        for body, b, nc in conn.execute(f"SELECT body, {column_of('b')}, {column_of('n.c')} FROM c_things"):
            doc = orjson.loads(body)
            assert _typed(b) == _typed(field_value(doc, "b")) and nc == field_value(doc, "n.c")
    finally:
        conn.close()

    # b only filtered from now on: it keeps its column (still written) and loses its index.
    narrowed = SqliteDocumentStore(path, [ContainerSpec("things", indexed=("a", "n.c"), filtered=("b",))],
                                   synchronous="NORMAL")
    try:
        narrowed.create("things", {"id": "d7", "pk": "p", "a": 7, "b": 12})
        assert [d["id"] for d in narrowed.query("things", Query(pk="p", filters=(Filter("b", "<", 21),),
                                                                order_by="b"))] == ["d2", "d7", "d6", "d4"]
    finally:
        narrowed.close()
    conn = sqlite3.connect(path)
    try:
        indexes = {row[1] for row in conn.execute(f"PRAGMA index_list({table_of('things')})")}
        assert f"ix_things_{column_of('b')}" not in indexes and "ix_things_x_a" in indexes
        assert conn.execute(f"SELECT {column_of('b')} FROM c_things WHERE id = 'd7'").fetchone() == (12,)
    finally:
        conn.close()


def _open_at_once_and_write(path: Path) -> None:
    """Two store objects opened on one file at the same moment from two threads, each writing."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    stores: list[SqliteDocumentStore] = []
    lock = threading.Lock()

    def open_and_write(n: int) -> None:
        try:
            barrier.wait()
            store = SqliteDocumentStore(path, CONTAINERS, synchronous="NORMAL")
            with lock:
                stores.append(store)
            for i in range(5):
                store.create(LEDGER, {"id": f"s{n}-{i}", "pk": "p", "docType": "entry", "seq": n * 10 + i})
                store.create(CUSTOMERS, {"id": f"s{n}-{i}", "pk": "p", "tenantId": "acme"})
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    run_in_threads(open_and_write, [(n,) for n in range(2)], timeout=60)
    try:
        assert not errors, errors
        assert len(stores) == 2
        for store in stores:
            assert len(store.changes(LEDGER, 0, 100)) == 10
            assert len(store.query(CUSTOMERS, Query(pk=None, filters=(Filter("tenantId", "=", "acme"),)))) == 10
        assert [c.lsn for c in stores[0].changes(LEDGER, 0, 100)] == list(range(1, 11))
    finally:
        for store in stores:
            store.close()
    kinds = {name: kind for kind, name in _schema(path)[1]}
    assert kinds["docs"] == "view" and kinds[table_of(CUSTOMERS)] == "table"
    # The ledger is staged: its name is the view over its recent and main tables.
    assert kinds[table_of(LEDGER)] == "view" and all(kinds[t] == "table" for t in tables_of(LEDGER))


def test_two_stores_creating_the_schema_at_once_both_work(tmp_path: Path) -> None:
    # The schema is made in one BEGIN IMMEDIATE transaction: the second store waits, then finds it made.
    for attempt in range(5):
        path = tmp_path / f"empty-{attempt}.db"
        conn = sqlite3.connect(path)  # an empty file, already in WAL mode (see the test below)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
        _open_at_once_and_write(path)


def test_two_stores_opening_one_brand_new_file_at_once_both_work(tmp_path: Path) -> None:
    for attempt in range(40):
        _open_at_once_and_write(tmp_path / f"new-{attempt}.db")


def test_a_field_extracted_again_after_a_time_without_is_filled_anew(tmp_path: Path) -> None:
    # While "b" is not extracted its column stays but is not written; extracted again,
    # the column must be refilled from the JSON, not trusted.
    path = tmp_path / "again.db"
    with_b, without_b = [ContainerSpec("things", indexed=("a", "b"))], [ContainerSpec("things", indexed=("a",))]
    store = SqliteDocumentStore(path, with_b, synchronous="NORMAL")
    store.create("things", {"id": "d1", "pk": "p", "a": 1, "b": 1})
    store.close()
    store = SqliteDocumentStore(path, without_b, synchronous="NORMAL")
    store.upsert("things", {"id": "d1", "pk": "p", "a": 1, "b": 9})
    store.create("things", {"id": "d2", "pk": "p", "a": 2, "b": 2})
    store.close()
    store = SqliteDocumentStore(path, with_b, synchronous="NORMAL")
    try:
        def by_b(value: int) -> list[str]:
            return [d["id"] for d in store.query("things", Query(pk="p", filters=(Filter("b", "=", value),)))]

        assert (by_b(1), by_b(2), by_b(9)) == ([], ["d2"], ["d1"])
    finally:
        store.close()


def test_an_integer_past_64_bits_is_compared_as_json_extract_reads_it(store: SqliteDocumentStore) -> None:
    # json_extract reads such a number as a REAL; an int that size would not even bind.
    big = 2 ** 63 + 5
    store.create(LEDGER, {"id": "big", "pk": "p", "seq": big})
    assert [d["id"] for d in store.query(LEDGER, Query(pk="p", filters=(Filter("seq", ">", 2 ** 62),)))] == ["big"]
    assert field_value({"seq": big}, "seq") == float(big)


def test_read_many_past_one_statements_variables_reads_every_key_on_the_index(store: SqliteDocumentStore) -> None:
    store._max_variables = 6  # three keys a statement: the chunks and their joint transaction are used
    for n in range(8):
        store.create(CUSTOMERS, {"id": f"c{n}", "pk": f"t:c{n}", "n": n})
    keys = [(f"t:c{n}", f"c{n}") for n in (7, 0, 3, 9, 5, 1, 2)]
    statements: list[str] = []
    conn = store._conn()
    conn.set_trace_callback(statements.append)
    try:
        assert [d and d["n"] for d in read_many(store, CUSTOMERS, keys)] == [7, 0, 3, None, 5, 1, 2]
    finally:
        conn.set_trace_callback(None)
    selects = [sql for sql in statements if "SELECT" in sql]
    assert len(selects) == 3
    # The statement as run (values inlined by the trace) is planned as a probe per key, not a table scan.
    plan = conn.execute("EXPLAIN QUERY PLAN " + selects[0]).fetchall()
    assert any("SEARCH t USING INDEX" in row[-1] for row in plan) and not any(
        row[-1].startswith("SCAN c_customers") for row in plan), plan


# --- Async callers: the API's single-order route awaits the group commit ---------------------


def test_async_batches_commit_like_sync_ones_and_report_refusals_per_batch(store: SqliteDocumentStore) -> None:
    store.create(CUSTOMERS, {"id": "taken", "pk": "b"})
    works = [PartitionBatch("a", [Create({"id": "x", "pk": "a"})]),
             PartitionBatch("b", [Create({"id": "taken", "pk": "b"})])]
    asyncio.run(batches_async(store, CUSTOMERS, works))
    assert works[0].error is None and works[0].result is not None and works[0].result[0]["_etag"]
    assert isinstance(works[1].error, DocumentExists)
    assert store.read(CUSTOMERS, "a", "x") is not None


def test_many_async_callers_beside_sync_writers_lose_nothing(store: SqliteDocumentStore) -> None:
    async def writers() -> None:
        await asyncio.gather(*(batches_async(store, LEDGER, [PartitionBatch(f"p{n}", [
            Create({"id": "e", "pk": f"p{n}"})])]) for n in range(200)))

    sync = threading.Thread(target=lambda: [store.create(LEDGER, {"id": "s", "pk": f"q{n}"}) for n in range(50)])
    sync.start()
    asyncio.run(writers())
    sync.join(30)
    changes = store.changes(LEDGER, 0, 1000)
    assert len(changes) == 250 and len({c.lsn for c in changes}) == 250


def test_an_async_caller_waiting_when_the_store_closes_gets_an_error(tmp_path: Path) -> None:
    closing = SqliteDocumentStore(tmp_path / "closing.db", CONTAINERS)
    closing.close()
    with pytest.raises(StoreUnavailable):
        asyncio.run(batches_async(closing, CUSTOMERS, [PartitionBatch("a", [Create({"id": "x", "pk": "a"})])]))


def test_a_sparse_field_is_indexed_for_the_documents_that_have_it_and_a_full_index_is_replaced(
        tmp_path: Path) -> None:
    path = tmp_path / "sparse.db"
    full = [ContainerSpec("things", indexed=("n",))]
    sparse = [ContainerSpec("things", indexed=("n",), sparse=("n",))]
    store = SqliteDocumentStore(path, full, synchronous="NORMAL")
    store.create("things", {"id": "a", "pk": "p", "n": 2})
    store.close()
    store = SqliteDocumentStore(path, sparse, synchronous="NORMAL")
    try:
        store.create("things", {"id": "b", "pk": "p"})  # no n: kept out of n's index
        store.create("things", {"id": "c", "pk": "p", "n": 1})
        conn = store._conn()
        indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"
                                    " AND tbl_name = 'c_things' AND name LIKE 'ix_%'").fetchall())
        assert list(indexes) == ["ix_things_x_n_present"]
        assert "WHERE x_n IS NOT NULL" in indexes["ix_things_x_n_present"]
        held = conn.execute("SELECT COUNT(*) FROM c_things INDEXED BY ix_things_x_n_present WHERE x_n > -1")
        assert held.fetchone() == (2,)
        ordered = store.query("things", Query(pk="p", filters=(Filter("n", ">", 0),), order_by="n"))
        assert [d["id"] for d in ordered] == ["c", "a"]
        # Without the comparison the answer is the same (the documents without n come first, as NULLs sort).
        assert [d["id"] for d in store.query("things", Query(pk="p", order_by="n"))] == ["b", "c", "a"]
    finally:
        store.close()
    with pytest.raises(ValueError, match="sparse"):
        ContainerSpec("things", indexed=("n",), sparse=("m",))


def test_a_new_file_gets_16_kib_pages_and_a_file_with_other_pages_keeps_working(tmp_path: Path) -> None:
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import PAGE_BYTES

    fresh = SqliteDocumentStore(tmp_path / "new.db", CONTAINERS, synchronous="NORMAL")
    try:
        assert fresh._conn().execute("PRAGMA page_size").fetchone() == (PAGE_BYTES,) == (16384,)
    finally:
        fresh.close()
    older = tmp_path / "older.db"
    made_before = sqlite3.connect(older)
    made_before.execute("PRAGMA page_size=4096")
    made_before.execute("CREATE TABLE t (a)")
    made_before.close()
    store = SqliteDocumentStore(older, CONTAINERS, synchronous="NORMAL")
    try:
        store.create(CUSTOMERS, {"id": "c1", "pk": "t:c1"})
        assert store.read(CUSTOMERS, "t:c1", "c1") is not None
        assert store._conn().execute("PRAGMA page_size").fetchone() == (4096,)
    finally:
        store.close()


def test_a_waiter_whose_event_loop_closed_stops_neither_the_group_nor_the_committer(tmp_path: Path) -> None:
    """An async caller that went away (its event loop closed, as a test client's or a
    stopping server's does while a fire-and-forget confirmation is in flight) must not
    take the group commit with it: the other jobs of its group are still woken, and the
    committer thread still leads later groups (it used to die on 'Event loop is closed',
    and every later async write waited for ever)."""
    store = SqliteDocumentStore(tmp_path / "s.db", CONTAINERS, busy_timeout_ms=20_000)
    blocker = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the committer waits on it
        gone = asyncio.new_event_loop()
        task = gone.create_task(batches_async(store, LEDGER, [PartitionBatch("p", [Create({"id": "gone", "pk": "p"})])]))
        gone.run_until_complete(asyncio.sleep(0.05))  # the job is queued; its caller awaits
        assert not task.done()
        task.cancel()
        gone.run_until_complete(asyncio.sleep(0))
        gone.close()

        woken: list[str] = []
        waiter = threading.Thread(target=lambda: asyncio.run(_write_and_note(store, "kept", woken)))
        waiter.start()
        threading.Event().wait(0.1)
        blocker.execute("COMMIT")  # the committer goes on: 'gone' first, its loop closed
        waiter.join(timeout=15)
        assert woken == ["kept"], "a write queued beside a departed waiter was never woken"

        later: list[str] = []
        after = threading.Thread(target=lambda: asyncio.run(_write_and_note(store, "later", later)))
        after.start()
        after.join(timeout=15)
        assert later == ["later"], "the committer thread died with the departed waiter"
        assert store.read(LEDGER, "p", "gone") is not None  # its write itself was committed
    finally:
        blocker.close()
        store.close()


async def _write_and_note(store: SqliteDocumentStore, doc_id: str, woken: list[str]) -> None:
    await batches_async(store, LEDGER, [PartitionBatch("p", [Create({"id": doc_id, "pk": "p"})])])
    woken.append(doc_id)
