"""A copy-on-write view of a document store, for dry runs.

``OverlayStore`` answers reads from the real store, and keeps every write in
memory, on top of it: a later read, query or batch in the same dry run sees
those writes (so a plan that reads its own writes, e.g. the ledger head after an
append, behaves as in the real call), and the real store is never written.
Dropping the overlay drops them all.

It keeps the port's contract (``shared.store.port``): ``DocumentExists`` on a
create over a document, ``PreconditionFailed`` on an ETag mismatch, append-only
containers refuse anything but creates, a batch is all-or-nothing within one
partition and ``batches`` skips the rest of a partition's chain after a
failure. Queries merge: the real store's answer (asked for enough more rows to
cover what the overlay hides) with the overlay's matching documents, filtered,
ordered and limited here.

It has no ``write`` path to the real store at all: the only references it holds
to ``base`` are reads (``read``, ``query``)."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any, Sequence

from shared.errors import (BatchFailed, BatchSkipped, DocumentExists, ImmutableDocument, PreconditionFailed,
                           StoreError)
from shared.store.layout import BY_NAME
from shared.store.port import (
    MAX_BATCH_OPERATIONS, Create, Delete, Document, DocumentStore, Filter, Operation,
    one_batch, PartitionBatch, Query, Upsert,
)

_GONE = object()  # a document the dry run deleted


class OverlayStore:
    """Reads through to ``base``; writes stay here."""

    def __init__(self, base: DocumentStore, clock_seconds: Any) -> None:
        self._base = base
        self._now = clock_seconds  # () -> int: epoch seconds for ``_ts``
        self._docs: dict[tuple[str, str, str], Any] = {}
        self.writes = 0  # how many documents the dry run would have written
        # Batches check and write under one lock, as a store's transaction would: two
        # threads of one dry run racing on an ETag cannot both win.
        self._lock = threading.RLock()

    # --- reads ------------------------------------------------------------------------

    def read(self, container: str, pk: str, id: str) -> Document | None:
        key = (container, pk, id)
        with self._lock:
            if key in self._docs:
                doc = self._docs[key]
                return None if doc is _GONE else copy.deepcopy(doc)
        return self._base.read(container, pk, id)

    def query(self, container: str, query: Query) -> list[Document]:
        with self._lock:
            mine = [(k, d) for k, d in self._docs.items()
                    if k[0] == container and (query.pk is None or k[1] == query.pk)]
        if not mine:
            return self._base.query(container, query)
        widened = Query(query.pk, query.filters, query.order_by, query.descending,
                        min(10_000, query.limit + len(mine)))
        touched = {(k[1], k[2]) for k, _ in mine}
        rows = [d for d in self._base.query(container, widened) if (d["pk"], d["id"]) not in touched]
        rows += [copy.deepcopy(d) for _, d in mine if d is not _GONE and all(_matches(d, f) for f in query.filters)]
        if query.order_by is not None:
            present = [d for d in rows if _value(d, query.order_by) is not None]
            absent = [d for d in rows if _value(d, query.order_by) is None]
            present.sort(key=lambda d: _value(d, query.order_by), reverse=query.descending)
            rows = absent + present if not query.descending else present + absent
        return rows[:query.limit]

    # --- writes (kept here) -------------------------------------------------------------

    def create(self, container: str, doc: Document) -> Document:
        return self.batch(container, doc["pk"], [Create(doc)])[0]

    def upsert(self, container: str, doc: Document, if_match: str | None = None) -> Document:
        return self.batch(container, doc["pk"], [Upsert(doc, if_match)])[0]

    def delete(self, container: str, pk: str, id: str, if_match: str | None = None) -> None:
        self.batch(container, pk, [Delete(id, if_match)])

    def batch(self, container: str, pk: str, operations: Sequence[Operation]) -> list[Document]:
        return one_batch(self, container, pk, operations)

    def batches(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        failed: set[str] = set()
        for work in batches:
            work.result, work.error = None, None
            if work.pk in failed:
                work.error = BatchSkipped(f"an earlier batch of partition {work.pk!r} failed")
                continue
            try:
                with self._lock:
                    work.result = self._apply(container, work)
            except StoreError as error:
                work.error = error
                failed.add(work.pk)

    def _apply(self, container: str, work: PartitionBatch) -> list[Document]:
        spec = BY_NAME.get(container)
        if len(work.operations) > MAX_BATCH_OPERATIONS:
            raise StoreError(f"a batch for {work.pk!r} has {len(work.operations)} operations; at most "
                             f"{MAX_BATCH_OPERATIONS} fit one transactional batch")
        if spec is not None and spec.append_only and any(not isinstance(op, Create) for op in work.operations):
            raise ImmutableDocument(f"container {container!r} is append-only: documents are never replaced or deleted")
        staged: dict[tuple[str, str, str], Any] = {}
        results: list[Document] = []

        def current(doc_id: str) -> Document | None:
            key = (container, work.pk, doc_id)
            if key in staged:
                return None if staged[key] is _GONE else staged[key]
            return self.read(container, work.pk, doc_id)

        for index, op in enumerate(work.operations):
            try:
                if isinstance(op, Delete):
                    existing = current(op.id)
                    if existing is None:
                        raise StoreError(f"document {op.id!r} not found")
                    if op.if_match is not None and existing.get("_etag") != op.if_match:
                        raise PreconditionFailed(f"document {op.id!r} changed since it was read")
                    staged[(container, work.pk, op.id)] = _GONE
                    results.append({"id": op.id, "pk": work.pk})
                    continue
                doc = op.doc
                if doc.get("pk") != work.pk:
                    raise StoreError(f"operation {index} has pk {doc.get('pk')!r}, batch is for {work.pk!r}")
                existing = current(doc["id"])
                if isinstance(op, Create) and existing is not None:
                    raise DocumentExists(f"document {doc['id']!r} already exists")
                if isinstance(op, Upsert) and op.if_match is not None and (
                        existing is None or existing.get("_etag") != op.if_match):
                    raise PreconditionFailed(f"document {doc['id']!r} changed since it was read")
                written = {k: v for k, v in copy.deepcopy(doc).items() if k not in ("_etag", "_ts")}
                written.update(_etag=f'"{uuid.uuid4()}"', _ts=int(self._now()))
                staged[(container, work.pk, doc["id"])] = written
                results.append(copy.deepcopy(written))
            except StoreError as cause:
                if len(work.operations) == 1:
                    raise
                raise BatchFailed(f"operation {index} of the batch was refused: {cause.message}", index,
                                  cause) from None
        self._docs.update(staged)
        self.writes += len(staged)
        return results

    def close(self) -> None:
        self._docs.clear()


def _value(doc: Document, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _matches(doc: Document, condition: Filter) -> bool:
    value = _value(doc, condition.field)
    op, wanted = condition.op, condition.value
    if wanted is None and op in ("=", "!="):
        # The port's meaning of None: "= None" matches a null or missing field, "!= None" a present one.
        return (value is None) == (op == "=")
    if value is None:
        return False  # a missing field compares as neither equal nor unequal to a value
    try:
        if op == "=":
            return bool(value == wanted)
        if op == "!=":
            return bool(value != wanted)
        if op == "in":
            return value in wanted
        if op == "<":
            return bool(value < wanted)
        if op == "<=":
            return bool(value <= wanted)
        if op == ">":
            return bool(value > wanted)
        if op == ">=":
            return bool(value >= wanted)
    except TypeError:
        return False
    raise AssertionError(f"unknown comparison {op!r}")
