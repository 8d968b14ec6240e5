"""The Cosmos DB NoSQL adapter of the document-store port (the production store).

It keeps the port's contract (``shared.store.port``) with Cosmos DB's own
mechanisms, through the synchronous ``azure-cosmos`` client:

* point reads, creates, upserts and deletes are single requests; an ``if_match``
  becomes an ETag precondition (``IfNotModified``). An ``Upsert`` with
  ``if_match`` is sent as a *replace*: "write over exactly the version I read"
  must fail when that version is gone, as it does in the embedded store;
* a partition batch is a Cosmos transactional batch (``execute_item_batch``),
  which the service commits all-or-nothing. Cosmos refuses batches over
  ``MAX_BATCH_OPERATIONS`` operations or ``MAX_BATCH_BYTES`` of payload; they
  are refused here, with the limit named, before any request is sent;
* ``batches`` sends the partition batches one by one: each is atomic on its own
  and gets its ``result`` or ``error``; when the store becomes unavailable the
  remaining batches are not attempted and get ``StoreUnavailable``;
* append-only containers refuse upsert, delete and non-create batch operations
  with ``ImmutableDocument`` before any request is made;
* queries are parameterised SQL. Only field paths are spliced into the text,
  after validation as identifiers, and in bracket notation (``c["field"]``) so
  that no field name can collide with a keyword; every value is a parameter;
* SDK errors become the port's typed errors: 409 ``DocumentExists``, 412
  ``PreconditionFailed``, a failed batch ``BatchFailed`` naming the operation,
  404 on a read ``None``, and connection failures, timeouts, 5xx and throttling
  that outlasted the SDK's own retries ``StoreUnavailable``;
* documents come back with ``_etag`` and ``_ts``; the other system properties
  (``_rid``, ``_self``, ``_attachments``) are removed, and are stripped from
  anything written, so a document read can be written back as it is.

A wrong or unreachable endpoint, a missing database or container, or an identity
without access fails at construction with a ``ConfigurationError`` naming the
setting to fix, rather than on the first request.

Cold start (issue 16): the containers are checked with one listing of the
database's containers, and each container's properties (partition key, resource
id) from that listing seed the SDK's cache, so neither the check nor the first
request of each container reads its metadata again: two metadata requests at
start (the account, the listing) instead of one per container and the database.
``meter`` counts requests by kind and sums their request charge (RU), from the
``x-ms-request-charge`` header, for the RU benchmark and the start-up test.

Time to live: a write to a container with a TTL rule carries the ``ttl`` the
policy gives (``shared.store.layout.TtlPolicy``); ``ttl`` is removed from what
the adapter returns, like the other system properties.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections import Counter
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlparse

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.errors import (
    BatchFailed,
    BatchSkipped,
    ConfigurationError,
    DocumentExists,
    ImmutableDocument,
    PreconditionFailed,
    StoreError,
    StoreUnavailable,
)
from shared.store.layout import DEFAULT_TTL, PARTITION_KEY_PATH, TtlPolicy, container_default_ttl, indexing_policy
from shared.store.port import (
    ContainerSpec,
    Create,
    Delete,
    Document,
    Operation,
    PartitionBatch,
    Query,
    Upsert,
    check_field_path,
    one_batch,
)
from shared.telemetry import tracing
from shared.telemetry.cosmos import record_request_charge

# Service limits of a transactional batch (Cosmos DB documentation, "Transactional batch").
MAX_BATCH_OPERATIONS = 100
MAX_BATCH_BYTES = 2 * 1024 * 1024
# A batch's size is estimated from each body's compact JSON: one encoder for every body.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

# System properties the service adds that the port does not expose.
_HIDDEN_SYSTEM_PROPERTIES = ("_rid", "_self", "_attachments")
# Properties never sent on a write: the service owns them.
_NOT_WRITTEN = ("_etag", "_ts", *_HIDDEN_SYSTEM_PROPERTIES)

# Statuses that mean "try later", not "your request is wrong": timeout, throttled
# past the SDK's retries, retry-with, and server-side failures.
_UNAVAILABLE_STATUSES = frozenset({408, 429, 449, 500, 502, 503, 504})

_SQL_OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _both(*hooks: Callable[[Any], None]) -> Callable[[Any], None]:
    """One ``raw_response_hook`` that calls each of ``hooks`` (the SDK takes one)."""
    def call(response: Any) -> None:
        for hook in hooks:
            hook(response)
    return call


# Tries of a query that lost the SDK's shared-headers race (``CosmosDocumentStore.query``).
QUERY_TRIES = 5


def _lost_headers_race(exc: RuntimeError) -> bool:
    """Whether ``exc`` is azure-cosmos's shared response-headers race: the client merges one
    headers dict for all its threads, so concurrent calls can fail with "mutated during
    iteration". A read that lost it changed nothing and can be answered again."""
    return "mutated during iteration" in str(exc)


class RequestMeter:
    """Requests the adapter made, by kind, and the RU they were charged.

    Kinds: ``document`` (reads, writes, queries and batches of documents),
    ``pkranges`` (the SDK's routing map, once per container queried),
    ``container`` (a container, a database or a listing of either: the
    metadata a cold start reads) and ``account``. ``charge`` sums
    ``x-ms-request-charge`` where the service sends it (the emulator does not:
    then it stays 0)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.charge = 0.0

    def __call__(self, response: Any) -> None:
        path = urlparse(response.http_request.url).path
        kind = ("document" if "/docs" in path else "pkranges" if "/pkranges" in path
                else "account" if path.strip("/") == "" else "container")
        charge = response.http_response.headers.get("x-ms-request-charge")
        with self._lock:
            self.requests[kind] += 1
            if charge:
                self.charge += float(charge)

    def snapshot(self) -> tuple[dict[str, int], float]:
        with self._lock:
            return dict(self.requests), self.charge


def _traced(operation: str):  # type: ignore[no-untyped-def]
    """A CLIENT span per store call, named by operation, with the container."""
    return tracing.traced(f"cosmos {operation}", tracing.CLIENT, {"db.collection.name": "container"},
                          **{"db.system.name": "azure.cosmosdb"})


class CosmosDocumentStore:
    """The document-store port over one Cosmos DB database."""

    def __init__(
        self,
        endpoint: str,
        database: str,
        containers: Iterable[ContainerSpec],
        *,
        credential: Any,
        connection_verify: bool = True,
        create_if_missing: bool = False,
        connection_timeout_s: int = 10,
        ttl: TtlPolicy = DEFAULT_TTL,
    ) -> None:
        """Connect and check that the database and every container exist.

        ``credential`` is a ``TokenCredential`` (``DefaultAzureCredential`` on
        Azure: the managed identity) or an account key string.
        ``connection_verify=False`` accepts a self-signed certificate: for the
        emulator only. ``create_if_missing`` creates the database and containers
        (partitioned on ``/pk``, with the indexing policy and default TTL Bicep
        gives them): for tests and local runs; on Azure, Bicep creates them.
        """
        self.endpoint = endpoint
        self.database = database
        self._specs = {spec.name: spec for spec in containers}
        self._containers: dict[str, ContainerProxy] = {}
        self._ttl = ttl
        # Properties the adapter removes from what it returns, per container.
        self._hidden = {name: _HIDDEN_SYSTEM_PROPERTIES + (("ttl",) if ttl.applies_to(name) else ())
                        for name in self._specs}
        self.meter = RequestMeter()
        try:
            self._client = CosmosClient(
                endpoint,
                credential,
                connection_verify=connection_verify,
                connection_timeout=connection_timeout_s,
                raw_response_hook=_both(self.meter, record_request_charge),  # our meter; RU metrics (shared/telemetry/cosmos.py)
            )
        except CosmosHttpResponseError as exc:
            raise _startup_error(exc, endpoint, "the account", "COSMOS_ENDPOINT") from exc
        except (AzureError, ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"cannot reach Cosmos DB at COSMOS_ENDPOINT={endpoint!r}: {_short(exc)}. "
                "Check COSMOS_ENDPOINT (https://<account>.documents.azure.com:443/) and the network path."
            ) from exc
        try:
            if create_if_missing:
                db = self._client.create_database_if_not_exists(database)
            else:
                db = self._client.get_database_client(database)
            # One request for every container's properties (a missing database: 404 here).
            listed = {props["id"]: props for props in db.list_containers()}
        except CosmosHttpResponseError as exc:
            raise _startup_error(exc, endpoint, f"database {database!r}", "COSMOS_DATABASE") from exc
        except AzureError as exc:
            raise ConfigurationError(
                f"cannot reach Cosmos DB at COSMOS_ENDPOINT={endpoint!r}: {_short(exc)}"
            ) from exc
        for spec in self._specs.values():
            props = listed.get(spec.name)
            try:
                if props is None and create_if_missing:
                    proxy = db.create_container_if_not_exists(
                        spec.name, PartitionKey(path=PARTITION_KEY_PATH), indexing_policy=indexing_policy(spec.name),
                        default_ttl=container_default_ttl(spec.name))
                elif props is None:
                    raise ConfigurationError(
                        f"container {spec.name!r} in database {database!r} does not exist at "
                        f"COSMOS_ENDPOINT={endpoint!r}: check COSMOS_DATABASE or deploy the templates")
                else:
                    # Seeded with the listed properties: the SDK reads no container metadata.
                    proxy = ContainerProxy(db.client_connection, db.database_link, spec.name, properties=props)
            except CosmosHttpResponseError as exc:
                raise _startup_error(
                    exc, endpoint, f"container {spec.name!r} in database {database!r}", "COSMOS_DATABASE"
                ) from exc
            except AzureError as exc:
                raise ConfigurationError(
                    f"cannot reach Cosmos DB at COSMOS_ENDPOINT={endpoint!r}: {_short(exc)}"
                ) from exc
            self._containers[spec.name] = proxy

    def close(self) -> None:
        self._client.close()

    def _container(self, name: str) -> tuple[ContainerSpec, ContainerProxy]:
        try:
            return self._specs[name], self._containers[name]
        except KeyError:
            raise StoreError(f"unknown container {name!r}") from None

    # --- reads ---------------------------------------------------------------------

    @_traced("read")
    def read(self, container: str, pk: str, id: str) -> Document | None:
        _, proxy = self._container(container)
        try:
            return _clean(proxy.read_item(item=id, partition_key=pk), self._hidden[container])
        except CosmosHttpResponseError as exc:
            if exc.status_code == 404:
                return None
            raise _translate(exc, f"reading {id!r} from {container!r}") from exc
        except AzureError as exc:
            raise _translate(exc, f"reading {id!r} from {container!r}") from exc

    @_traced("read_many")
    def read_many(self, container: str, keys: Sequence[tuple[str, str]]) -> list[Document | None]:
        """``read`` of many ``(pk, id)`` keys in one SDK call (``read_items``: the SDK
        groups them by physical partition and queries each once) instead of a round
        trip per key; answered in the order asked, None where absent."""
        _, proxy = self._container(container)
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return []
        try:
            items = proxy.read_items(items=[(id, pk) for pk, id in wanted])
        except AzureError as exc:
            raise _translate(exc, f"reading {len(wanted)} document(s) from {container!r}") from exc
        except RuntimeError as exc:
            # The shared-headers race (seen under 20 concurrent intakes): answer the same keys
            # by point reads, which do not share that dict.
            if not _lost_headers_race(exc):
                raise
            return [self.read(container, pk, id) for pk, id in keys]
        found = {(doc["pk"], doc["id"]): _clean(doc, self._hidden[container]) for doc in items}
        answers: list[Document | None] = []
        given: set[tuple[str, str]] = set()
        for key in keys:
            doc = found.get(key)
            # A key asked twice gets two documents: each answer is the caller's own to change.
            answers.append(copy.deepcopy(doc) if doc is not None and key in given else doc)
            given.add(key)
        return answers

    @_traced("query")
    def query(self, container: str, query: Query) -> list[Document]:
        _, proxy = self._container(container)
        sql, parameters = build_sql(query)
        options: dict[str, Any] = (
            {"partition_key": query.pk} if query.pk is not None else {"enable_cross_partition_query": True}
        )
        for attempt in range(1, QUERY_TRIES + 1):
            try:
                items = proxy.query_items(sql, parameters=parameters, max_item_count=min(query.limit, 1000),
                                          **options)
                # TOP already bounds the answer; islice keeps the bound even if a
                # cross-partition plan returns one page more than asked.
                return [_clean(doc, self._hidden[container]) for doc in itertools.islice(items, query.limit)]
            except AzureError as exc:
                raise _translate(exc, f"querying {container!r}") from exc
            except RuntimeError as exc:
                # The shared-headers race (seen in the concurrent pool hand-out test): ask again.
                if not _lost_headers_race(exc) or attempt == QUERY_TRIES:
                    raise
        raise AssertionError("unreachable: the last try returns or raises")

    # --- single writes -------------------------------------------------------------

    @_traced("create")
    def create(self, container: str, doc: Document) -> Document:
        _, proxy = self._container(container)
        body = self._stamp(container, _body(doc))
        try:
            return _clean(proxy.create_item(body), self._hidden[container])
        except AzureError as exc:
            raise _translate(exc, f"creating {body['id']!r} in {container!r}") from exc

    @_traced("upsert")
    def upsert(self, container: str, doc: Document, if_match: str | None = None) -> Document:
        spec, proxy = self._container(container)
        _refuse_if_append_only(spec, "upsert")
        body = self._stamp(container, _body(doc))
        hidden = self._hidden[container]
        what = f"writing {body['id']!r} in {container!r}"
        try:
            if if_match is None:
                return _clean(proxy.upsert_item(body), hidden)
            return _clean(proxy.replace_item(
                item=body["id"], body=body, etag=if_match, match_condition=MatchConditions.IfNotModified,
            ), hidden)
        except CosmosHttpResponseError as exc:
            if if_match is not None and exc.status_code == 404:
                # The version the caller read is gone: the same answer as a changed one.
                raise PreconditionFailed(f"document {body['id']!r} changed since it was read") from exc
            raise _translate(exc, what) from exc
        except AzureError as exc:
            raise _translate(exc, what) from exc

    @_traced("delete")
    def delete(self, container: str, pk: str, id: str, if_match: str | None = None) -> None:
        spec, proxy = self._container(container)
        _refuse_if_append_only(spec, "delete")
        kwargs: dict[str, Any] = {}
        if if_match is not None:
            kwargs = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        try:
            proxy.delete_item(item=id, partition_key=pk, **kwargs)
        except CosmosHttpResponseError as exc:
            if exc.status_code == 404:
                raise StoreError(f"document {id!r} not found") from exc
            raise _translate(exc, f"deleting {id!r} from {container!r}") from exc
        except AzureError as exc:
            raise _translate(exc, f"deleting {id!r} from {container!r}") from exc

    def _stamp(self, container: str, body: Document) -> Document:
        """The body with the ``ttl`` its container's rule gives (unchanged without a rule)."""
        ttl = self._ttl.seconds(container, body)
        if ttl is None:
            return body
        assert ttl == -1 or ttl > 0, "Cosmos DB accepts a ttl of -1 or a positive number of seconds"
        body["ttl"] = ttl
        return body

    # --- batches -------------------------------------------------------------------

    def batch(self, container: str, pk: str, operations: Sequence[Operation]) -> list[Document]:
        return one_batch(self, container, pk, operations)

    @_traced("batches")
    def batches(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        spec, proxy = self._container(container)
        prepared: dict[int, list[tuple[Any, ...]]] = {}  # id(batch) -> its SDK operations
        # Check everything first: a programming error (wrong pk, oversized
        # batch) is raised before any batch is sent, as in the embedded store.
        for work in batches:
            work.result, work.error = None, None
            if spec.append_only and any(not isinstance(op, Create) for op in work.operations):
                work.error = ImmutableDocument(
                    f"container {spec.name!r} is append-only: documents are never replaced or deleted"
                )
                continue
            prepared[id(work)] = _sdk_operations(work, lambda body: self._stamp(container, body))
        unavailable: StoreUnavailable | None = None
        # The port's chain: once a batch of a partition fails, its later batches in this call are
        # skipped, as a caller (the ledger) planned them on what the failed one would have written.
        failed: set[str] = set()
        for work in batches:
            if id(work) not in prepared:  # refused by the checks above
                failed.add(work.pk)
                continue
            sdk_ops = prepared[id(work)]
            if unavailable is not None:
                work.error = StoreUnavailable(f"not attempted: {unavailable.message}")
                continue
            if work.pk in failed:
                work.error = BatchSkipped(f"an earlier batch of {work.pk!r} in this call failed")
                continue
            if not sdk_ops:
                work.result = []
                continue
            try:
                responses = proxy.execute_item_batch(batch_operations=sdk_ops, partition_key=work.pk)
                work.result = [_batch_result(op, work.pk, response, self._hidden[container])
                               for op, response in zip(work.operations, responses)]
            except CosmosBatchOperationError as exc:
                work.error = _batch_error(work, exc)
                failed.add(work.pk)
            except AzureError as exc:
                error = _translate(exc, f"batch for {work.pk!r} in {container!r}")
                work.error = error
                failed.add(work.pk)
                if isinstance(error, StoreUnavailable):
                    unavailable = error


# --- SQL ---------------------------------------------------------------------------


def _ref(path: str) -> str:
    """``a.b`` -> ``c["a"]["b"]``: validated identifiers in bracket notation."""
    return "c" + "".join(f'["{part}"]' for part in check_field_path(path).split("."))


def build_sql(query: Query) -> tuple[str, list[dict[str, Any]]]:
    """Translate a port ``Query`` to Cosmos SQL text and its parameters.

    ``= None`` matches a missing field as well as an explicit null (and ``!=
    None`` neither), as ``json_extract(...) IS NULL`` does in the embedded store.
    """
    parameters: list[dict[str, Any]] = [{"name": "@limit", "value": query.limit}]
    clauses: list[str] = []

    def param(value: Any) -> str:
        name = f"@p{len(parameters) - 1}"
        parameters.append({"name": name, "value": value})
        return name

    if query.pk is not None:
        # The partition_key option already routes the query; the clause keeps
        # the answer right even where the option is ignored (the emulator).
        clauses.append(f'c["pk"] = {param(query.pk)}')
    for flt in query.filters:
        ref = _ref(flt.field)
        if flt.op == "in":
            clauses.append(f"{ref} IN ({', '.join(param(v) for v in flt.value)})")
        elif flt.value is None and flt.op == "=":
            clauses.append(f"(NOT IS_DEFINED({ref}) OR IS_NULL({ref}))")
        elif flt.value is None and flt.op == "!=":
            clauses.append(f"(IS_DEFINED({ref}) AND NOT IS_NULL({ref}))")
        elif flt.op == "!=":
            # As the embedded store's json_extract(...) != ?: a null field matches nothing
            # (Cosmos DB's null != 5 is true).
            clauses.append(f"(NOT IS_NULL({ref}) AND {ref} != {param(flt.value)})")
        else:
            clauses.append(f"{ref} {_SQL_OPS[flt.op]} {param(flt.value)}")
    sql = "SELECT TOP @limit * FROM c"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    if query.order_by:
        sql += f" ORDER BY {_ref(query.order_by)} {'DESC' if query.descending else 'ASC'}"
    return sql, parameters


# --- documents and operations -------------------------------------------------------


def _clean(doc: dict[str, Any], hidden: tuple[str, ...] = _HIDDEN_SYSTEM_PROPERTIES) -> Document:
    return {k: v for k, v in doc.items() if k not in hidden}


def _body(doc: Document) -> Document:
    body = {k: v for k, v in doc.items() if k not in _NOT_WRITTEN}
    doc_id, pk = body.get("id"), body.get("pk")
    if not isinstance(doc_id, str) or not doc_id:
        raise StoreError("a document needs a non-empty string id")
    if not isinstance(pk, str) or not pk:
        raise StoreError("a document needs a non-empty string pk")
    return body


def _refuse_if_append_only(spec: ContainerSpec, action: str) -> None:
    if spec.append_only:
        raise ImmutableDocument(
            f"container {spec.name!r} is append-only: {action} refused, documents are never replaced or deleted"
        )


def _sdk_operations(work: PartitionBatch, stamp: Any = lambda body: body) -> list[tuple[Any, ...]]:
    if len(work.operations) > MAX_BATCH_OPERATIONS:
        raise StoreError(
            f"a batch for {work.pk!r} has {len(work.operations)} operations; Cosmos DB commits at most "
            f"{MAX_BATCH_OPERATIONS} in one transactional batch: split the work"
        )
    sdk_ops: list[tuple[Any, ...]] = []
    size = 0
    for index, op in enumerate(work.operations):
        if isinstance(op, Delete):
            sdk_op: tuple[Any, ...] = ("delete", (op.id,))
            if op.if_match is not None:
                sdk_op += ({"if_match_etag": op.if_match},)
            size += len(op.id) + 64
        else:
            body = stamp(_body(op.doc))
            if body["pk"] != work.pk:
                raise StoreError(f"operation {index} has pk {body['pk']!r}, batch is for {work.pk!r}")
            if isinstance(op, Create):
                sdk_op = ("create", (body,))
            elif op.if_match is None:
                sdk_op = ("upsert", (body,))
            else:
                sdk_op = ("replace", (body["id"], body), {"if_match_etag": op.if_match})
            size += len(_COMPACT.encode(body).encode()) + 64
        sdk_ops.append(sdk_op)
    if size > MAX_BATCH_BYTES:
        raise StoreError(
            f"a batch for {work.pk!r} carries about {size} bytes; Cosmos DB accepts at most {MAX_BATCH_BYTES} "
            "bytes in one transactional batch: split the work"
        )
    return sdk_ops


def _batch_result(op: Operation, pk: str, response: dict[str, Any],
                  hidden: tuple[str, ...] = _HIDDEN_SYSTEM_PROPERTIES) -> Document:
    if isinstance(op, Delete):
        return {"id": op.id, "pk": pk}
    body = response.get("resourceBody")
    if isinstance(body, dict):
        return _clean(body, hidden)
    # The service omits bodies when content responses are off: rebuild from what was sent.
    return _clean(dict(_body(op.doc), _etag=response.get("eTag"), _ts=int(time.time())), hidden)


def _batch_error(work: PartitionBatch, exc: CosmosBatchOperationError) -> StoreError:
    index = exc.error_index if exc.error_index is not None else 0
    op = work.operations[index] if 0 <= index < len(work.operations) else None
    status = exc.status_code
    cause = _operation_error(op, status, exc)
    if len(work.operations) == 1:
        return cause
    return BatchFailed(f"batch refused at operation {index}: {cause.message}", index=index, cause=cause)


def _operation_error(op: Operation | None, status: int | None, exc: Exception) -> StoreError:
    doc_id = op.id if isinstance(op, Delete) else (op.doc.get("id") if op is not None else "?")
    if status == 409:
        return DocumentExists(f"document {doc_id!r} already exists")
    if status == 412 or (status == 404 and isinstance(op, Upsert) and op.if_match is not None):
        return PreconditionFailed(f"document {doc_id!r} changed since it was read")
    if status == 404:
        return StoreError(f"document {doc_id!r} not found")
    if status in _UNAVAILABLE_STATUSES:
        return StoreUnavailable(f"Cosmos DB is unavailable ({status}): {_short(exc)}")
    return StoreError(f"Cosmos DB refused the operation on {doc_id!r} ({status}): {_short(exc)}")


# --- errors ------------------------------------------------------------------------


def _translate(exc: Exception, what: str) -> StoreError:
    if isinstance(exc, CosmosHttpResponseError):
        status = exc.status_code
        if status == 409:
            return DocumentExists(f"{what}: the document already exists")
        if status == 412:
            return PreconditionFailed(f"{what}: the document changed since it was read")
        if status in _UNAVAILABLE_STATUSES:
            return StoreUnavailable(f"{what}: Cosmos DB is unavailable ({status}): {_short(exc)}")
        if status == 413:
            return StoreError(f"{what}: the document is larger than Cosmos DB accepts (2 MB)")
        return StoreError(f"{what}: Cosmos DB refused the request ({status}): {_short(exc)}")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StoreUnavailable(f"{what}: cannot reach Cosmos DB: {_short(exc)}")
    return StoreUnavailable(f"{what}: {_short(exc)}")


def _startup_error(exc: CosmosHttpResponseError, endpoint: str, what: str, setting: str) -> ConfigurationError:
    if exc.status_code == 404:
        return ConfigurationError(
            f"{what} does not exist at COSMOS_ENDPOINT={endpoint!r}: check {setting} or deploy the templates"
        )
    if exc.status_code in (401, 403):
        return ConfigurationError(
            f"the identity may not open {what} at COSMOS_ENDPOINT={endpoint!r} ({exc.status_code}): "
            "grant it the Cosmos DB data contributor role, or check COSMOS_ENDPOINT"
        )
    return ConfigurationError(f"cannot open {what} at COSMOS_ENDPOINT={endpoint!r}: {_short(exc)}")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
