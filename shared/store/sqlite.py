"""The embedded document store: one SQLite file in WAL mode.

The default store of the local platform and of the tests. It keeps the port's
contract (``shared.store.port``) with SQLite's own guarantees:

* a partition batch is a SAVEPOINT inside one ``BEGIN IMMEDIATE`` transaction,
  so it is all-or-nothing;
* **group commit**: concurrent writers (API threads, the consumer, the
  projector) hand their batches to whichever of them is committing; it writes
  everything pending in one transaction, so many writers share one fsync. A
  caller returns only once the transaction carrying its batches committed;
* durability is on: ``synchronous=FULL`` by default (``NORMAL`` may be chosen,
  which in WAL mode survives a process kill but not a power cut); never ``OFF``;
* the change feed: every write to a container with a feed stamps the document
  with the next log sequence number (``lsn``) of that container, inside the
  same transaction. Writers are serialised by SQLite's write lock, so numbers
  follow commit order and a poller that reads ``lsn > checkpoint`` never skips
  a document. As in Cosmos DB, a rewritten document appears once, with its
  newest version (the ledger is append-only, so each entry appears once).

Each thread gets its own connection; readers run beside the writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

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
    MAX_BATCH_OPERATIONS,
    Change,
    ContainerSpec,
    Create,
    Delete,
    Document,
    Operation,
    PartitionBatch,
    Query,
    Upsert,
    check_field_path,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    container TEXT NOT NULL,
    pk TEXT NOT NULL,
    id TEXT NOT NULL,
    etag TEXT NOT NULL,
    ts INTEGER NOT NULL,
    lsn INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (container, pk, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_docs_lsn ON docs(container, lsn) WHERE lsn IS NOT NULL;
"""

_SQL_OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _json_path(field: str) -> str:
    return "$." + check_field_path(field)


def _dumps(doc: Document) -> str:
    return orjson.dumps(doc).decode()


@dataclass
class _Job:
    """One caller's batches, waiting for a group commit."""

    spec: ContainerSpec
    batches: list[PartitionBatch]
    done: bool = False
    error: BaseException | None = None
    chained_failures: set[str] = field(default_factory=set)


class SqliteDocumentStore:
    """The document-store port over one SQLite file."""

    def __init__(
        self,
        path: str | Path,
        containers: Iterable[ContainerSpec],
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA: durability stays on")
        self.path = str(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = busy_timeout_ms
        self._specs = {spec.name: spec for spec in containers}
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._group = threading.Condition()
        self._pending: list[_Job] = []
        self._committing = False
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.executescript(SCHEMA)
        for spec in self._specs.values():
            name = self._literal(spec.name)
            for field_name in spec.indexed:
                index = f"ix_{spec.name}_{field_name.replace('.', '_')}"
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {index} ON docs(pk, json_extract(body, '{_json_path(field_name)}'))"
                    f" WHERE container = {name}"
                )
            if "tenantId" in spec.indexed:
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS ix_{spec.name}_x_tenant"
                    f" ON docs(json_extract(body, '$.tenantId')) WHERE container = {name}"
                )

    # --- connections -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA secure_delete=ON")  # erasure: deleted wrapped DEKs are zeroed, not left in free pages
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    def _spec(self, container: str) -> ContainerSpec:
        try:
            return self._specs[container]
        except KeyError:
            raise StoreError(f"unknown container {container!r}") from None

    @staticmethod
    def _literal(name: str) -> str:
        check_field_path(name)
        return f"'{name}'"

    # --- reads ---------------------------------------------------------------------

    def read(self, container: str, pk: str, id: str) -> Document | None:
        self._spec(container)
        row = self._execute(
            "SELECT body, etag, ts FROM docs WHERE container = ? AND pk = ? AND id = ?",
            (container, pk, id),
        ).fetchone()
        return None if row is None else _hydrate(row)

    def query(self, container: str, query: Query) -> list[Document]:
        self._spec(container)
        clauses = [f"container = {self._literal(container)}"]
        params: list[Any] = []
        if query.pk is not None:
            clauses.append("pk = ?")
            params.append(query.pk)
        for flt in query.filters:
            expr = f"json_extract(body, '{_json_path(flt.field)}')"
            if flt.op == "in":
                clauses.append(f"{expr} IN ({', '.join('?' for _ in flt.value)})")
                params.extend(_bindable(v) for v in flt.value)
            elif flt.value is None and flt.op in ("=", "!="):
                clauses.append(f"{expr} IS {'NOT ' if flt.op == '!=' else ''}NULL")
            else:
                clauses.append(f"{expr} {_SQL_OPS[flt.op]} ?")
                params.append(_bindable(flt.value))
        sql = "SELECT body, etag, ts FROM docs WHERE " + " AND ".join(clauses)
        if query.order_by:
            direction = "DESC" if query.descending else "ASC"
            sql += f" ORDER BY json_extract(body, '{_json_path(query.order_by)}') {direction}"
        sql += " LIMIT ?"
        params.append(query.limit)
        return [_hydrate(row) for row in self._execute(sql, params).fetchall()]

    def changes(self, container: str, after_lsn: int, limit: int) -> list[Change]:
        spec = self._spec(container)
        if not spec.change_feed:
            raise StoreError(f"container {container!r} has no change feed")
        rows = self._execute(
            "SELECT lsn, body, etag, ts FROM docs WHERE container = ? AND lsn > ? ORDER BY lsn LIMIT ?",
            (container, after_lsn, limit),
        ).fetchall()
        return [Change(lsn=lsn, container=container, doc=_hydrate((body, etag, ts))) for lsn, body, etag, ts in rows]

    def latest_lsn(self, container: str) -> int:
        row = self._execute("SELECT MAX(lsn) FROM docs WHERE container = ? AND lsn IS NOT NULL",
                            (container,)).fetchone()
        return row[0] or 0

    # --- writes --------------------------------------------------------------------

    def create(self, container: str, doc: Document) -> Document:
        return self.batch(container, _pk_of(doc), [Create(doc)])[0]

    def upsert(self, container: str, doc: Document, if_match: str | None = None) -> Document:
        return self.batch(container, _pk_of(doc), [Upsert(doc, if_match)])[0]

    def delete(self, container: str, pk: str, id: str, if_match: str | None = None) -> None:
        self.batch(container, pk, [Delete(id, if_match)])

    def batch(self, container: str, pk: str, operations: Sequence[Operation]) -> list[Document]:
        work = PartitionBatch(pk=pk, operations=list(operations))
        self.batches(container, [work])
        if work.error is not None:
            raise work.error
        assert work.result is not None
        return work.result

    def batches(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        spec = self._spec(container)
        for work in batches:
            self._check_batch(spec, work)
        job = _Job(spec, [w for w in batches if w.error is None])
        if not job.batches:
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
            try:
                self._commit_group(group)
            finally:
                with self._group:
                    self._committing = False
                    self._group.notify_all()
        if job.error is not None:
            raise job.error

    def _commit_group(self, group: list[_Job]) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            next_lsn: dict[str, int] = {}
            number = 0
            for job in group:
                if job.spec.change_feed and job.spec.name not in next_lsn:
                    row = conn.execute("SELECT MAX(lsn) FROM docs WHERE container = ? AND lsn IS NOT NULL",
                                       (job.spec.name,)).fetchone()
                    next_lsn[job.spec.name] = (row[0] or 0) + 1
                for work in job.batches:
                    if work.pk in job.chained_failures:
                        work.error = BatchSkipped(f"an earlier batch of {work.pk!r} in this call failed")
                        continue
                    number += 1
                    savepoint = f"b{number}"
                    conn.execute(f"SAVEPOINT {savepoint}")
                    lsn_before = next_lsn.get(job.spec.name)
                    try:
                        work.result = [
                            self._apply(conn, job.spec, work.pk, op, index, next_lsn)
                            for index, op in enumerate(work.operations)
                        ]
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
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
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
            if isinstance(op, (Create, Upsert)) and _pk_of(op.doc) != work.pk:
                raise StoreError(f"operation {index} has pk {_pk_of(op.doc)!r}, batch is for {work.pk!r}")

    def _apply(
        self, conn: sqlite3.Connection, spec: ContainerSpec, pk: str, op: Operation, index: int,
        next_lsn: dict[str, int],
    ) -> Document:
        if isinstance(op, Delete):
            row = conn.execute(
                "SELECT etag FROM docs WHERE container = ? AND pk = ? AND id = ?", (spec.name, pk, op.id)
            ).fetchone()
            if row is None:
                raise _OperationRefused(index, StoreError(f"document {op.id!r} not found"))
            if op.if_match is not None and row[0] != op.if_match:
                raise _OperationRefused(index, PreconditionFailed(f"document {op.id!r} changed since it was read"))
            conn.execute("DELETE FROM docs WHERE container = ? AND pk = ? AND id = ?", (spec.name, pk, op.id))
            return {"id": op.id, "pk": pk}
        doc = {k: v for k, v in op.doc.items() if k not in ("_etag", "_ts")}
        doc_id = doc.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise StoreError("a document needs a non-empty string id")
        etag = uuid.uuid4().hex
        ts = int(time.time())
        body = _dumps(doc)
        lsn = None
        if spec.change_feed:
            lsn = next_lsn[spec.name]
            next_lsn[spec.name] = lsn + 1
        if isinstance(op, Create):
            try:
                conn.execute(
                    "INSERT INTO docs (container, pk, id, etag, ts, lsn, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (spec.name, pk, doc_id, etag, ts, lsn, body),
                )
            except sqlite3.IntegrityError:
                raise _OperationRefused(index, DocumentExists(f"document {doc_id!r} already exists in {pk!r}"))
        elif op.if_match is not None:
            updated = conn.execute(
                "UPDATE docs SET etag = ?, ts = ?, lsn = ?, body = ? WHERE container = ? AND pk = ? AND id = ?"
                " AND etag = ?",
                (etag, ts, lsn, body, spec.name, pk, doc_id, op.if_match),
            ).rowcount
            if updated != 1:
                raise _OperationRefused(index, PreconditionFailed(f"document {doc_id!r} changed since it was read"))
        else:
            conn.execute(
                "INSERT INTO docs (container, pk, id, etag, ts, lsn, body) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (container, pk, id) DO UPDATE SET etag = excluded.etag,"
                " ts = excluded.ts, lsn = excluded.lsn, body = excluded.body",
                (spec.name, pk, doc_id, etag, ts, lsn, body),
            )
        return dict(doc, _etag=etag, _ts=ts)

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"the SQLite store failed: {exc}") from exc


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


def _hydrate(row: tuple[str, str, int]) -> Document:
    body, etag, ts = row
    doc = orjson.loads(body)
    doc["_etag"] = etag
    doc["_ts"] = ts
    return doc
