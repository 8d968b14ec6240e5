"""The embedded document store: one SQLite file in WAL mode.

The default store of the local platform and of the tests. It keeps the port's
contract (``shared.store.port``) with SQLite's own guarantees:

* a partition batch is a SAVEPOINT inside one ``BEGIN IMMEDIATE`` transaction,
  so it is all-or-nothing;
* **group commit**: concurrent writers of one process (API threads, the
  consumers, the projector) hand their batches to whichever of them is committing; it writes
  everything pending in one transaction, so many writers share one fsync. A
  caller returns only once the transaction carrying its batches committed
  (an async caller, ``batches_async``, awaits a committer thread instead);
* a call of many batches is first tried as a few multi-row statements inside one
  savepoint; on any refusal that is undone and the batches are applied one by
  one, so the outcome is the same as one savepoint per batch. Documents are
  rendered (JSON, column values) by the caller before the transaction, so the
  write lock, which the platform's other processes wait for, is held only for
  the SQL;
* durability is on: ``synchronous=FULL`` by default (``NORMAL`` may be chosen,
  which in WAL mode survives a process kill but not a power cut); never ``OFF``;
* checkpoints (copying the WAL back into the database file) run on a thread
  beside the writers (``shared.store.sqlite_checkpoint``), not inside a writer's
  COMMIT; a writer checkpoints itself only past 256 MiB of log;
* the change feed: every write to a container with a feed stamps the document
  with the next log sequence number (``lsn``) of that container, inside the
  same transaction. Writers are serialised by SQLite's write lock, so numbers
  follow commit order and a poller that reads ``lsn > checkpoint`` never skips
  a document. As in Cosmos DB, a rewritten document appears once, with its
  newest version (the ledger is append-only, so each entry appears once).

Layout: one table per container (``c_<name>``), the document as JSON text in
``body`` and, for each field the container's spec indexes or filters on, a
column holding the value ``json_extract`` would read (``x_<field>``), filled
from the dict on write; an indexed field also gets an index on ``(pk, column)``.
Filters and ORDER BY on those fields read the column; other fields are read
from the JSON. ``extracted_fields`` records which fields each table's columns
hold, so a field extracted again after a time without is filled anew. Earlier versions kept one
``docs`` table with JSON-expression indexes, which parsed every document once
per index on insert (six times for a ledger entry); such a file is migrated on
open, and ``docs`` remains as a read-only view over every container.

Each thread gets its own connection; readers run beside the writer.

Staged containers (``shared.store.layout.STAGED``: the ledger), so appends cost the
same at 10 M documents as at 10k: the documents are in two tables, ``c_<name>_main``
and a small ``c_<name>_recent`` that every write goes to, and ``c_<name>`` is a
``UNION ALL`` view of both that every reader names (a writer naming it is refused by
SQLite). The guarantees are the single table's:

* ``(pk, id)`` is unique across both: a trigger refuses an insert into the recent
  table whose id the main table holds, with the constraint error a duplicate key
  gives, so a Create of an existing id is ``DocumentExists`` wherever its twin is;
* a merge step (``merge_recent``; run by the writer that commits past
  ``merge_threshold`` recent rows) moves at most ``merge_rows`` of the oldest recent
  rows into the main table and deletes them from the recent one in one transaction:
  after a crash each row is in exactly one table, with its etag, ts and lsn;
* every read is one statement (the view, or a compound SELECT merging both tables'
  indexes for an ordered query and the change feed), so it sees one snapshot: a
  merge never shows a document twice or hides it;
* only append-only containers without a TTL rule are staged: no update or delete
  has to find its row in either table.

Time to live, as Cosmos DB keeps it (``shared.store.layout.TtlPolicy``): a write
to a container with a TTL rule stamps the document's ``ttl`` (seconds after the
write, -1 never), kept in an ``x_ttl`` column. A document past ``ts + ttl`` is
hidden from every read and query at once, and ``sweep_expired`` deletes such
documents in bounded rounds (the local platform runs it periodically), as Cosmos
DB's background TTL deletion does. ``ttl`` is the store's own property: it is
never returned to callers, and every write stamps it anew from the policy.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import sqlite3
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson

from shared.errors import (
    BatchFailed,
    BatchSkipped,
    DocumentExists,
    ImmutableDocument,
    PreconditionFailed,
    StoreError,
    StoreUnavailable,
)
from shared.store.port import (
    one_batch,
    MAX_BATCH_OPERATIONS,
    Change,
    ContainerSpec,
    Create,
    Delete,
    Document,
    Filter,
    JsonScan,
    LineScan,
    Operation,
    PartitionBatch,
    Query,
    Upsert,
    check_field_path,
)
from shared.private_files import private_sqlite
from shared.store.layout import DEFAULT_TTL, STAGED, TtlPolicy
from shared.store.sqlite_checkpoint import BACKSTOP_PAGES, WalCheckpointer
from shared.store.sqlite_lock import use_wal, write_transaction
from shared.telemetry.logs import fields

_log = logging.getLogger("accrue.store")

LEGACY_TABLE = "docs"
EXTRACTED_TABLE = "extracted_fields"

# SQLite's default SQLITE_MAX_VARIABLE_NUMBER (since 3.32) is 32766; stay well under it.
_MAX_VARIABLES = 30_000
# A new file's page size (SQLite's default is 4 KiB). An ingest commit touches index
# pages of hundreds of customers; with 16 KiB pages the trees are shallower and a
# commit writes a quarter as many pages (one WAL frame and a system call each):
# store-alone appends took about 40% less CPU, batches end to end ~17% faster
# (README, performance). A file made with other pages keeps them (VACUUM converts).
PAGE_BYTES = 16384
# Page cache per connection, in KiB (each writing thread has its own, and it stays full
# once filled: a worker process's memory grows by this much per such thread). Reads
# come through mmap; the cache holds the pages a commit changes. Store appends on a
# 1 M-document file, back to back at load 1.1: 5,275/s (147 µs CPU each) at 32 MiB,
# 5,360/s (144 µs) at 64 MiB (the earlier value), so half the memory for the same speed.
CACHE_KIB = 32 * 1024
# How long ``forget_deleted`` retries a checkpoint refused because another one was running.
CHECKPOINT_RETRY_SECONDS = 5.0
MMAP_BYTES = 1 << 30
# A staged container (the ledger: ``shared.store.layout.STAGED``) is two tables: appends go
# to a small recent table, whose b-trees stay in the cache whatever the container's size,
# and a merge moves its oldest rows into the main table in bounded steps. At 1 M ledger
# documents one table took 0.26x the appends/s of 10k (issue 22, target 2): each commit
# dirtied about one page per customer per index of a tree too large to cache.
MAIN_SUFFIX = "_main"
RECENT_SUFFIX = "_recent"
# Rows moved per merge transaction: it holds the write lock for one step (~0.2-0.5 s on 2 shared
# cores). 20k rows cost 16.6 µs CPU each at 1 M documents, 40k 13.1: each step writes each
# customer's main-table leaves once, so bigger steps share those pages among more rows.
MERGE_ROWS = 40_000
# The writer that commits past this many recent rows runs one merge step afterwards.
MERGE_THRESHOLD = 60_000
_INT64 = 2 ** 63
_SQL_OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
# Columns every container table has; a filter or ORDER BY on these reads the column.
_ROW_COLUMNS = ("pk", "id")


def _json_path(field: str) -> str:
    return "$." + check_field_path(field)


def _dumps(doc: Document) -> str:
    return orjson.dumps(doc).decode()


def table_of(container: str) -> str:
    """The SQLite table of a container (``c_<name>``); for a staged container the read
    view over its two tables (``tables_of``)."""
    return "c_" + check_field_path(container)


def tables_of(container: str, staged: Iterable[str] = STAGED) -> tuple[str, ...]:
    """The tables holding a container's documents: its table, or for a staged
    container its main and recent tables (``table_of`` then names their read view).
    For code reading or loading a file in SQL (benchmarks, tests)."""
    name = table_of(container)
    return (name + MAIN_SUFFIX, name + RECENT_SUFFIX) if container in set(staged) else (name,)


def column_of(field_name: str) -> str:
    """The column holding an indexed field's value (``x_<field>``, dots as ``__``)."""
    return "x_" + check_field_path(field_name).replace(".", "__")


def field_value(doc: Document, field_name: str) -> Any:
    """What ``json_extract(body, '$.<field>')`` would return for ``doc``, computed
    from the dict: the extracted columns compare exactly like the JSON did."""
    value: Any = doc
    for part in field_name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return column_value(value)


def column_value(value: Any) -> Any:
    """A JSON value as ``json_extract`` returns it (see ``field_value``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        # Past SQLite's signed 64 bits json_extract reads a REAL (and the int would not bind).
        return value if -_INT64 <= value < _INT64 else float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN/inf: orjson writes null
    return orjson.dumps(value).decode()  # an object or array: its JSON text, as json_extract gives


@dataclass
class _Job:
    """One caller's batches, waiting for a group commit."""

    spec: ContainerSpec
    batches: list[PartitionBatch]
    done: bool = False
    error: BaseException | None = None
    chained_failures: set[str] = field(default_factory=set)
    # Called (from the committing thread) once done: how an async caller is woken.
    on_done: Callable[[], None] | None = None
    # Documents rendered by the caller before the transaction, by id() of their operation.
    rendered: dict[int, _Rendered] = field(default_factory=dict)


# A document without _etag/_ts, its JSON text and its extracted column values.
_Rendered = tuple[Document, str, tuple[Any, ...]]


@dataclass(frozen=True)
class _Table:
    """A container's table and its prepared statements."""

    spec: ContainerSpec
    # What readers name: the table, or for a staged container the view over its two tables.
    name: str
    columns: tuple[str, ...]  # extracted columns, in ContainerSpec.extracted order
    insert_row: str  # "(?, ?, ...)" for one row
    insert_head: str
    upsert_tail: str
    update_guarded: str
    # The tables holding the documents: (name,), or for a staged container (main, recent).
    parts: tuple[str, ...] = ()

    @property
    def staged(self) -> bool:
        return len(self.parts) > 1

    @property
    def row_columns(self) -> tuple[str, ...]:
        return ("pk", "id", "etag", "ts", "lsn", "body", *self.columns, *self.line_columns)

    @property
    def line_columns(self) -> tuple[str, ...]:
        return _line_columns(self.spec)

    @classmethod
    def of(cls, spec: ContainerSpec, staged: bool = False) -> "_Table":
        name = table_of(spec.name)
        parts = tables_of(spec.name, (spec.name,) if staged else ())
        # Writes go to the last part: the recent table of a staged container.
        written = parts[-1]
        columns = tuple(column_of(f) for f in spec.extracted)
        names = ("pk", "id", "etag", "ts", "lsn", "body", *columns, *_line_columns(spec))
        assigned = ", ".join(f"{c} = excluded.{c}" for c in names[2:])
        return cls(
            spec=spec, name=name, columns=columns,
            insert_row="(" + ", ".join("?" for _ in names) + ")",
            insert_head=f"INSERT INTO {written} ({', '.join(names)}) VALUES ",
            upsert_tail=f" ON CONFLICT (pk, id) DO UPDATE SET {assigned}",
            update_guarded=(f"UPDATE {written} SET " + ", ".join(f"{c} = ?" for c in names[2:])
                            + " WHERE pk = ? AND id = ? AND etag = ?"),
            parts=parts,
        )

    def ddl(self) -> list[str]:
        """The tables (each part), then their indexes."""
        extracted = "".join(f", {c}" for c in self.columns)  # no type: values keep their JSON type
        extracted += "".join(f", {c} TEXT" for c in self.line_columns)
        statements = [
            f"CREATE TABLE IF NOT EXISTS {part} (pk TEXT NOT NULL, id TEXT NOT NULL, etag TEXT NOT NULL,"
            f" ts INTEGER NOT NULL, lsn INTEGER, body TEXT NOT NULL{extracted}, PRIMARY KEY (pk, id))"
            for part in self.parts
        ]
        statements += [f"CREATE INDEX IF NOT EXISTS {name} ON {part}{definition}"
                       for part in self.parts for name, definition in self.indexes(part).items()]
        return statements

    def indexes(self, part: str | None = None) -> dict[str, str]:
        """Index name -> its columns (and condition), of one part (the first by default).
        The main part keeps the unstaged table's index names, so staging a file renames
        its table and keeps its indexes."""
        part = part or self.parts[0]
        prefix = f"ix_{self.spec.name}" + (RECENT_SUFFIX if self.staged and part == self.parts[-1] else "")
        found = {}
        if self.spec.change_feed:
            found[f"{prefix}_lsn"] = "(lsn) WHERE lsn IS NOT NULL"
        for field_name, column in zip(self.spec.indexed, self.columns):
            if field_name == "tenantId":
                # Every partition key starts with its tenant: (pk, tenantId) would add nothing,
                # while queries across a tenant's partitions need the tenant alone.
                found[f"{prefix}_x_tenant"] = f"({column})"
            elif field_name in self.spec.sparse:
                # Another name than the full index's: a file opened with the full one
                # drops it (not kept) and builds this one.
                found[f"{prefix}_{column}_present"] = f"(pk, {column}) WHERE {column} IS NOT NULL"
            else:
                found[f"{prefix}_{column}"] = f"(pk, {column})"
        return found

    def view_sql(self) -> str:
        """The staged container's read view: both parts, the columns named (a migrated
        main table may hold them in another order, or keep a column no longer extracted)."""
        assert self.staged
        listed = ", ".join(self.row_columns)
        return f"CREATE VIEW {self.name} AS " + " UNION ALL ".join(
            f"SELECT {listed} FROM {part}" for part in self.parts)

    def trigger_sql(self) -> str:
        """Refuse a write to the recent table of an id the main table holds, as the
        primary key refuses one the recent table holds: ``(pk, id)`` stays unique
        across both parts (idempotency markers rest on it). RAISE(ABORT) is a
        constraint error, so writers see the same IntegrityError as for a duplicate
        key and refuse the operation as ``DocumentExists``."""
        main, recent = self.parts
        return (f"CREATE TRIGGER IF NOT EXISTS tr_{self.spec.name}_unique BEFORE INSERT ON {recent}"
                f" WHEN EXISTS (SELECT 1 FROM {main} WHERE pk = NEW.pk AND id = NEW.id)"
                f" BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: {main}.pk, {main}.id'); END")

    def expression(self, field_name: str) -> str:
        """SQL for a field in a filter or ORDER BY: its column, else read from the JSON body."""
        if field_name in _ROW_COLUMNS:
            return field_name
        if field_name in self.spec.extracted:
            return column_of(field_name)
        return f"json_extract(body, '{_json_path(field_name)}')"

    def render(self, doc: Document) -> _Rendered:
        """What a write stores of ``doc``, but for its ETag and LSN (known at commit)."""
        if "_etag" in doc or "_ts" in doc:
            doc = {k: v for k, v in doc.items() if k not in ("_etag", "_ts")}
        get = doc.get
        values = tuple(
            field_value(doc, f) if "." in f else (v if (v := get(f)) is None or type(v) is str else column_value(v))
            for f in self.spec.extracted)
        if self.spec.line is not None:
            values += (self.spec.line.line_of(doc),)
        return doc, _dumps(doc), values


class SqliteDocumentStore:
    """The document-store port over one SQLite file."""

    # Point reads come from a local file in tens of µs: callers on an event loop may
    # make them inline (shared.store.port.inline_reads).
    inline_reads = True

    def __init__(
        self,
        path: str | Path,
        containers: Iterable[ContainerSpec],
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        *,
        ttl: TtlPolicy = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        staged: Iterable[str] = STAGED,
        merge_rows: int = MERGE_ROWS,
        merge_threshold: int = MERGE_THRESHOLD,
    ) -> None:
        """``ttl``: the expiry rules (``DEFAULT_TTL`` with a deployment's overrides);
        ``clock``: epoch seconds, for ``_ts`` and expiry (tests move it);
        ``staged``: the append-only containers kept as a recent and a main table
        (``merge_rows`` moved per merge step, one step run by the writer that
        commits past ``merge_threshold`` recent rows)."""
        if merge_rows < 1 or merge_threshold < 1:
            raise ValueError("merge_rows and merge_threshold must be positive")
        self._merge_rows = merge_rows
        self._merge_threshold = merge_threshold
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA: durability stays on")
        self.path = str(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = busy_timeout_ms
        self._ttl = ttl
        self._clock = clock
        # A container with a TTL rule keeps ``ttl`` in a column: reads compare it
        # without parsing the JSON, and the sweep finds expired rows by it.
        self._specs = {spec.name: (replace(spec, filtered=spec.filtered + ("ttl",))
                                   if ttl.applies_to(spec.name) and "ttl" not in spec.extracted else spec)
                       for spec in containers}
        self._expiring = frozenset(name for name in self._specs if ttl.applies_to(name))
        staged = frozenset(staged) & set(self._specs)
        for name in staged:
            # Only inserts reach the recent table: a replace or delete would have to find
            # its row in either part, and the TTL sweep delete from both.
            if not self._specs[name].append_only or name in self._expiring:
                raise ValueError(f"container {name!r} can be staged only if append-only and never expiring")
        self._tables = {name: _Table.of(spec, name in staged) for name, spec in self._specs.items()}
        # Recent rows written since the last count, per staged container (this process's
        # writes only: another process's writer counts its own, and a merge step recounts).
        self._recent_rows: dict[str, int] = {}
        self._local = threading.local()
        self._cache_kib = CACHE_KIB  # per connection; set_cache_kib lowers it in a process that mostly reads
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._group = threading.Condition()
        self._pending: list[_Job] = []
        self._committing = False
        self._committer: threading.Thread | None = None
        self._closed = False
        self._checkpoint_lock = threading.Lock()
        # Checkpoints run beside the writers, not inside their commits (shared.store.sqlite_checkpoint).
        self._checkpointer = WalCheckpointer(self.path, self._checkpoint_lock, self._configure_checkpointer)
        # ETags need only differ on every write: a random prefix per store and a counter.
        self._etag_prefix = uuid.uuid4().hex[:12]
        self._etags = itertools.count(1)
        # Owner only, -wal and -shm too (they take the database file's mode): the file
        # holds sealed personal data and wrapped data keys (shared.private_files).
        private_sqlite(self.path)
        conn = self._conn()
        # Bound parameters per statement: SQLite before 3.32 allows only 999.
        self._max_variables = min(_MAX_VARIABLES, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        self._create_schema(conn)
        for table in self._tables.values():
            if table.staged:
                self._recent_rows[table.spec.name] = conn.execute(
                    f"SELECT COUNT(*) FROM {table.parts[-1]}").fetchone()[0]

    # --- schema --------------------------------------------------------------------

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        """One table per container, with a column (and an index) per indexed field.

        Run in one write transaction, so two processes opening one file at once
        do not interleave. A file in the earlier layout (one ``docs`` table with
        JSON-expression indexes) is migrated in the same transaction; a field
        newly indexed gets its column filled from the stored JSON."""
        with write_transaction(conn, self._busy_timeout_ms):
            existing = {name: kind for name, kind in conn.execute("SELECT name, type FROM sqlite_master")}
            if existing.get(LEGACY_TABLE) == "table":
                # Its JSON-expression indexes go first: one of them has the name of a new index.
                _drop_indexes(conn, LEGACY_TABLE, keep=set())
            # Which fields each table's columns hold: a field extracted again after a
            # time without (its column kept but no longer written) is filled anew.
            conn.execute(f"CREATE TABLE IF NOT EXISTS {EXTRACTED_TABLE} (tbl TEXT NOT NULL, field TEXT NOT NULL,"
                         " PRIMARY KEY (tbl, field))")
            filled = set(conn.execute(f"SELECT tbl, field FROM {EXTRACTED_TABLE}").fetchall())
            for table in self._tables.values():
                self._stage_or_unstage(conn, table, existing)
                parts = len(table.parts)
                for statement in table.ddl()[:parts]:
                    conn.execute(statement)
                for part in table.parts:
                    _add_columns(conn, part, table)
                for field_name, column in zip(table.spec.extracted, table.columns):
                    if (table.name, field_name) not in filled:
                        for part in table.parts:
                            conn.execute(f"UPDATE {part} SET {column} = json_extract(body, ?)",
                                         (_json_path(field_name),))
                        conn.execute(f"INSERT INTO {EXTRACTED_TABLE} (tbl, field) VALUES (?, ?)",
                                     (table.name, field_name))
                for stale in {f for t, f in filled if t == table.name} - set(table.spec.extracted):
                    conn.execute(f"DELETE FROM {EXTRACTED_TABLE} WHERE tbl = ? AND field = ?", (table.name, stale))
                for statement in table.ddl()[parts:]:
                    conn.execute(statement)
                for part in table.parts:
                    # An index of a field no longer indexed (now only filtered, or dropped) goes.
                    _drop_indexes(conn, part, keep=set(table.indexes(part)))
                if table.staged:
                    conn.execute(table.trigger_sql())
                    view = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?",
                                        (table.name,)).fetchone()
                    if view is None or view[0] != table.view_sql():
                        conn.execute(f"DROP VIEW IF EXISTS {table.name}")
                        conn.execute(table.view_sql())
            if existing.get(LEGACY_TABLE) == "table":
                self._migrate_legacy(conn)
            self._create_view(conn)

    def _stage_or_unstage(self, conn: sqlite3.Connection, table: _Table, existing: dict[str, str]) -> None:
        """A staged container's table of an earlier (unstaged) file becomes its main
        part; a staged file opened unstaged gets its recent rows merged and its main
        part back under the container's table name. Both keep every document, in the
        schema transaction. ``docs`` goes first (recreated after): SQLite checks
        every view when a table is renamed."""
        main = table.name + MAIN_SUFFIX
        recent = table.name + RECENT_SUFFIX
        if table.staged and existing.get(table.name) == "table":
            conn.execute(f"DROP VIEW IF EXISTS {LEGACY_TABLE}")
            conn.execute(f"ALTER TABLE {table.name} RENAME TO {main}")
        elif not table.staged and existing.get(table.name) == "view" and existing.get(main) == "table":
            conn.execute(f"DROP VIEW IF EXISTS {LEGACY_TABLE}")
            conn.execute(f"DROP VIEW {table.name}")
            conn.execute(f"DROP TRIGGER IF EXISTS tr_{table.spec.name}_unique")
            for part in (main, recent):
                _add_columns(conn, part, table)
            listed = ", ".join(table.row_columns)
            conn.execute(f"INSERT INTO {main} ({listed}) SELECT {listed} FROM {recent} ORDER BY pk, id")
            conn.execute(f"DROP TABLE {recent}")
            conn.execute(f"ALTER TABLE {main} RENAME TO {table.name}")
            # The main part's indexes keep their names: they are the unstaged table's.

    def _migrate_legacy(self, conn: sqlite3.Connection) -> None:
        for table in self._tables.values():
            extracted = "".join(f", json_extract(body, '{_json_path(f)}')" for f in table.spec.extracted)
            conn.execute(
                f"INSERT OR IGNORE INTO {table.parts[0]} (pk, id, etag, ts, lsn, body{''.join(', ' + c for c in table.columns)})"
                f" SELECT pk, id, etag, ts, lsn, body{extracted} FROM {LEGACY_TABLE} WHERE container = ?",
                (table.spec.name,),
            )
            conn.execute(f"DELETE FROM {LEGACY_TABLE} WHERE container = ?", (table.spec.name,))
        left = conn.execute(f"SELECT COUNT(*) FROM {LEGACY_TABLE}").fetchone()[0]
        if left:
            # Containers this build does not know: kept, not dropped.
            conn.execute(f"ALTER TABLE {LEGACY_TABLE} RENAME TO {LEGACY_TABLE}_unmigrated")
        else:
            conn.execute(f"DROP TABLE {LEGACY_TABLE}")

    def _create_view(self, conn: sqlite3.Connection) -> None:
        """``docs``: every container's documents in one read-only view, for people
        and tools looking into the file (``SELECT ... FROM docs WHERE container = ...``)."""
        sql = f"CREATE VIEW {LEGACY_TABLE} AS " + " UNION ALL ".join(
            f"SELECT '{t.spec.name}' AS container, pk, id, etag, ts, lsn, body FROM {t.name}"
            for t in self._tables.values())
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = ?",
                           (LEGACY_TABLE,)).fetchone()
        if row is not None and row[0] == sql:
            return
        conn.execute(f"DROP VIEW IF EXISTS {LEGACY_TABLE}")
        conn.execute(sql)

    # --- connections -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        holder = getattr(self._local, "holder", None)
        if holder is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA page_size={PAGE_BYTES}")  # takes effect on a new file only
            use_wal(conn, self._busy_timeout_ms)
            conn.execute("PRAGMA secure_delete=ON")  # erasure: deleted wrapped DEKs are zeroed, not left in free pages
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            # SQLite's default page cache is 2 MiB per connection: the ledger's indexes outgrow
            # it quickly, and every insert then re-reads index pages from the OS. A larger
            # cache (filled only as pages are used) and reads through mmap measured 1.75x the
            # appends/s of the defaults (README, performance).
            conn.execute(f"PRAGMA cache_size=-{self._cache_kib}")
            conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            # Writers checkpoint only if the background checkpointer falls behind this far.
            conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            holder = _Held(conn)
            # A thread's connection (its page cache, up to CACHE_KIB, and its mmap) is closed
            # when the thread ends: threading.local drops the holder then. Without this a
            # thread pool that replaces its threads leaked one connection per thread it ever
            # had (the API process's RSS, issue 22 target 4).
            weakref.finalize(holder, _forget, conn, self._all, self._all_lock)
            self._local.holder = holder
            with self._all_lock:
                self._all.append(conn)
        return holder.conn

    def set_cache_kib(self, kib: int) -> None:
        """Page cache of each connection made from now on, and of this thread's, in KiB.

        The cache fills as pages are used and stays full, so a process's memory grows with
        the file up to this much per connection. ``CACHE_KIB`` pays for itself where the
        ledger is appended to (the ingest worker); a process that mostly reads (the API,
        whose reads come through mmap anyway) bounds its memory with less."""
        assert kib >= 1024, "below 1 MiB every query re-reads its index pages"
        self._cache_kib = kib
        self._execute(f"PRAGMA cache_size=-{kib}", ())

    def forget_deleted(self) -> bool:
        """Leave no copy of deleted or overwritten content in any file of the store.

        ``secure_delete`` (on for every connection) zeroes a deleted row where it
        lay in its page, but in WAL mode the page's earlier versions stay in the
        ``-wal`` file until a checkpoint has copied the newest versions into the
        database file and the WAL is truncated; a clean stop does that only when
        no other process still has the file open. ``wal_checkpoint(TRUNCATE)``
        waits (``busy_timeout``) for writers and readers of older snapshots,
        then copies and truncates the WAL to zero bytes. One checkpoint runs at a
        time: a second one (another thread's erasure, another process's automatic
        checkpoint) is refused at once, without the busy handler, so this one is
        serialised in the process and retried for up to ``CHECKPOINT_RETRY_SECONDS``.
        True when done; False when readers or other checkpoints held on longer
        (the caller retries later)."""
        deadline = time.monotonic() + CHECKPOINT_RETRY_SECONDS
        with self._checkpoint_lock:
            while True:
                try:
                    busy, _, _ = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc
                if busy == 0:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def _configure_checkpointer(self, conn: sqlite3.Connection) -> None:
        # A checkpoint syncs the log and the database file as the writers' setting says.
        conn.execute(f"PRAGMA synchronous={self._synchronous}")

    def close(self) -> None:
        self._checkpointer.close()
        with self._group:
            self._closed = True
            # Async callers still waiting would wait forever: they fail instead.
            stranded = [job for job in self._pending if job.on_done is not None]
            self._pending = [job for job in self._pending if job not in stranded]
            self._group.notify_all()
        for job in stranded:
            job.error, job.done = StoreUnavailable("the SQLite store was closed"), True
            assert job.on_done is not None
            job.on_done()
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    def _spec(self, container: str) -> ContainerSpec:
        return self._table(container).spec

    def _table(self, container: str) -> _Table:
        try:
            return self._tables[container]
        except KeyError:
            raise StoreError(f"unknown container {container!r}") from None

    # --- reads ---------------------------------------------------------------------

    def read(self, container: str, pk: str, id: str) -> Document | None:
        table = self._table(container)
        if container in self._expiring:
            row = self._execute(f"SELECT body, etag, ts FROM {table.name} WHERE pk = ? AND id = ?{_LIVE}",
                                (pk, id, self._clock())).fetchone()
            return None if row is None else _hydrate_expiring(row)
        row = self._execute(f"SELECT body, etag, ts FROM {table.name} WHERE pk = ? AND id = ?", (pk, id)).fetchone()
        return None if row is None else _hydrate(row)

    def read_many(self, container: str, keys: Sequence[tuple[str, str]]) -> list[Document | None]:
        """``read`` of many keys in one statement per ``_max_variables // 2`` keys
        (one read transaction when several: the answers are of one moment)."""
        table = self._table(container)
        expiring = container in self._expiring
        live, now = (_LIVE_JOINED, [self._clock()]) if expiring else ("", [])
        hydrate = _hydrate_expiring if expiring else _hydrate
        rows_of: dict[tuple[str, str], tuple[str, str, int]] = {}
        wanted = list(dict.fromkeys(keys))
        per_statement = max(1, self._max_variables // 2)
        conn = self._conn()
        many = len(wanted) > per_statement
        try:
            if many:
                conn.execute("BEGIN")
            for start in range(0, len(wanted), per_statement):
                chunk = wanted[start:start + per_statement]
                # A join from the keys (CROSS JOIN keeps that order): SQLite plans
                # "(pk, id) IN (VALUES ...)" as a scan of the whole table. A staged
                # container is joined part by part: joined to the view, SQLite
                # materialised both parts whole (a scan of the entire ledger per call,
                # which made an import's marker reads grow with the ledger).
                rows = conn.execute(
                    "WITH k(pk, id) AS (VALUES " + ", ".join("(?, ?)" for _ in chunk) + ") "
                    + " UNION ALL ".join(f"SELECT t.pk, t.id, t.body, t.etag, t.ts FROM k CROSS JOIN {part} AS t"
                                         " ON t.pk = k.pk AND t.id = k.id" + live for part in table.parts),
                    [value for key in chunk for value in key] + now * len(table.parts)).fetchall()
                for pk, doc_id, body, etag, ts in rows:
                    rows_of[(pk, doc_id)] = (body, etag, ts)
            if many:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc
        # Hydrated per key asked: a key asked twice gets two documents to change freely.
        return [hydrate(row) if (row := rows_of.get(key)) is not None else None for key in keys]

    def query(self, container: str, query: Query) -> list[Document]:
        table = self._table(container)
        clauses: list[str] = []
        params: list[Any] = []
        if query.pk is not None:
            clauses.append("pk = ?")
            params.append(query.pk)
        for flt in query.filters:
            expr = table.expression(flt.field)
            if flt.op == "in":
                clauses.append(f"{expr} IN ({', '.join('?' for _ in flt.value)})")
                params.extend(_bindable(v) for v in flt.value)
            elif flt.value is None and flt.op in ("=", "!="):
                clauses.append(f"{expr} IS {'NOT ' if flt.op == '!=' else ''}NULL")
            else:
                clauses.append(f"{expr} {_SQL_OPS[flt.op]} ?")
                params.append(_bindable(flt.value))
        if container in self._expiring:
            clauses.append(_LIVE[len(" AND "):])
            params.append(self._clock())
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        if query.order_by and table.staged:
            # Through the view SQLite would collect every matching row of both parts and
            # sort them (a big customer's whole history for one page). A compound SELECT
            # ordered by a result column is planned as a merge of the parts, each read in
            # order from its index, and stops at the limit. One statement, so one
            # snapshot: a merge step never shows a row twice or not at all.
            direction = "DESC" if query.descending else "ASC"
            key = table.expression(query.order_by)
            sql = " UNION ALL ".join(f"SELECT body, etag, ts, {key} FROM {part}{where}" for part in table.parts)
            sql += f" ORDER BY 4 {direction} LIMIT ?"
            params = params * len(table.parts) + [query.limit]
        else:
            sql = f"SELECT body, etag, ts FROM {table.name}{where}"
            if query.order_by:
                direction = "DESC" if query.descending else "ASC"
                sql += f" ORDER BY {table.expression(query.order_by)} {direction}"
            sql += " LIMIT ?"
            params.append(query.limit)
        hydrate = _hydrate_expiring if container in self._expiring else _hydrate
        return [hydrate(row[:3]) for row in self._execute(sql, params).fetchall()]

    def scan_json(self, container: str, pk_from: str, pk_to: str, filters: tuple[Filter, ...], order_by: str,
                  after: tuple[str, Any] | None, limit: int) -> JsonScan:
        """``shared.store.port.scan_json``: the page's documents concatenated by SQLite
        (``group_concat`` in ``(pk, order_by)`` order) and returned as one bytes object, so a
        page costs no Python object per document."""
        blob, count, _ = self._scan(container, "body", pk_from, pk_to, filters, order_by, after, limit)
        if not count:
            return JsonScan(b"", 0, None)
        # Where the next page starts: the last document's key, read from its JSON alone.
        last = orjson.loads(blob[blob.rfind(b"\n") + 1:])
        key = (last["pk"], field_value(last, order_by))
        assert after is None or (key[0], key[1]) > (after[0], after[1]), "scan pages move forward"
        return JsonScan(blob, count, key if count >= limit else None)

    def scan_lines(self, container: str, pk_from: str, pk_to: str, filters: tuple[Filter, ...], order_by: str,
                   after: tuple[str, Any] | None, limit: int) -> LineScan | None:
        """``shared.store.port.scan_lines``: ``scan_json``'s page as the documents' lines,
        concatenated by SQLite as the JSON is; ``lines`` None if one of them has none.
        None for a container that keeps no lines."""
        line = self._table(container).spec.line
        if line is None:
            return None
        blob, count, with_line = self._scan(container, line.column, pk_from, pk_to, filters, order_by, after, limit)
        if not count:
            return LineScan(b"", 0, None)
        if with_line < count:
            return LineScan(None, count, None)
        key = line.key_of(blob[blob.rfind(b"\n") + 1:].decode(), order_by)
        assert after is None or (key[0], key[1]) > (after[0], after[1]), "scan pages move forward"
        return LineScan(blob, count, key if count >= limit else None)

    def _scan(self, container: str, column: str, pk_from: str, pk_to: str, filters: tuple[Filter, ...],
              order_by: str, after: tuple[str, Any] | None, limit: int) -> tuple[bytes, int, int]:
        """(``column`` of a page's documents joined by newlines, how many documents, how
        many of them with a value in ``column``) of a ``scan_json``/``scan_lines`` page."""
        assert limit >= 1 and pk_from <= pk_to
        table = self._table(container)
        order = table.expression(order_by)
        # A page after ``after`` is read in two index seeks: the rest of ``after``'s partition
        # (``pk = ? AND order > ?``), then the partitions after it (``pk > ?``). A row value
        # ``(pk, order) > (?, ?)`` was measured to make SQLite scan from the range's start
        # again, each page costing more than the one before.
        if after is None:
            return self._scan_page(container, table, column, "pk >= ? AND pk <= ?", [pk_from, pk_to], order,
                                   filters, limit)
        blob, count, filled = self._scan_page(container, table, column, f"pk = ? AND {order} > ?",
                                              [after[0], _bindable(after[1])], order, filters, limit)
        if count < limit and after[0] < pk_to:
            more, extra, more_filled = self._scan_page(container, table, column, "pk > ? AND pk <= ?",
                                                       [after[0], pk_to], order, filters, limit - count)
            if extra:
                blob, count, filled = (blob + b"\n" + more if count else more), count + extra, filled + more_filled
        return blob, count, filled

    def _scan_page(self, container: str, table: "_Table", column: str, bounds: str, params: list[Any], order: str,
                   filters: tuple[Filter, ...], limit: int) -> tuple[bytes, int, int]:
        """(``column`` joined by newlines, how many documents, how many with ``column``) of
        one scan statement."""
        # ``order IS NOT NULL`` lets a sparse index on (pk, order) serve the scan (the ledger's seq).
        clauses = [bounds, f"{order} IS NOT NULL"]
        params = list(params)
        for flt in filters:
            expr = table.expression(flt.field)
            assert flt.op in _SQL_OPS and flt.value is not None, "scan_json takes comparisons with values"
            clauses.append(f"{expr} {_SQL_OPS[flt.op]} ?")
            params.append(_bindable(flt.value))
        if container in self._expiring:
            clauses.append(_LIVE[len(" AND "):])
            params.append(self._clock())
        where = " AND ".join(clauses)
        # A staged ledger is read part by part in one compound statement ordered by result
        # columns, which SQLite plans as a merge of each part's index (as ``query`` does):
        # through the view it would sort the whole range. Where the recent part holds no row
        # of the range (a backfill or compaction of past days: the recent rows are new), the
        # main part is read alone: the merge cost ~0.5 us per row (docs/performance.md). The
        # check and the read share one snapshot (one read transaction), so a merge step
        # running beside the export never shows a row twice or hides one.
        parts = table.parts
        conn = self._conn()
        try:
            began = len(parts) > 1 and not conn.in_transaction
            if began:
                conn.execute("BEGIN")
            try:
                if len(parts) > 1 and not conn.execute(
                        f"SELECT EXISTS (SELECT 1 FROM {parts[-1]} WHERE {where})", params).fetchone()[0]:
                    parts = parts[:1]
                inner = " UNION ALL ".join(f"SELECT {column} AS v, pk, {order} AS o FROM {part} WHERE {where}"
                                           for part in parts)
                inner += " ORDER BY 2, 3 LIMIT ?"
                blob, count, filled = conn.execute(
                    f"SELECT CAST(group_concat(v, char(10)) AS BLOB), count(*), count(v) FROM ({inner})",
                    params * len(parts) + [limit]).fetchone()
            finally:
                if began:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc
        return (blob or b""), count, filled

    def sweep_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired documents of each container with a TTL rule
        (they are already invisible); the number deleted. Bounded, so one round never
        holds the write lock long: call again while it returns ``limit`` or more."""
        assert limit > 0
        deleted = 0
        for name in sorted(self._expiring):
            table = self._tables[name]
            conn = self._conn()
            try:
                with write_transaction(conn, self._busy_timeout_ms):
                    deleted += conn.execute(
                        f"DELETE FROM {table.name} WHERE rowid IN (SELECT rowid FROM {table.name}"
                        f" WHERE x_ttl > 0 AND ts + x_ttl <= ? LIMIT ?)", (self._clock(), limit)).rowcount
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc
        return deleted

    def changes(self, container: str, after_lsn: int, limit: int) -> list[Change]:
        table = self._fed_table(container)
        # Each part read by its lsn index and the two merged, in one statement (see ``query``).
        sql = " UNION ALL ".join(f"SELECT lsn, body, etag, ts FROM {part} WHERE lsn > ?" for part in table.parts)
        rows = self._execute(sql + " ORDER BY 1 LIMIT ?", [after_lsn] * len(table.parts) + [limit]).fetchall()
        return [Change(lsn=lsn, container=container, doc=_hydrate((body, etag, ts))) for lsn, body, etag, ts in rows]

    def _fed_table(self, container: str) -> "_Table":
        """``container``'s table, which must keep a change feed (StoreError otherwise)."""
        table = self._table(container)
        if not table.spec.change_feed:
            raise StoreError(f"container {container!r} has no change feed")
        return table

    def latest_lsn(self, container: str) -> int:
        row = self._execute(_max_lsn_sql(self._table(container)), ()).fetchone()
        return row[0] or 0

    def changed_partitions(self, container: str, after_lsn: int, upto_lsn: int, pk_from: str,
                           pk_below: str) -> list[str]:
        """``shared.store.port.changed_partitions``: the partition keys ``pk_from <= pk <
        pk_below`` written with an lsn in ``(after_lsn, upto_lsn]``, sorted; read from the
        lsn index of each part (a staged container's rows keep their lsn when merged)."""
        assert after_lsn <= upto_lsn and pk_from < pk_below
        table = self._fed_table(container)
        inner = " UNION ALL ".join(f"SELECT pk FROM {part} WHERE lsn > ? AND lsn <= ?" for part in table.parts)
        rows = self._execute(f"SELECT DISTINCT pk FROM ({inner}) WHERE pk >= ? AND pk < ? ORDER BY pk",
                             [after_lsn, upto_lsn] * len(table.parts) + [pk_from, pk_below]).fetchall()
        return [pk for (pk,) in rows]

    # --- lines (shared.store.lines): filling those of documents written before ------------

    def fill_lines(self, container: str, batch: int = 5_000) -> int:
        """Give the documents of ``container`` written before the store kept lines (their
        line column empty) their lines; how many were given one. A document a line cannot
        hold exactly keeps none (it is read from its JSON, as every document without a line).

        Safe beside writers and merge steps: documents of a container with lines never
        change (append-only), a batch is read, its lines made outside the write lock, then
        written in one short transaction by ``(pk, id)`` and only where still empty. A row
        a merge step moves from the recent part after that part was passed keeps no line:
        read from its JSON, as before; a second run gives it one."""
        table = self._table(container)
        spec = table.spec.line
        if spec is None:
            return 0
        column = spec.column
        kind = table.expression(spec.when[0])
        filled = 0
        for part in table.parts:
            after = 0
            while True:
                rows = self._execute(
                    f"SELECT rowid, pk, id, body FROM {part} WHERE rowid > ? AND {column} IS NULL AND {kind} = ?"
                    f" ORDER BY rowid LIMIT ?", [after, spec.when[1], batch]).fetchall()
                if not rows:
                    break
                after = rows[-1][0]
                lines = [(line, pk, doc_id) for _, pk, doc_id, body in rows
                         if (line := spec.line_of(orjson.loads(body))) is not None]
                if lines:
                    conn = self._conn()
                    try:
                        with write_transaction(conn, self._busy_timeout_ms):
                            filled += conn.executemany(
                                f"UPDATE {part} SET {column} = ? WHERE pk = ? AND id = ? AND {column} IS NULL",
                                lines).rowcount
                    except sqlite3.Error as exc:
                        raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc
        return filled

    # --- staged containers: the merge ------------------------------------------------

    def merge_recent(self, container: str | None = None, *, everything: bool = True) -> int:
        """Move recent rows of a staged container (every staged one by default) into its
        main table, ``merge_rows`` per transaction; the number moved. ``everything``:
        until the recent table is empty (tests that edit rows in SQL, a bulk load),
        else one step, and only if the recent table holds ``merge_threshold`` rows
        (what a writer runs after its commit)."""
        names = [container] if container is not None else [n for n, t in self._tables.items() if t.staged]
        moved = 0
        for name in names:
            table = self._table(name)
            if not table.staged:
                raise StoreError(f"container {name!r} is not staged")
            while True:
                step, left = self._merge_step(table, at_least=0 if everything else self._merge_threshold)
                moved += step
                self._recent_rows[name] = left
                if not everything or step == 0 or left == 0:
                    break
        return moved

    def merged_table(self, container: str) -> str:
        """The one table holding every document of ``container``, for code that edits
        rows in SQL (tests corrupting a ledger): a staged container is merged first;
        the view (``table_of``) cannot be written."""
        table = self._table(container)
        if table.staged:
            self.merge_recent(container)
            return table.parts[0]
        return table.name

    def _merge_step(self, table: _Table, at_least: int) -> tuple[int, int]:
        """One bounded merge transaction: the oldest ``merge_rows`` recent rows, in
        ``(pk, id)`` order (each customer's leaf pages of the main table written once
        per step, not once per commit), inserted into the main table and deleted from
        the recent one together, so a crash leaves them in exactly one of the two.
        Skipped when fewer than ``at_least`` recent rows. (moved, recent rows left)."""
        main, recent = table.parts
        listed = ", ".join(table.row_columns)
        conn = self._conn()
        try:
            with write_transaction(conn, self._busy_timeout_ms):
                count = conn.execute(f"SELECT COUNT(*) FROM {recent}").fetchone()[0]
                if count == 0 or count < at_least:
                    return 0, count
                bound = conn.execute(f"SELECT rowid FROM {recent} ORDER BY rowid LIMIT 1 OFFSET ?",
                                     (min(count, self._merge_rows) - 1,)).fetchone()[0]
                moved = conn.execute(f"INSERT INTO {main} ({listed}) SELECT {listed} FROM {recent}"
                                     f" WHERE rowid <= ? ORDER BY pk, id", (bound,)).rowcount
                # The moved rows live on in the main table: zeroing their recent copies
                # (secure_delete, on for erasure) would protect nothing and writes every
                # freed page into the log (measured: about a fifth of a merge step).
                conn.execute("PRAGMA secure_delete=OFF")
                try:
                    deleted = conn.execute(f"DELETE FROM {recent} WHERE rowid <= ?", (bound,)).rowcount
                finally:
                    conn.execute("PRAGMA secure_delete=ON")
                # TIGER_STYLE: a row is in exactly one part, before and after.
                if moved != deleted:
                    raise StoreError(f"merge of {table.name}: {moved} rows inserted but {deleted} deleted")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc
        self._checkpointer.nudge()
        return moved, count - moved

    # --- writes --------------------------------------------------------------------

    def create(self, container: str, doc: Document) -> Document:
        return self.batch(container, _pk_of(doc), [Create(doc)])[0]

    def upsert(self, container: str, doc: Document, if_match: str | None = None) -> Document:
        return self.batch(container, _pk_of(doc), [Upsert(doc, if_match)])[0]

    def delete(self, container: str, pk: str, id: str, if_match: str | None = None) -> None:
        self.batch(container, pk, [Delete(id, if_match)])

    def batch(self, container: str, pk: str, operations: Sequence[Operation]) -> list[Document]:
        return one_batch(self, container, pk, operations)

    def batches(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        job = self._job(container, batches)
        if job is None:
            return
        with self._group:
            self._pending.append(job)
            while self._committing and not job.done:
                self._group.wait()
            if not job.done:
                # Lead: take everything pending (our own job included) into one transaction.
                self._committing = True
                group, self._pending = self._pending, []
        if not job.done:
            self._lead(group)
        if job.error is not None:
            raise job.error
        self._unstamp(container, batches)

    def _lead(self, group: list[_Job]) -> None:
        """Commit a group taken from ``_pending`` (``_committing`` set), then hand over.
        Past the threshold of recent rows, the leader then runs one merge step, still
        holding ``_committing``: the writers that arrive meanwhile queue up and go
        together in the next group instead of each waiting on SQLite's busy handler."""
        try:
            self._commit_group(group)
            due = self._count_recent(group)
            if due:
                with self._group:
                    self._group.notify_all()  # the group's callers are done: let them go first
                for name in due:
                    try:
                        self.merge_recent(name, everything=False)
                    except StoreError as exc:
                        # The appends committed; the merge is retried after the next commit.
                        _log.warning("merge of a staged container failed", extra=fields(
                            target=name, error=type(exc).__name__))
        finally:
            with self._group:
                self._committing = False
                self._group.notify_all()
        # After the hand-over: a nudge never fails or delays a committed group.
        self._checkpointer.nudge()

    def _count_recent(self, group: list[_Job]) -> list[str]:
        """Add the group's committed writes to the recent-row counts; the staged
        containers now past the merge threshold."""
        due = []
        for job in group:
            name = job.spec.name
            if name in self._recent_rows and job.error is None:
                self._recent_rows[name] += sum(len(w.operations) for w in job.batches if w.result is not None)
                if self._recent_rows[name] >= self._merge_threshold and name not in due:
                    due.append(name)
        return due

    async def batches_async(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        """``batches`` for a caller on an event loop: the same group commit, led by
        the store's committer thread instead of the caller, which awaits it without
        holding a thread (the API's single-order path)."""
        job = self._job(container, batches)
        if job is None:
            return
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(None))
            except RuntimeError:
                # The caller's event loop closed while its job was queued (a stopping server,
                # a fire-and-forget confirmation): nobody awaits it any more. Raising here
                # would leave the rest of the group unwoken and kill the committer thread.
                pass

        job.on_done = wake
        with self._group:
            if self._closed:
                raise StoreUnavailable("the SQLite store is closed")
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_loop, name="store-committer", daemon=True)
                self._committer.start()
            self._pending.append(job)
            self._group.notify_all()
        await finished
        if job.error is not None:
            raise job.error
        self._unstamp(container, batches)

    def _commit_loop(self) -> None:
        """Lead the group commits that async callers are waiting for (a sync caller
        waiting beside them may lead instead: whoever gets there first)."""
        while True:
            with self._group:
                while not self._closed and (self._committing or not any(j.on_done for j in self._pending)):
                    self._group.wait()
                if self._closed:
                    return
                self._committing = True
                group, self._pending = self._pending, []
            self._lead(group)

    def _job(self, container: str, batches: Sequence[PartitionBatch]) -> _Job | None:
        spec = self._spec(container)
        for work in batches:
            self._check_batch(spec, work)
        job = _Job(spec, [w for w in batches if w.error is None])
        if not job.batches:
            return None
        table = self._tables[spec.name]
        # Rendered here, in the caller's thread: the committing thread holds the write
        # lock (and other processes wait on it) only for the SQL.
        stamp = self._stamp if spec.name in self._expiring else _same
        job.rendered = {id(op): table.render(stamp(spec.name, op.doc)) for work in job.batches
                        for op in work.operations if isinstance(op, (Create, Upsert))}
        return job

    def _stamp(self, container: str, doc: Document) -> Document:
        ttl = self._ttl.seconds(container, doc)
        assert ttl is not None and (ttl == -1 or ttl > 0), "a container with a TTL rule gets a ttl"
        return dict(doc, ttl=ttl)

    def _unstamp(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        """``ttl`` is the store's: written results come back without it, as reads do."""
        if container in self._expiring:
            for work in batches:
                for doc in work.result or ():
                    doc.pop("ttl", None)

    def _commit_group(self, group: list[_Job]) -> None:
        conn = self._conn()
        try:
            with write_transaction(conn, self._busy_timeout_ms):
                next_lsn: dict[str, int] = {}
                ts = int(self._clock())
                savepoints = itertools.count(1)
                for job in group:
                    self._apply_job(conn, job, ts, next_lsn, savepoints)
        except BaseException as exc:
            failure: BaseException = (
                StoreUnavailable(f"the SQLite store failed: {exc}") if isinstance(exc, sqlite3.Error) else exc
            )
            for job in group:
                for work in job.batches:
                    work.result = None
                job.error = failure
        finally:
            with self._group:
                for job in group:
                    job.done = True
            for job in group:
                if job.on_done is not None:
                    job.on_done()

    def _apply_job(self, conn: sqlite3.Connection, job: _Job, ts: int, next_lsn: dict[str, int],
                   savepoints: Iterator[int]) -> None:
        """One caller's batches inside the group's transaction: all at once if they
        go through, else each in its savepoint, a refused one rolled back alone."""
        table = self._tables[job.spec.name]
        if job.spec.change_feed and job.spec.name not in next_lsn:
            row = conn.execute(_max_lsn_sql(table)).fetchone()
            next_lsn[job.spec.name] = (row[0] or 0) + 1
        if len(job.batches) > 1 and self._write_at_once(conn, table, job.batches, ts, next_lsn, job.rendered):
            return
        for work in job.batches:
            if work.pk in job.chained_failures:
                work.error = BatchSkipped(f"an earlier batch of {work.pk!r} in this call failed")
                continue
            savepoint = f"b{next(savepoints)}"
            conn.execute(f"SAVEPOINT {savepoint}")
            lsn_before = next_lsn.get(job.spec.name)
            try:
                work.result = self._apply_batch(conn, table, work, ts, next_lsn, job.rendered)
            except _OperationRefused as refused:
                conn.execute(f"ROLLBACK TO {savepoint}")
                if lsn_before is not None:
                    next_lsn[job.spec.name] = lsn_before
                work.result = None
                work.error = BatchFailed(
                    f"batch refused at operation {refused.index}: {refused.error.message}",
                    index=refused.index,
                    cause=refused.error,
                ) if len(work.operations) > 1 else refused.error
                job.chained_failures.add(work.pk)
            conn.execute(f"RELEASE {savepoint}")

    def _write_at_once(self, conn: sqlite3.Connection, table: _Table, batches: Sequence[PartitionBatch], ts: int,
                       next_lsn: dict[str, int], rendered: dict[int, _Rendered]) -> bool:
        """The optimistic path, for a call of many batches (an ingest batch's ledger
        writes, the projector's statuses and balances) and for one batch of several
        operations (a ledger transaction): every operation in a few statements inside
        one savepoint (multi-row INSERTs and upserts, one executemany for the
        ETag-guarded updates), instead of a statement each and a savepoint per batch.
        Any refusal undoes it and returns False; the caller then applies the
        operations one by one, which finds the refused one."""
        if any(type(op) is Delete for work in batches for op in work.operations):
            return False
        lsn_before = next_lsn.get(table.spec.name)
        prepared = [[(op, *self._prepare(table, work.pk, op, ts, next_lsn, rendered))  # type: ignore[arg-type]
                     for op in work.operations] for work in batches]
        conn.execute("SAVEPOINT grouped")
        try:
            for statement, rows in _runs(table, [item for batch in prepared for item in batch]):
                if statement is None:  # ETag-guarded updates: all must hit their row
                    cursor = conn.executemany(table.update_guarded, rows)
                    if cursor.rowcount != len(rows):
                        raise _Refused()
                    continue
                per_statement = max(1, self._max_variables // len(rows[0]))
                for start in range(0, len(rows), per_statement):
                    chunk = rows[start:start + per_statement]
                    conn.execute(statement[0] + ", ".join(table.insert_row for _ in chunk) + statement[1],
                                 [value for row in chunk for value in row])
        except (sqlite3.IntegrityError, _Refused):
            conn.execute("ROLLBACK TO grouped")
            conn.execute("RELEASE grouped")
            if lsn_before is not None:
                next_lsn[table.spec.name] = lsn_before
            return False
        conn.execute("RELEASE grouped")
        for work, batch in zip(batches, prepared):
            work.result = [doc for _, doc, _ in batch]
        return True

    def _check_batch(self, spec: ContainerSpec, work: PartitionBatch) -> None:
        work.result, work.error = None, None
        if len(work.operations) > MAX_BATCH_OPERATIONS:
            raise StoreError(
                f"a batch for {work.pk!r} has {len(work.operations)} operations; at most "
                f"{MAX_BATCH_OPERATIONS} fit one transactional batch"
            )
        if spec.append_only:
            for op in work.operations:
                if not isinstance(op, Create):
                    work.error = ImmutableDocument(
                        f"container {spec.name!r} is append-only: documents are never replaced or deleted"
                    )
                    return
        for index, op in enumerate(work.operations):
            if isinstance(op, (Create, Upsert)):
                if _pk_of(op.doc) != work.pk:
                    raise StoreError(f"operation {index} has pk {_pk_of(op.doc)!r}, batch is for {work.pk!r}")
                doc_id = op.doc.get("id")
                if not isinstance(doc_id, str) or not doc_id:
                    raise StoreError("a document needs a non-empty string id")

    def _apply_batch(self, conn: sqlite3.Connection, table: _Table, work: PartitionBatch, ts: int,
                     next_lsn: dict[str, int], rendered: dict[int, _Rendered]) -> list[Document]:
        """Apply one partition batch inside its savepoint (the caller rolls back on a refusal)."""
        operations = work.operations
        if len(operations) > 1 and self._write_at_once(conn, table, [work], ts, next_lsn, rendered):
            assert work.result is not None
            return work.result
        return [self._apply(conn, table, work.pk, op, index, ts, next_lsn, rendered) for index, op in enumerate(operations)]

    def _prepare(self, table: _Table, pk: str, op: Create | Upsert, ts: int,
                 next_lsn: dict[str, int], rendered: dict[int, _Rendered]) -> tuple[Document, tuple[Any, ...]]:
        """The stored document (with ``_etag``/``_ts``) and its row, taking the next LSN.
        The JSON and column values were made by the caller before the transaction
        (``_job``), so the write lock is not held for that."""
        doc, body, extracted = rendered[id(op)]
        etag = f"{self._etag_prefix}{next(self._etags):x}"
        lsn = None
        if table.spec.change_feed:
            lsn = next_lsn[table.spec.name]
            next_lsn[table.spec.name] = lsn + 1
        return dict(doc, _etag=etag, _ts=ts), (pk, doc["id"], etag, ts, lsn, body, *extracted)

    def _apply(
        self, conn: sqlite3.Connection, table: _Table, pk: str, op: Operation, index: int, ts: int,
        next_lsn: dict[str, int], rendered: dict[int, _Rendered],
    ) -> Document:
        if isinstance(op, Delete):
            row = conn.execute(f"SELECT etag FROM {table.name} WHERE pk = ? AND id = ?", (pk, op.id)).fetchone()
            if row is not None and self._drop_expired(conn, table, pk, op.id, ts):
                row = None  # expired: not found, as for a reader
            if row is None:
                raise _OperationRefused(index, StoreError(f"document {op.id!r} not found"))
            if op.if_match is not None and row[0] != op.if_match:
                raise _OperationRefused(index, PreconditionFailed(f"document {op.id!r} changed since it was read"))
            conn.execute(f"DELETE FROM {table.name} WHERE pk = ? AND id = ?", (pk, op.id))
            return {"id": op.id, "pk": pk}
        stored, row = self._prepare(table, pk, op, ts, next_lsn, rendered)
        doc_id = row[1]
        if isinstance(op, Create):
            try:
                conn.execute(table.insert_head + table.insert_row, row)
            except sqlite3.IntegrityError:
                # An expired document is gone for every reader, as in Cosmos DB: a create
                # of its id succeeds (the sweep may simply not have come by yet).
                if not self._drop_expired(conn, table, pk, doc_id, ts):
                    raise _OperationRefused(index, DocumentExists(f"document {doc_id!r} already exists in {pk!r}"))
                conn.execute(table.insert_head + table.insert_row, row)
        elif op.if_match is not None:
            updated = conn.execute(table.update_guarded, (*row[2:], pk, doc_id, op.if_match)).rowcount
            if updated != 1:
                raise _OperationRefused(index, PreconditionFailed(f"document {doc_id!r} changed since it was read"))
        else:
            conn.execute(table.insert_head + table.insert_row + table.upsert_tail, row)
        return stored

    def _drop_expired(self, conn: sqlite3.Connection, table: _Table, pk: str, doc_id: str, now: int) -> bool:
        """Delete the document if it has expired (containers with a TTL rule); whether it did."""
        if table.spec.name not in self._expiring:
            return False
        return conn.execute(f"DELETE FROM {table.name} WHERE pk = ? AND id = ? AND x_ttl > 0 AND ts + x_ttl <= ?",
                            (pk, doc_id, now)).rowcount == 1

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc


class _Held:
    """A thread's connection, held by its ``threading.local`` (weakly referable, unlike a Connection)."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _forget(conn: sqlite3.Connection, every: list[sqlite3.Connection], lock: threading.Lock) -> None:
    """Close a connection whose thread has ended (a ``weakref.finalize`` callback: never raises)."""
    with lock:
        if conn in every:
            every.remove(conn)
    try:
        conn.close()
    except sqlite3.Error:
        pass


def _max_lsn_sql(table: _Table) -> str:
    """The container's highest LSN: each part's from its index (through the view
    SQLite would read every row), COALESCE because a two-argument MAX of a NULL is NULL."""
    if not table.staged:
        return f"SELECT MAX(lsn) FROM {table.name} WHERE lsn IS NOT NULL"
    return "SELECT MAX(" + ", ".join(f"COALESCE((SELECT MAX(lsn) FROM {part} WHERE lsn IS NOT NULL), 0)"
                                     for part in table.parts) + ")"


def _line_columns(spec: ContainerSpec) -> tuple[str, ...]:
    """The column of the container's lines (``ContainerSpec.line``), if it keeps them."""
    return (spec.line.column,) if spec.line else ()


def _add_columns(conn: sqlite3.Connection, part: str, table: _Table) -> None:
    """Add to ``part`` (a file written by an earlier version) the columns it lacks: a field
    newly extracted (filled by the caller from the JSON), a line column (left empty: a
    document without its line is read from its JSON, ``shared.store.port.LineScan``)."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({part})")}
    for column in table.columns:
        if column not in present:
            conn.execute(f"ALTER TABLE {part} ADD COLUMN {column}")
    for column in table.line_columns:
        if column not in present:
            conn.execute(f"ALTER TABLE {part} ADD COLUMN {column} TEXT")


def _drop_indexes(conn: sqlite3.Connection, table_name: str, keep: set[str]) -> None:
    """Drop this store's indexes of the table (``ix_*``; not SQLite's automatic ones) but those in ``keep``."""
    for (index,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                                 " AND sql IS NOT NULL AND name LIKE 'ix_%'", (table_name,)).fetchall():
        if index not in keep:
            conn.execute(f'DROP INDEX "{index}"')


class _Refused(Exception):
    """An ETag-guarded update of the optimistic path found its row changed."""


def _runs(table: _Table, items: list[tuple[Operation, Document, tuple[Any, ...]]]
          ) -> Iterator[tuple[tuple[str, str] | None, list[tuple[Any, ...]]]]:
    """Consecutive operations of one kind, as (statement head and tail, rows); the
    guarded updates as (None, their executemany parameters). Order is kept, so a
    document written twice in one call ends as the later write."""
    run_kind: tuple[str, str] | None | bool = False
    rows: list[tuple[Any, ...]] = []
    for op, _, row in items:
        if isinstance(op, Create):
            kind: tuple[str, str] | None = (table.insert_head, "")
        elif op.if_match is None:
            kind = (table.insert_head, table.upsert_tail)
        else:
            kind, row = None, (*row[2:], row[0], row[1], op.if_match)
        if kind != run_kind and rows:
            yield run_kind, rows  # type: ignore[misc]
            rows = []
        run_kind = kind
        rows.append(row)
    if rows:
        yield run_kind, rows  # type: ignore[misc]


class _OperationRefused(Exception):
    def __init__(self, index: int, error: StoreError) -> None:
        self.index = index
        self.error = error


def _pk_of(doc: Document) -> str:
    pk = doc.get("pk")
    if not isinstance(pk, str) or not pk:
        raise StoreError("a document needs a non-empty string pk")
    return pk


def _bindable(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value


# The condition a row of a container with a TTL rule must meet to be seen (one
# parameter: now, epoch seconds). Cosmos DB's rule: gone once ``_ts + ttl <= now``.
_LIVE = " AND (x_ttl IS NULL OR x_ttl <= 0 OR ts + x_ttl > ?)"
_LIVE_JOINED = " AND (t.x_ttl IS NULL OR t.x_ttl <= 0 OR t.ts + t.x_ttl > ?)"  # read_many's alias


def _same(container: str, doc: Document) -> Document:
    return doc


def _hydrate_expiring(row: tuple[str, str, int]) -> Document:
    doc = _hydrate(row)
    doc.pop("ttl", None)
    return doc


def _hydrate(row: tuple[str, str, int]) -> Document:
    body, etag, ts = row
    doc = orjson.loads(body)
    doc["_etag"] = etag
    doc["_ts"] = ts
    return doc
