"""The Event Hubs adapter of the order bus (``azure-eventhub``, sync producer).

What it guarantees, on top of the port's contract (``shared.bus.port``):

* **Per-customer order.** Messages are grouped by partition key
  (``tenantId:customerId``) in the order they were given, and each group goes
  out in batches created with that ``partition_key``: Event Hubs hashes the key
  to one partition, so one customer's orders are read back in publish order.
* **Acknowledged before return.** ``publish`` returns only after every
  ``send_batch`` returned, i.e. the service acknowledged every event.
* **Typed failures.** Every SDK error (``EventHubError`` and its subclasses,
  ``azure.core`` credential errors) becomes ``BusUnavailable`` with a message
  that says what to check; an event too large for an empty batch becomes
  ``PayloadTooLarge``. Nothing from the SDK leaks to the domain.

What it does not guarantee: a multi-customer ``publish`` that fails part-way
may have sent some customers' groups already. The caller gets
``BusUnavailable`` and retries; ingestion is idempotent (the ledger's
idempotency marker), so the re-sent orders change nothing.

Thread safety: the SDK does not promise that a producer client can be shared
by threads, and FastAPI runs sync endpoints on a thread pool, so ``publish``
holds a lock around its use of the producer. Batches are large (up to the
tier's frame size), so one send per customer group is the unit of contention.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol, Sequence

from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.eventhub import EventData, EventDataBatch, EventHubProducerClient
from azure.eventhub.exceptions import (
    AuthenticationError,
    ConnectError,
    EventHubError,
    OperationTimeoutError,
)

from shared.bus.port import BusMessage
from shared.errors import BusUnavailable, PayloadTooLarge
from shared.telemetry import tracing

CONTENT_TYPE = "application/json"


class Producer(Protocol):
    """The part of ``EventHubProducerClient`` the adapter uses (tests pass a fake
    that returns real ``EventDataBatch`` objects)."""

    def create_batch(self, *, partition_key: str | None = None, **kwargs: Any) -> EventDataBatch: ...

    def send_batch(self, event_data_batch: EventDataBatch, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


class EventHubsOrderBus:
    def __init__(self, producer: Producer, *, eventhub_name: str = "", namespace: str = "") -> None:
        self._producer = producer
        self._where = f"event hub {eventhub_name!r} in {namespace}" if eventhub_name else "the event hub"
        self._lock = threading.Lock()

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

    def publish(self, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        groups = group_by_partition_key(messages)
        with tracing.span("publish", tracing.PRODUCER, messages=len(messages),
                          **{"messaging.system": "eventhubs"}) as span, self._lock:
            context = tracing.traceparent(span)
            for key, group in groups.items():
                try:
                    self._send_group(key, group, context)
                except (EventHubError, AzureError) as exc:
                    error = self._translate(exc, key)
                    tracing.fail(span, error.message)
                    raise error from exc

    def _send_group(self, key: str, group: list[BusMessage], context: str | None = None) -> None:
        batch = self._producer.create_batch(partition_key=key)
        for message in group:
            event = to_event(message, context)
            try:
                batch.add(event)
                continue
            except ValueError:
                if len(batch) == 0:
                    # The event alone exceeds what the service accepts: no split helps.
                    raise PayloadTooLarge(
                        f"a message of partition {key!r} is larger than {batch.max_size_in_bytes} bytes, "
                        "the most one Event Hubs batch can carry"
                    ) from None
            # The batch is full: send it and start the next one with this event,
            # keeping the group's order (batches of one key go out one after another).
            self._producer.send_batch(batch)
            batch = self._producer.create_batch(partition_key=key)
            try:
                batch.add(event)
            except ValueError:
                raise PayloadTooLarge(
                    f"a message of partition {key!r} is larger than {batch.max_size_in_bytes} bytes, "
                    "the most one Event Hubs batch can carry"
                ) from None
        if len(batch):
            self._producer.send_batch(batch)

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
        with self._lock:
            try:
                self._producer.close()
            except (EventHubError, AzureError):
                pass  # closing a broken link must not mask the caller's own error


def group_by_partition_key(messages: Sequence[BusMessage]) -> dict[str, list[BusMessage]]:
    """Messages per key, each list in the given order (dicts keep first-seen key order)."""
    groups: dict[str, list[BusMessage]] = {}
    for message in messages:
        groups.setdefault(message.partition_key, []).append(message)
    return groups


def to_event(message: BusMessage, traceparent: str | None = None) -> EventData:
    """``traceparent``: the publish span's W3C context, as the application property
    of that name (the consumer links its batch span to it: shared.telemetry.tracing)."""
    event = EventData(json.dumps(message.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
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
