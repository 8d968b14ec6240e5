"""Event Hub trigger: batches of ``order.received`` messages into the ledger.

Parses each event's bytes as JSON and hands the batch to
``platform.ingest.handle`` (the handler the local ``QueueConsumer`` calls),
under the failure policy of ``functions._resilience``: a batch is handled, or
deferred to the host's retry, or its failing messages are in the poison store
(source ``ingest``) before the invocation returns. The hub name and consumer
group come from app settings (``functions.bindings``).
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any, List

import azure.functions as func

from functions import bindings
from functions._platform import get_platform
from functions._resilience import HostRetry, InProcessRetry, process_batch
from shared.store.layout import customer_pk
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.functions.ingest")

SOURCE = "ingest"
HOST_RETRY = HostRetry()
RETRY = InProcessRetry()

bp = func.Blueprint()


def decode_body(event: func.EventHubEvent) -> Any:
    """The event's JSON body; what is not JSON is passed on as it is, so the
    handler records it in the poison store as malformed instead of losing it."""
    raw = event.get_body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"undecodableBodyBase64": base64.b64encode(raw).decode("ascii")}
    try:
        return json.loads(text)
    except ValueError:
        return text


def traceparents(events: List[func.EventHubEvent]) -> list[str | None]:
    """Each event's ``traceparent`` application property (set by the bus adapter,
    shared/bus/eventhubs.py), from the batch's ``PropertiesArray`` metadata; None
    where absent or unreadable (telemetry never fails an invocation)."""
    try:
        metadata = events[0].metadata if events else None
        properties = (metadata or {}).get("PropertiesArray")
        if isinstance(properties, str):
            properties = json.loads(properties)
        if isinstance(properties, list) and len(properties) == len(events):
            return [p.get("traceparent") if isinstance(p, dict) else None for p in properties]
    except (ValueError, AttributeError, TypeError):
        pass
    return [None] * len(events)


def order_key(body: Any) -> str | None:
    """The customer partition of a body, to keep one customer's orders in order."""
    if isinstance(body, dict) and isinstance(body.get("order"), dict):
        tenant, customer = body.get("tenantId"), body["order"].get("customerId")
        if isinstance(tenant, str) and isinstance(customer, str):
            return customer_pk(tenant, customer)
    return None


@bp.function_name(bindings.INGEST_FUNCTION)
@bp.retry(strategy=HOST_RETRY.strategy, max_retry_count=HOST_RETRY.max_retry_count,
          minimum_interval=HOST_RETRY.minimum_interval, maximum_interval=HOST_RETRY.maximum_interval)
@bp.event_hub_message_trigger(
    arg_name="events",
    connection=bindings.EVENTHUB_CONNECTION,
    event_hub_name=bindings.setting_ref(bindings.EVENTHUB_NAME_SETTING),
    consumer_group=bindings.setting_ref(bindings.EVENTHUB_CONSUMER_GROUP_SETTING),
    cardinality=func.Cardinality.MANY,
    data_type=func.DataType.BINARY,
)
def ingest_orders(events: List[func.EventHubEvent]) -> None:
    platform = get_platform()
    bodies = [decode_body(event) for event in events]
    # The resilience policy may hand the handler any subset of the bodies: find each one's context by identity.
    context_of = {id(body): context for body, context in zip(bodies, traceparents(events)) if context}

    def handle(subset: List[Any]) -> object:
        if not context_of:
            return platform.ingest.handle(subset)
        return platform.ingest.handle(subset, [context_of.get(id(body)) for body in subset])

    result = process_batch(
        bodies,
        handle,
        lambda body, reason: platform.poison.put(SOURCE, body, reason),
        source=SOURCE,
        key=order_key,
        retry=RETRY,
        log=log,
    )
    log.info("ingest: %d events, %d attempt(s), %d poisoned", result.size, result.attempts, len(result.poisoned),
             extra=fields(source=SOURCE, count=result.size))
