"""Webhook event types and how change-feed documents become events.

Payloads carry ids and amounts only, never personal data: each type has a JSON
Schema ``shared/schemas/events/webhook.<type>.v1.json`` (the body the receiver
gets: ``type``, ``timestamp``, ``data``) and every message is validated against
it before it enters the outbox.

From the ledger's change feed (``events_from_ledger``):

* an entry ``PENDING`` -> ``points.held``;
* an entry that settles a held one (``settlesEntryId``) -> ``points.released``;
* any other ``COMMITTED`` entry -> ``transaction.committed`` (one event per entry);
* an order record with status ``rejected`` -> ``order.rejected`` (reason code only:
  the free-text detail may quote merchant input).

Published by other components through ``WebhookService``: ``tier.changed``
(``tier_changed``) and ``ruleset.activated`` (``rule_set_activated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

TRANSACTION_COMMITTED = "transaction.committed"
POINTS_HELD = "points.held"
POINTS_RELEASED = "points.released"
ORDER_REJECTED = "order.rejected"
TIER_CHANGED = "tier.changed"
RULESET_ACTIVATED = "ruleset.activated"

EVENT_TYPES: tuple[str, ...] = (TRANSACTION_COMMITTED, POINTS_HELD, POINTS_RELEASED, ORDER_REJECTED, TIER_CHANGED,
                                RULESET_ACTIVATED)


def schema_name(event_type: str) -> str:
    return "webhook." + event_type


@dataclass(frozen=True)
class Event:
    tenant_id: str
    type: str
    source_id: str  # stable: the same source always gives the same message id
    occurred_at: str
    data: dict[str, Any]


def _entry_data(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "customerId": doc["customerId"], "transactionId": doc.get("transactionId"), "entryId": doc["id"],
        "entryType": doc["entryType"], "points": doc["signedAmount"], "balance": doc["runningBalance"],
        "pending": doc["runningPending"], "orderId": doc.get("referenceOrderId"),
        "ruleSetId": doc.get("ruleSetId"), "ruleSetVersion": doc.get("ruleSetVersion"),
    }


def events_from_ledger(docs: Iterable[dict[str, Any]]) -> list[Event]:
    events: list[Event] = []
    for doc in docs:
        kind = doc.get("docType")
        if kind == "entry":
            source = f"ledger:{doc['pk']}:{doc['id']}"
            data = _entry_data(doc)
            if doc.get("settlesEntryId"):
                events.append(Event(doc["tenantId"], POINTS_RELEASED, source, doc["createdAt"],
                                    dict(data, settlesEntryId=doc["settlesEntryId"])))
            elif doc.get("status") == "PENDING":
                events.append(Event(doc["tenantId"], POINTS_HELD, source, doc["createdAt"], data))
            elif doc.get("status") == "COMMITTED":
                events.append(Event(doc["tenantId"], TRANSACTION_COMMITTED, source, doc["createdAt"], data))
        elif kind == "order" and doc.get("status") == "rejected":
            reason = doc.get("reason") or {}
            events.append(Event(doc["tenantId"], ORDER_REJECTED, f"ledger:{doc['pk']}:{doc['id']}",
                                doc.get("createdAt") or doc.get("acceptedAt") or "",
                                {"customerId": doc["customerId"], "orderId": doc["orderId"],
                                 "reasonCode": reason.get("code") if isinstance(reason, dict) else None}))
    return events
