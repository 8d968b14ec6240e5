"""The Event Hubs adapter of the order bus (``azure-eventhub``, sync producer).

What it guarantees, on top of the port's contract (``shared.bus.port``):

* **Per-customer order.** Every message of one partition key
  (``tenantId:customerId``) goes to one Event Hubs partition, in the order
  given, in batches sent one after another: a customer's orders are read back
  in publish order.
* **Few batches, sent concurrently.** Messages are packed per *partition*
  (not per customer): the key is mapped to a partition id with the same hash
  the SDK's buffered producer uses, so 500 orders of 500 customers are as many
  batches as the size limit needs per partition (a 32-partition hub: about 32),
  not 500. The partitions' batch chains are sent concurrently on a small thread
  pool (``max_concurrency``), each partition's chain in order on one thread.
  The SDK supports this: each partition has its own link and send lock (its
  buffered producer sends from one thread per partition the same way).
* **Acknowledged before return.** ``publish`` returns only after every
  ``send_batch`` returned, i.e. the service acknowledged every event. On a
  failure it still waits for every send in flight to end before raising, so
  nothing of this call is still going out when the caller retries.
* **Nothing sent for a message that cannot go.** Every batch is built (and
  every event size-checked) before the first send, so an event too large for
  an empty batch raises ``PayloadTooLarge`` and sends nothing.
* **Typed failures.** Every SDK error (``EventHubError`` and its subclasses,
  ``azure.core`` credential errors) becomes ``BusUnavailable`` with a message
  that says what to check. Nothing from the SDK leaks to the domain.

What it does not guarantee: a ``publish`` that fails part-way may have sent
other partitions' batches (or the first batches of the failing one). The
caller gets ``BusUnavailable`` and retries; ingestion is idempotent (the
ledger's idempotency marker), so re-sent orders change nothing.

Why not ``EventHubBufferedProducerClient``: it acknowledges through callbacks
after ``send_event`` has returned, so "nothing acknowledged before it is
durable" would need a flush (or a wait on callbacks) per publish, and its
buffers mix concurrent requests' events. Building the batches ourselves and
waiting on our own sends keeps the guarantee plain.

Partition mapping: the key-to-partition hash is the SDK's own
(``azure.eventhub._buffered_producer._partition_resolver``, a private module,
hence the exact pin of azure-eventhub and a test of its contract). It only has
to be stable, not equal to the service's hash: every order goes out through
this adapter, so one customer always lands on one partition. Should the module
disappear in a later SDK, the adapter falls back to one batch chain per key
(``create_batch(partition_key=...)``), still concurrent, still ordered.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient
from azure.eventhub.exceptions import (
    AuthenticationError,
    ConnectError,
    EventHubError,
    OperationTimeoutError,
)

from shared.bus.port import BusMessage
from shared.errors import AccrueError, BusUnavailable, PayloadTooLarge
from shared.telemetry import tracing

try:  # the SDK's key hash (private module: see the module docstring)
    from azure.eventhub._buffered_producer._partition_resolver import PartitionResolver as _SdkResolver
except ImportError:  # pragma: no cover - a later SDK without it: one chain per key
    _SdkResolver = None

CONTENT_TYPE = "application/json"
DEFAULT_CONCURRENCY = 8


class Producer(Protocol):
    """The part of ``EventHubProducerClient`` the adapter uses (tests pass a fake
    that returns real ``EventDataBatch`` objects)."""

    def get_partition_ids(self) -> list[str]: ...

    def create_batch(self, *, partition_id: str | None = None, partition_key: str | None = None,
                     **kwargs: Any) -> EventDataBatch: ...

    def send_batch(self, event_data_batch: EventDataBatch, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Lane:
    """The messages bound for one partition (or, without the resolver, one key), in order,
    and the batches built for them. ``keys``: the partition keys it carries, for errors."""

    target: dict[str, str]            # the create_batch keyword: partition_id or partition_key
    messages: list[BusMessage] = field(default_factory=list)
    batches: list[EventDataBatch] = field(default_factory=list)

    def keys(self) -> list[str]:
        return list(dict.fromkeys(m.partition_key for m in self.messages))


class EventHubsOrderBus:
    def __init__(self, producer: Producer, *, eventhub_name: str = "", namespace: str = "",
                 max_concurrency: int = DEFAULT_CONCURRENCY, use_partition_ids: bool = True) -> None:
        assert max_concurrency >= 1, "at least one sender"
        self._producer = producer
        self._where = f"event hub {eventhub_name!r} in {namespace}" if eventhub_name else "the event hub"
        self._max_concurrency = max_concurrency
        self._use_partition_ids = use_partition_ids and _SdkResolver is not None
        self._resolver: Any = None
        self._guard = threading.Lock()  # the resolver's first build and close
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_namespace(cls, fully_qualified_namespace: str, eventhub_name: str, credential: Any) -> "EventHubsOrderBus":
        """A bus over a producer with an identity-based connection. The client does
        not connect until the first publish, so building it at start is cheap."""
        producer = EventHubProducerClient(
            fully_qualified_namespace=fully_qualified_namespace,
            eventhub_name=eventhub_name,
            credential=credential,
        )
        return cls(producer, eventhub_name=eventhub_name, namespace=fully_qualified_namespace)

    # --- publish ---------------------------------------------------------------------

    def publish(self, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        with tracing.span("publish", tracing.PRODUCER, messages=len(messages),
                          **{"messaging.system": "eventhubs"}) as span:
            try:
                self._publish(messages, tracing.traceparent(span))
            except AccrueError as error:
                tracing.fail(span, error.message)
                raise

    def _publish(self, messages: Sequence[BusMessage], context: str | None) -> None:
        lanes = self._plan(messages)
        for lane in lanes:  # every batch built first: a too-large event sends nothing
            self._call(lane, lambda lane=lane: self._build(lane, context))
        if len(lanes) == 1:
            try:
                self._call(lanes[0], lambda: self._send(lanes[0]))
            except BusUnavailable:
                self._forget_partitions()
                raise
            return
        pool = self._executor()
        futures = {pool.submit(self._call, lane, lambda lane=lane: self._send(lane)): lane for lane in lanes}
        wait(futures)  # all of them, failed or not: nothing of this call still in flight after return
        for future in futures:  # the first failing lane in publish order names what to check
            error = future.exception()
            if error is not None:
                self._forget_partitions()
                raise error

    def _plan(self, messages: Sequence[BusMessage]) -> list[_Lane]:
        """Messages per partition (or per key), each lane in the given order."""
        lanes: dict[str, _Lane] = {}
        resolve = self._partition_of()
        for message in messages:
            if resolve is not None:
                pid = resolve(message.partition_key)
                lane = lanes.setdefault("id:" + pid, _Lane({"partition_id": pid}))
            else:
                lane = lanes.setdefault("key:" + message.partition_key,
                                        _Lane({"partition_key": message.partition_key}))
            lane.messages.append(message)
        assert sum(len(lane.messages) for lane in lanes.values()) == len(messages)
        return list(lanes.values())

    def _partition_of(self) -> Callable[[str], str] | None:
        if not self._use_partition_ids:
            return None
        with self._guard:
            if self._resolver is None:
                try:
                    ids = list(self._producer.get_partition_ids())
                except (EventHubError, AzureError) as exc:
                    raise self._translate(exc, "(partition ids)") from exc
                assert ids, "an event hub has at least one partition"
                self._resolver = _SdkResolver(ids)
            resolver = self._resolver
        return resolver.get_partition_id_by_partition_key  # type: ignore[no-any-return]

    def _forget_partitions(self) -> None:
        """After a failed send: read the partition ids again on the next publish (the hub
        may have been given more partitions; a stale list would name one that is gone)."""
        with self._guard:
            self._resolver = None

    def _build(self, lane: _Lane, context: str | None = None) -> None:
        batch = self._producer.create_batch(**lane.target)
        for message in lane.messages:
            event = to_event(message, context)
            try:
                batch.add(event)
                continue
            except ValueError:
                if len(batch) == 0:
                    raise self._too_large(message, batch) from None
            # Full: the next batch of this lane starts with this event (lanes keep their order).
            lane.batches.append(batch)
            batch = self._producer.create_batch(**lane.target)
            try:
                batch.add(event)
            except ValueError:
                raise self._too_large(message, batch) from None
        if len(batch):
            lane.batches.append(batch)
        assert sum(len(b) for b in lane.batches) == len(lane.messages), "every message in exactly one batch"

    def _send(self, lane: _Lane) -> None:
        for batch in lane.batches:  # one after another: the partition's order is the send order
            self._producer.send_batch(batch)

    def _call(self, lane: _Lane, step: Callable[[], None]) -> None:
        try:
            step()
        except (EventHubError, AzureError) as exc:
            raise self._translate(exc, ", ".join(lane.keys()[:3]) + (" ..." if len(lane.keys()) > 3 else "")) \
                from exc

    def _executor(self) -> ThreadPoolExecutor:
        with self._guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._max_concurrency, thread_name_prefix="eventhubs")
            return self._pool

    def _too_large(self, message: BusMessage, batch: EventDataBatch) -> PayloadTooLarge:
        # The event alone exceeds what the service accepts: no split helps.
        return PayloadTooLarge(
            f"a message of partition {message.partition_key!r} is larger than {batch.max_size_in_bytes} bytes, "
            "the most one Event Hubs batch can carry"
        )

    def _translate(self, exc: Exception, key: str) -> BusUnavailable:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(exc, (AuthenticationError, ClientAuthenticationError)):
            hint = ("the identity was refused: check that it holds 'Azure Event Hubs Data Sender' "
                    "on the namespace and that EVENTHUB_NAMESPACE is right")
        elif isinstance(exc, ConnectError):
            hint = "could not connect: check EVENTHUB_NAMESPACE, EVENTHUB_NAME and network access"
        elif isinstance(exc, OperationTimeoutError):
            hint = "the send timed out"
        else:
            hint = "the send failed"
        return BusUnavailable(
            f"Event Hubs: {hint} ({self._where}, partition key {key!r}): {type(exc).__name__}: {detail}",
            partition_key=key,
        )

    def close(self) -> None:
        with self._guard:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        try:
            self._producer.close()
        except (EventHubError, AzureError):
            pass  # closing a broken link must not mask the caller's own error


# One encoder for every event's body: json.dumps with options builds a new one per call.
_BODY = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def to_event(message: BusMessage, traceparent: str | None = None) -> EventData:
    """``traceparent``: the publish span's W3C context, as the application property
    of that name (the consumer links its batch span to it: shared.telemetry.tracing)."""
    event = EventData(_BODY.encode(message.body).encode("utf-8"))
    event.content_type = CONTENT_TYPE
    # Schema name and version as application properties, so a consumer (or a
    # capture query) can route or filter without parsing the body.
    properties: dict[str | bytes, Any] = {}
    for name in ("type", "version"):
        value = message.body.get(name)
        if isinstance(value, (str, int)):
            properties[name] = value
    if traceparent:
        properties["traceparent"] = traceparent
    event.properties = properties
    return event
