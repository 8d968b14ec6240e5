"""Webhook event types and how change-feed documents become events.

Payloads carry ids and amounts only, never personal data: each type has a JSON
Schema ``shared/schemas/events/webhook.<type>.v1.json`` (the body the receiver
gets: ``type``, ``timestamp``, ``data``) and every message is validated against
it before it enters the outbox.

From the ledger's change feed (``events_from_ledger``):

* a ``PENDING`` credit (a held earn) -> ``points.held``;
* a ``PENDING`` debit (a redemption or conversion reservation: already out of
  the available balance, not "held") -> ``points.reserved``;
* an entry that matures a pending earn (an EARN with ``attributes.maturedAt``,
  shared/pending/maturation.py) -> ``points.matured`` (with ``maturesAt``);
* an entry that settles a held earn (``settlesEntryId``; EARN approve, VOID
  reject, VOID of a refund inside the return window) -> ``points.released``;
* an entry that settles a reservation (REDEEM/CONVERT confirm, RELEASE) and any
  other ``COMMITTED`` entry -> ``transaction.committed`` (one event per entry;
  a settling one names ``settlesEntryId``);
* a transfer's ``TRANSFER_OUT`` and ``TRANSFER_IN`` entries are committed: a
  ``transaction.committed`` for each customer, with ``transferId`` and ``counterpartyId``;
* an order record with status ``rejected`` -> ``order.rejected`` (reason code only:
  the free-text detail may quote merchant input).

Published by other components through ``WebhookService``: ``tier.changed``
(``tier_changed``), ``ruleset.activated`` (``rule_set_activated``) and
``customer.erased`` (``shared.privacy.erasure``, through ``publish``) and ``agent.escalated``
(``shared.agents.tools``, through ``publish``).

Operational (``OPERATIONAL_TYPES``, sent to every active endpoint of the tenant
whether it subscribed or not): ``endpoint.disabled``, when the delivery worker
disables one of the tenant's endpoints (410 Gone, or five days failing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

TRANSACTION_COMMITTED = "transaction.committed"
POINTS_HELD = "points.held"
POINTS_RELEASED = "points.released"
POINTS_RESERVED = "points.reserved"
ORDER_REJECTED = "order.rejected"
TIER_CHANGED = "tier.changed"
RULESET_ACTIVATED = "ruleset.activated"
ENDPOINT_DISABLED = "endpoint.disabled"
# Published by the erasure (shared.privacy.erasure): customer id and instant only, so a
# receiver deletes its own copy of the customer's personal data.
CUSTOMER_ERASED = "customer.erased"
# Pending points whose return window passed (issue 19, shared/pending/maturation.py).
POINTS_MATURED = "points.matured"

# Published by the agent tools (shared.agents.tools): an agent's action passed a soft limit of its
# guardrail policy and waits in the review queue for a person (ids and points only).
AGENT_ESCALATED = "agent.escalated"

# Published by the vouchers (shared.vouchers) and referrals (shared.referrals): ids and
# amounts only, never a voucher or referral code (those are secrets).
VOUCHER_ISSUED = "voucher.issued"
VOUCHER_REDEEMED = "voucher.redeemed"
VOUCHER_CANCELLED = "voucher.cancelled"
VOUCHER_EXPIRED = "voucher.expired"
REFERRAL_QUALIFIED = "referral.qualified"
REFERRAL_REVERSED = "referral.reversed"

EVENT_TYPES: tuple[str, ...] = (TRANSACTION_COMMITTED, POINTS_HELD, POINTS_RELEASED, ORDER_REJECTED, TIER_CHANGED,
                                RULESET_ACTIVATED, POINTS_RESERVED, ENDPOINT_DISABLED, CUSTOMER_ERASED, AGENT_ESCALATED,
                                VOUCHER_ISSUED, VOUCHER_REDEEMED, VOUCHER_CANCELLED, VOUCHER_EXPIRED,
                                REFERRAL_QUALIFIED, REFERRAL_REVERSED, POINTS_MATURED)
# Operational events: sent to every active endpoint of the tenant, subscribed to or not
# (a tenant must hear that one of its endpoints stopped receiving, whatever it listens to).
OPERATIONAL_TYPES: frozenset[str] = frozenset({ENDPOINT_DISABLED})


def subscribes(endpoint: dict[str, Any], event_type: str) -> bool:
    """Whether ``endpoint`` takes ``event_type``: its subscription, or an operational type."""
    return event_type in (endpoint.get("eventTypes") or ()) or event_type in OPERATIONAL_TYPES

# Entry types that settle a reservation (a PENDING debit), not a held earn.
SETTLES_RESERVATION = ("REDEEM", "CONVERT", "RELEASE")


def schema_name(event_type: str) -> str:
    return "webhook." + event_type


@dataclass(frozen=True)
class Event:
    tenant_id: str
    type: str
    source_id: str  # stable: the same source always gives the same message id
    occurred_at: str
    data: dict[str, Any]
    # The ledger append's W3C traceparent (the entry's ``traceContext``), so the
    # delivery continues the order's trace (shared.telemetry.tracing); never sent out.
    trace_context: str | None = None


def _entry_data(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "customerId": doc["customerId"], "transactionId": doc.get("transactionId"), "entryId": doc["id"],
        "entryType": doc["entryType"], "points": doc["signedAmount"], "balance": doc["runningBalance"],
        "pending": doc["runningPending"], "orderId": doc.get("referenceOrderId"),
        "ruleSetId": doc.get("ruleSetId"), "ruleSetVersion": doc.get("ruleSetVersion"),
        **({"redemptionId": doc["attributes"]["redemptionId"]}
           if (doc.get("attributes") or {}).get("redemptionId") else {}),
        # A transfer's entries (shared/transfers): each customer hears the transfer and the other party.
        **({"transferId": doc["attributes"]["transferId"], "counterpartyId": doc["attributes"]["counterpartyId"]}
           if (doc.get("attributes") or {}).get("transferId") else {}),
    }


def events_from_ledger(docs: Iterable[dict[str, Any]]) -> list[Event]:
    events: list[Event] = []
    for doc in docs:
        first = len(events)
        kind = doc.get("docType")
        if kind == "entry":
            source = f"ledger:{doc['pk']}:{doc['id']}"
            data = _entry_data(doc)
            if doc.get("settlesEntryId") and doc["entryType"] in SETTLES_RESERVATION:
                events.append(Event(doc["tenantId"], TRANSACTION_COMMITTED, source, doc["createdAt"],
                                    dict(data, settlesEntryId=doc["settlesEntryId"])))
            elif doc.get("settlesEntryId") and (doc.get("attributes") or {}).get("maturedAt"):
                events.append(Event(doc["tenantId"], POINTS_MATURED, source, doc["createdAt"],
                                    dict(data, settlesEntryId=doc["settlesEntryId"],
                                         maturesAt=doc["attributes"].get("maturesAt"))))
            elif doc.get("settlesEntryId"):
                events.append(Event(doc["tenantId"], POINTS_RELEASED, source, doc["createdAt"],
                                    dict(data, settlesEntryId=doc["settlesEntryId"])))
            elif doc.get("status") == "PENDING" and doc["signedAmount"] < 0:
                events.append(Event(doc["tenantId"], POINTS_RESERVED, source, doc["createdAt"],
                                    dict(data, reserved=doc.get("runningReserved", 0))))
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
        if doc.get("traceContext"):
            events[first:] = [replace(event, trace_context=doc["traceContext"]) for event in events[first:]]
    return events
