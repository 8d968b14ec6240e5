"""Held earns: how a plan is turned into a hold, how a hold reaches the review
queue, and what approving or rejecting it writes.

* ``hold(plan, reasons)``: the order's positive EARN drafts become PENDING (not
  spendable: they count in ``pending``), its outcome and order record read
  ``held`` with ``reason = {"code": "fraud-hold", "detail", "reasons": [...]}``.
  The order status read model shows that (shared/app/projections.py).
* ``EarnHolds.project(docs)``: a projector subscriber (change feed, at least
  once). For each ``held`` order record it submits a review of kind ``earn``
  whose ``entryId`` is the first held entry and whose ``details`` list all of
  them; ``submit`` is idempotent, so a redelivered change adds nothing, and a
  crash between the append and the review is healed by the feed.
* ``EarnHolds.approve`` / ``reject``: the queue's handlers for kind ``earn``.
  Approve writes one EARN COMMITTED +N per held entry, settling it (its
  ``attributes`` are the held entry's, so the lot's expiry carries over, plus
  ``reviewId`` and ``decidedBy``); reject writes VOID COMMITTED 0 settling each,
  so the points never become available. Both write ``settled-<entryId>`` records
  (the two decisions cannot both land) and an ``orderDecision`` record that moves
  the order's status to ``credited`` or ``rejected``. The held entries themselves
  are never touched.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.audit.log import Actor
from shared.errors import NotFound, ReviewDecided
from shared.ledger.entries import (
    ENTRY_DOC, EntryDraft, EntryStatus, EntryType, Head, order_record_id, settlement_id,
)
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.reviews.queue import ReviewQueue, decision_key

KIND = "earn"
HOLD_CODE = "fraud-hold"
ORDER_DECISION_DOC = "orderDecision"


def order_decision_id(order_id: str) -> str:
    return f"orderdecision-{order_id}"


def hold(plan: Plan, reasons: list[dict[str, Any]]) -> Plan:
    # A window earn (shared/pending/window.py) under a hold is the review's to settle, never the
    # maturation job's: marked ``fraudHold`` so the job leaves it alone (docs/pending.md).
    entries = [dataclasses.replace(d, status=EntryStatus.PENDING,
                                   attributes={**d.attributes, "fraudHold": True} if "maturesAt" in d.attributes
                                   else d.attributes)
               if d.entry_type is EntryType.EARN and d.signed_amount > 0 else d for d in plan.entries]
    reason = {"code": HOLD_CODE, "detail": "; ".join(r["detail"] for r in reasons), "reasons": reasons}
    outcome = {**plan.outcome, "status": "held", "reason": reason}
    records = [{**r, "status": "held", "reason": reason} if r.get("docType") == "order" else r
               for r in plan.records]
    return Plan(entries=entries, outcome=outcome, records=records)


class EarnHolds:
    def __init__(self, ledger: Ledger, reviews: ReviewQueue) -> None:
        self._ledger = ledger
        self._reviews = reviews

    def register(self) -> None:
        self._reviews.register(KIND, approve=self.approve, reject=self.reject)

    # --- into the queue (projector subscriber) -------------------------------------------

    def project(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            if doc.get("docType") == "order" and doc.get("status") == "held":
                self.submit(doc)

    def submit(self, record: dict[str, Any]) -> dict[str, Any] | None:
        tenant_id, customer_id, order_id = record["tenantId"], record["customerId"], record["orderId"]
        held = [e for e in self._ledger.entries_for_order(tenant_id, customer_id, order_id)
                if e["entryType"] == EntryType.EARN.value and e["status"] == EntryStatus.PENDING.value
                and e["signedAmount"] > 0]
        if not held:
            return None
        reason = record.get("reason") or {}
        return self._reviews.submit(tenant_id, KIND, customer_id, held[0]["id"], reason.get("reasons") or [reason], {
            "orderId": order_id, "points": sum(e["signedAmount"] for e in held),
            "entryIds": [e["id"] for e in held], "orderAmount": (record.get("order") or {}).get("amount"),
            "currency": (record.get("order") or {}).get("currency"), "acceptedAt": record.get("acceptedAt"),
        })

    # --- decisions (review handlers) ------------------------------------------------------

    def approve(self, review: dict[str, Any], who: Actor, note: str | None) -> dict[str, Any]:
        return self._decide(review, who, note, "approve")

    def reject(self, review: dict[str, Any], who: Actor, note: str | None) -> dict[str, Any]:
        return self._decide(review, who, note, "reject")

    def _decide(self, review: dict[str, Any], who: Actor, note: str | None, action: str) -> dict[str, Any]:
        tenant_id, customer_id = review["tenantId"], review["customerId"]
        details = review["details"]
        order_id = details["orderId"]

        def plan(head: Head) -> Plan:
            held = []
            for held_id in details["entryIds"]:
                entry = self._ledger.record(tenant_id, customer_id, held_id)
                if entry is None or entry.get("docType") != ENTRY_DOC:
                    raise NotFound(f"held entry {held_id} does not exist")
                if self._ledger.record(tenant_id, customer_id, settlement_id(held_id)) is not None:
                    # Decided already (perhaps by a decision whose review update was lost):
                    # the ledger replays this key's outcome if it was this very decision.
                    raise ReviewDecided(f"the held entry {held_id} is already settled", reviewId=review["reviewId"])
                held.append(entry)
            stamp = {"reviewId": review["reviewId"], "decidedBy": who.key_id}
            drafts = [
                EntryDraft(EntryType.EARN, e["signedAmount"], reference_order_id=order_id, reference_entry_id=e["id"],
                           settles_entry_id=e["id"], settles_amount=e["signedAmount"], rule_set_id=e.get("ruleSetId"),
                           rule_set_version=e.get("ruleSetVersion"), arm=e.get("arm"),
                           attributes={**(e.get("attributes") or {}), **stamp}, wallet=e.get("wallet"))
                if action == "approve" else
                EntryDraft(EntryType.VOID, 0, reference_order_id=order_id, reference_entry_id=e["id"],
                           settles_entry_id=e["id"], settles_amount=e["signedAmount"], attributes=stamp)
                for e in held]
            points = sum(e["signedAmount"] for e in held) if action == "approve" else 0
            status, code = ("credited", "review-approved") if action == "approve" else ("rejected", "review-rejected")
            order = self._ledger.record(tenant_id, customer_id, order_record_id(order_id)) or {}
            resolution = "approved" if action == "approve" else "rejected"
            records = [{"id": settlement_id(e["id"]), "docType": "settlement", "settlesEntryId": e["id"],
                        "resolution": resolution, "reviewId": review["reviewId"]} for e in held]
            records.append({
                "id": order_decision_id(order_id), "docType": ORDER_DECISION_DOC, "orderId": order_id,
                "status": status, "points": points, "acceptedAt": order.get("acceptedAt"),
                "ruleSetId": order.get("ruleSetId"), "ruleSetVersion": order.get("ruleSetVersion"),
                "arm": order.get("arm"), "reviewId": review["reviewId"],
                "reason": {"code": code, "detail": note or f"held earn {resolution} in review"},
            })
            return Plan(drafts, {"status": status, "orderId": order_id, "points": points,
                                 "reviewId": review["reviewId"]}, records)

        key = decision_key(review, action)
        outcome = self._ledger.append_one(TransactionRequest(
            tenant_id, customer_id, key, fingerprint_of({"reviewId": review["reviewId"], "action": action}), plan))
        return {"orderId": order_id, "status": outcome.outcome.get("status"),
                "points": outcome.outcome.get("points"), "entryIds": outcome.outcome.get("entryIds", [])}
