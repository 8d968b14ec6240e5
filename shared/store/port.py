"""The document-store port: what the domain may ask of a store, and nothing more.

The shape follows Cosmos DB NoSQL, the production store, reduced to what Accrue
uses: JSON documents with an ``id`` unique inside a partition key ``pk``, point
reads, creates, ETag-guarded upserts, atomic batches inside one partition, and
a small structured query (equality/range filters, one ORDER BY, a LIMIT) that
both adapters translate to their own SQL with parameters, never string-built
values.

Guarantees every adapter gives (the contract tests in
``tests/integration/store`` hold each adapter to them):

* ``batch`` is all-or-nothing inside one partition; a refused operation raises
  ``BatchFailed`` naming its index and nothing of the batch is written.
* containers listed as append-only (the ledger, the audit log) accept creates
  only: ``upsert``, ``delete`` and any non-create batch operation raise
  ``ImmutableDocument`` before touching the store.
* every stored document comes back with ``_etag`` (changes on each write) and
  ``_ts`` (epoch seconds of the write).
* a partition batch holds at most ``MAX_BATCH_OPERATIONS`` operations (Cosmos
  DB's transactional batch limit), in every adapter, so code that passes on
  the embedded store passes on Cosmos.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence, Union

from shared.errors import StoreError
from shared.store.lines import LineSpec

Document = dict[str, Any]

MAX_BATCH_OPERATIONS = 100

FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,4}$")


def check_field_path(path: str) -> str:
    """Field paths are identifiers only: they are spliced into SQL, values never are."""
    if not FIELD_PATH.match(path):
        raise ValueError(f"invalid field path {path!r}")
    return path


@dataclass(frozen=True)
class Create:
    doc: Document


@dataclass(frozen=True)
class Upsert:
    doc: Document
    if_match: str | None = None


@dataclass(frozen=True)
class Delete:
    id: str
    if_match: str | None = None


Operation = Union[Create, Upsert, Delete]

Comparison = Literal["=", "!=", "<", "<=", ">", ">=", "in"]


@dataclass(frozen=True)
class Filter:
    field: str
    op: Comparison
    value: Any

    def __post_init__(self) -> None:
        # What both adapters answer alike (tests/integration/store/test_store_contract.py): a
        # null or missing field matches only ``= None``; ``in`` and the ranges compare values
        # (Cosmos DB's ``IN (null)`` matches null, SQLite's never), and a range compares a field
        # with a value of its own kind (SQLite orders numbers before strings, Cosmos DB does not
        # compare them): callers compare numbers with numbers, strings with strings.
        check_field_path(self.field)
        if self.op == "in":
            assert isinstance(self.value, (list, tuple)) and self.value, "'in' needs a non-empty list"
            assert all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in self.value), \
                "'in' takes strings and numbers; a missing field is '= None'"
        elif self.op in ("<", "<=", ">", ">="):
            assert isinstance(self.value, (str, int, float)) and not isinstance(self.value, bool), \
                "a range compares with a string or a number"


@dataclass(frozen=True)
class Query:
    """A query over one partition (``pk``) or, with ``pk=None``, across partitions."""

    pk: str | None
    filters: tuple[Filter, ...] = ()
    order_by: str | None = None
    descending: bool = False
    limit: int = 100

    def __post_init__(self) -> None:
        if self.order_by is not None:
            check_field_path(self.order_by)
        assert 1 <= self.limit <= 10_000, "query limit out of range"


@dataclass(frozen=True)
class Change:
    """One entry of a container's change feed: the document as written."""

    lsn: int
    container: str
    doc: Document


@dataclass
class PartitionBatch:
    """Operations that must commit atomically inside one partition."""

    pk: str
    operations: list[Operation]
    result: list[Document] | None = None
    error: StoreError | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """How a container is laid out: its name, whether it is append-only, the fields
    a query orders or range-filters by (``indexed``: an index each in the SQLite
    adapter), and the fields queries only compare alongside an indexed one
    (``filtered``: a column in SQLite, no index of its own, which every write
    would pay for without a query ever using it). Cosmos covers both with its
    default range index.

    ``sparse``: indexed fields that many of the container's documents lack (the
    ledger's ``seq`` and ``referenceOrderId``: markers and order records have
    neither). The SQLite adapter's index of such a field holds only the documents
    that have it, so writing the others costs no index insert. Answers are the
    same; only a query that orders by a sparse field without comparing it (``seq
    > 0``) cannot use that index and sorts the partition instead."""

    name: str
    append_only: bool = False
    change_feed: bool = False
    indexed: tuple[str, ...] = field(default_factory=tuple)
    filtered: tuple[str, ...] = field(default_factory=tuple)
    sparse: tuple[str, ...] = field(default_factory=tuple)
    # Fields the SQLite adapter also keeps as one CSV line per document (``shared.store.lines``),
    # for columnar readers; Cosmos keeps none.
    line: LineSpec | None = None

    def __post_init__(self) -> None:
        if not set(self.sparse) <= set(self.indexed):
            raise ValueError(f"container {self.name!r}: sparse fields must be indexed ones")

    @property
    def extracted(self) -> tuple[str, ...]:
        """Every field the SQLite adapter keeps as a column: indexed, then filtered."""
        return self.indexed + self.filtered


class DocumentStore(Protocol):
    def read(self, container: str, pk: str, id: str) -> Document | None: ...

    def create(self, container: str, doc: Document) -> Document: ...

    def upsert(self, container: str, doc: Document, if_match: str | None = None) -> Document: ...

    def delete(self, container: str, pk: str, id: str, if_match: str | None = None) -> None: ...

    def batch(self, container: str, pk: str, operations: Sequence[Operation]) -> list[Document]: ...

    def batches(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        """Run several partition batches, in order; each is atomic on its own and
        gets its ``result`` or ``error`` filled in. Batches of one partition form
        a chain: once one fails, the later ones of that partition in this call
        are not attempted (``BatchSkipped``), because a caller may have planned
        them on what the failed one would have written. Adapters may commit the
        batches together (the SQLite adapter does: one fsync for many)."""
        ...

    def query(self, container: str, query: Query) -> list[Document]: ...

    def close(self) -> None: ...


class ChangeFeedSource(Protocol):
    """A readable change log (the embedded store's); Cosmos pushes through its trigger."""

    def changes(self, container: str, after_lsn: int, limit: int) -> list[Change]: ...


async def batches_async(store: DocumentStore, container: str, batches: Sequence[PartitionBatch]) -> None:
    """``store.batches`` from an event loop: the adapter's own ``batches_async``
    where it has one (the SQLite store's committer thread), else ``batches`` in a
    worker thread. Same guarantees and the same filled-in results."""
    native = getattr(type(store), "batches_async", None)
    if native is not None:
        await native(store, container, batches)
    else:
        await asyncio.to_thread(store.batches, container, batches)


def one_batch(store: DocumentStore, container: str, pk: str, operations: Sequence[Operation]) -> list[Document]:
    """``batch`` in terms of ``batches``, for every adapter: one partition batch, its
    results, or its error raised."""
    work = PartitionBatch(pk=pk, operations=list(operations))
    store.batches(container, [work])
    if work.error is not None:
        raise work.error
    assert work.result is not None, "a batch that did not fail has its results"
    return work.result


def read_many(store: DocumentStore, container: str, keys: Sequence[tuple[str, str]]) -> list[Document | None]:
    """Point reads of several ``(pk, id)`` keys, answered in the order asked (None:
    not there). The adapter's own ``read_many`` where it has one (the SQLite store:
    one statement for them all instead of a statement each), else one ``read`` per
    key. Same documents as ``read`` would give, and no more consistent than it: each
    key is read as of some moment of the call."""
    native = getattr(type(store), "read_many", None)
    if native is not None:
        return native(store, container, keys)
    return [store.read(container, pk, id) for pk, id in keys]


@dataclass(frozen=True)
class JsonScan:
    """A page of ``scan_json``: the documents' stored JSON, one per line (UTF-8 bytes, as
    stored: no ``_etag``/``_ts``), how many, and the ``(pk, order value)`` of the last
    document scanned (where the next page starts), None on the last page."""

    ndjson: bytes
    count: int
    after: tuple[str, Any] | None


def scan_json(store: DocumentStore, container: str, pk_from: str, pk_to: str, filters: tuple[Filter, ...],
              order_by: str, after: tuple[str, Any] | None, limit: int) -> JsonScan | None:
    """Documents of the partitions ``pk_from <= pk <= pk_to`` matching ``filters``, ordered
    by ``(pk, order_by)`` after ``after``, at most ``limit``, as raw JSON lines for
    columnar readers (exports build Arrow columns from them with no per-document
    Python object). Documents without ``order_by`` are not scanned. The adapter's
    own ``scan_json`` where it has one (the SQLite store); None where it has none, and
    the caller reads documents with ``query`` instead."""
    native = getattr(type(store), "scan_json", None)
    if native is None:
        return None
    return native(store, container, pk_from, pk_to, filters, order_by, after, limit)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LineScan:
    """A page of ``scan_lines``: the documents' lines (``ContainerSpec.line``), one per
    line of text (UTF-8 bytes), how many documents, and where the next page starts (as
    ``JsonScan``). ``lines`` is None when a document of the page has no line (written
    before the store kept lines, or one a line cannot hold): the caller reads that page
    with ``scan_json``."""

    lines: bytes | None
    count: int
    after: tuple[str, Any] | None


def scan_lines(store: DocumentStore, container: str, pk_from: str, pk_to: str, filters: tuple[Filter, ...],
               order_by: str, after: tuple[str, Any] | None, limit: int) -> LineScan | None:
    """``scan_json``'s page, as the documents' lines instead of their JSON; None from a
    store that keeps no lines (the caller uses ``scan_json`` or ``query``)."""
    native = getattr(type(store), "scan_lines", None)
    if native is None:
        return None
    return native(store, container, pk_from, pk_to, filters, order_by, after, limit)  # type: ignore[no-any-return]


def latest_lsn(store: DocumentStore, container: str) -> int | None:
    """The newest lsn of ``container``'s change log; None for a store without one (Cosmos)."""
    native = getattr(type(store), "latest_lsn", None)
    return None if native is None else native(store, container)  # type: ignore[no-any-return]


def changed_partitions(store: DocumentStore, container: str, after_lsn: int, upto_lsn: int, pk_from: str,
                       pk_below: str) -> list[str] | None:
    """The partition keys ``pk_from <= pk < pk_below`` with a write whose lsn is in
    ``(after_lsn, upto_lsn]``, sorted, from the store's change log (the SQLite store);
    None where the store keeps none, and the caller reads every partition instead."""
    native = getattr(type(store), "changed_partitions", None)
    if native is None:
        return None
    return native(store, container, after_lsn, upto_lsn, pk_from, pk_below)  # type: ignore[no-any-return]


def inline_reads(store: DocumentStore) -> bool:
    """Whether the store's point reads are cheap enough to run on an event loop: an
    adapter says so with ``inline_reads = True`` (the embedded SQLite store: a few
    tens of µs from a local file). Any other (Cosmos: a network round trip) is read
    from a worker thread."""
    return getattr(store, "inline_reads", False) is True
