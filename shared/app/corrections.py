"""Corrections: refunds that claw points back, and manual adjustments.

Both are new ledger entries that reference what they correct; nothing is ever
edited. Refund policy (documented in the README):

* a refund carries its own ``refundId`` (idempotency: a repeated refund with the
  same id changes nothing and returns the first outcome);
* the refunded amounts of an order may add up to at most the order's amount;
* the points clawed back are proportional and computed on the cumulative total,
  ``floor(points earned * refunded so far / order amount)`` minus what earlier
  refunds already clawed back, so partial refunds never drift by rounding and
  a full refund claws back exactly what was earned;
* a clawback may take the balance below zero (the points were already spent);
  the balance then reads negative until new points cover it.

Refunds and points lots (docs/expiry.md; the lot replay is shared/ledger/lots.py):

* the REVERSAL takes first what remains of the refunded order's own lots, then
  the customer's other lots oldest-expiry-first, then goes into deficit;
* points of the order that already **expired** are not clawed back a second
  time: the refunded share of them, ``floor(expired * refunded so far / order
  amount)`` (cumulative, like the clawback), is excused; points already
  **spent** are clawed back (the customer had their value);
* a positive ADJUST is a lot: it is stamped with the tenant policy's expiry.

Refunds and fraud holds (docs/fraud.md): points held for a review (in a return window
or not) are settled by the review alone, so a refund of such an order is refused
(``HeldForReview``, 409) until the review is decided; after an approval it claws back
like any credited order, after a rejection the order earned nothing (a window earn the
review rejected counts as never earned).

Refunds inside the return window (docs/pending.md): for an order whose points
are still **pending** (window earns, shared/pending/window.py), the refunded
share is taken from its pending points first, which never were spendable:

* the share is computed as above, on the order's originally earned points
  (window earns and any points the order earned available at once);
* each open pending earn it reaches is settled by a VOID of 0 points (with a
  ``settled-<entryId>`` record, so the maturation job cannot mature it too);
  a pending earn reached only in part is re-pended: a new PENDING EARN of the
  rest, same ``maturesAt``, ``attributes.repends`` naming the cancelled one;
* only what the pending points cannot cover (points already matured) is clawed
  back from the available balance; the REVERSAL (possibly of 0 points) records
  ``refundAmount`` and ``pendingCancelled``, so later refunds stay cumulative.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from shared.app.claims import is_order_claim
from shared.app.tenants import TenantDirectory
from shared.clock import Clock
from shared.domain.money import MAX_ORDER_AMOUNT, MINOR_UNITS, fits_minor_unit
from shared.domain.orders import EntityId, Money
from shared.domain.wallets import WalletName
from shared.errors import (Conflict, FieldProblem, HeldForReview, InsufficientPoints, NotFound, NotYetProcessed,
                           ValidationFailed)
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType, Head, order_record_id, settlement_id
from shared.ledger.service import Ledger, Plan, TransactionOutcome, TransactionRequest, fingerprint_of
from shared.expiry.policy import credit_expiry
from shared.pending.window import maturity_of
from shared.store.layout import ORDER_STATUS, order_pk
from shared.store.port import DocumentStore

Text = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    refund_id: EntityId = Field(alias="refundId")
    amount: Money = Field(gt=0, le=MAX_ORDER_AMOUNT)
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")
    reason: Text | None = None


class AdjustmentReasonCode(str, Enum):
    GOODWILL = "goodwill"
    CORRECTION = "correction"
    MIGRATION = "migration"
    FRAUD = "fraud"
    SERVICE_RECOVERY = "service-recovery"
    OTHER = "other"


class AdjustmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # A JSON integer only: "1_000" or "1e3" or 10.0 would be a second way to write points.
    points: StrictInt = Field(ge=-10**12, le=10**12)
    reason_code: AdjustmentReasonCode = Field(alias="reasonCode")
    reason: Text
    idempotency_key: Key = Field(alias="idempotencyKey")
    # The wallet credited or debited (docs/wallets.md); default: the default wallet for a credit,
    # the spending order for a debit.
    wallet: WalletName | None = None


class Corrections:
    def __init__(self, store: DocumentStore, ledger: Ledger, clock: Clock | None = None,
                 tenants: TenantDirectory | None = None) -> None:
        self._store = store
        self._ledger = ledger
        # With a clock, a positive ADJUST is stamped with the tenant's expiry policy.
        self._clock = clock
        # The platform's directory: one cache, so a saved policy is seen here at once.
        self._tenants = tenants or TenantDirectory(store)

    def refund(self, tenant_id: str, order_id: str, refund: RefundRequest) -> TransactionOutcome:
        status = self._store.read(ORDER_STATUS, order_pk(tenant_id, order_id), order_id)
        if not is_order_claim(status):  # absent, or an idempotency key's claim (shared/app/claims.py)
            raise NotFound(f"order {order_id!r} is not known")
        assert status is not None
        customer_id = status["customerId"]
        record = self._ledger.record(tenant_id, customer_id, order_record_id(order_id))
        if record is None:
            raise NotYetProcessed(f"order {order_id!r} is still {status['status']}: refund it once it is credited")
        if record["status"] == "rejected":
            raise Conflict(f"order {order_id!r} was rejected: it earned nothing to claw back")
        order_amount = Decimal(str(record["order"]["amount"]))
        currency = record["order"]["currency"]
        if refund.currency != currency:
            raise ValidationFailed("the refund's currency differs from the order's",
                                   [FieldProblem("currency", f"the order was paid in {currency}")])
        if not fits_minor_unit(refund.amount, currency):
            raise ValidationFailed("too many decimals", [FieldProblem(
                "amount", f"{currency} amounts have at most {MINOR_UNITS[currency]} decimals")])

        def plan(head: Head) -> Plan:
            entries = self._ledger.entries_for_order(tenant_id, customer_id, order_id)
            settled = {e["settlesEntryId"] for e in entries if e.get("settlesEntryId")}
            if any(_held_for_review(e) and e["id"] not in settled for e in entries):
                # Its points are neither spendable nor the refund's to cancel: the review's
                # decision would credit them afterwards (an order refunded in full, its points
                # credited) or void what the refund already settled.
                raise HeldForReview(f"order {order_id!r}'s points are held for a fraud review: approve or reject "
                                    "the review (GET /v1/reviews), then refund")
            if any(maturity_of(e) is not None for e in entries if e["entryType"] == "EARN"):
                return self._refund_in_window(tenant_id, customer_id, order_id, refund, entries, order_amount,
                                              currency, head)
            earned = sum(e["signedAmount"] for e in entries if e["entryType"] == "EARN" and e["status"] == "COMMITTED")
            reversals = [e for e in entries if e["entryType"] == "REVERSAL"]
            refunded = sum((Decimal(e["attributes"]["refundAmount"]) for e in reversals), Decimal(0))
            clawed = -sum(e["signedAmount"] for e in reversals)
            total = refunded + refund.amount
            if total > order_amount:
                raise ValidationFailed(
                    "the refunds would exceed the order's amount",
                    [FieldProblem("amount", f"at most {order_amount - refunded} {currency} is left to refund")],
                )
            target = int((Decimal(earned) * total / order_amount).to_integral_value(rounding=ROUND_FLOOR))
            expired = _expired_points(entries)
            excused = int((Decimal(expired) * total / order_amount).to_integral_value(rounding=ROUND_FLOOR))
            clawback = max(0, target - excused - clawed)
            assert 0 <= clawback <= earned - clawed, "clawback must stay within what was earned"
            first_earn = next((e["id"] for e in entries if e["entryType"] == "EARN"), None)
            draft = EntryDraft(
                EntryType.REVERSAL, -clawback, reference_order_id=order_id, reference_entry_id=first_earn,
                attributes={"refundId": refund.refund_id, "refundAmount": str(refund.amount),
                            **({"reason": refund.reason} if refund.reason else {})},
            )
            outcome = {"status": "refunded", "orderId": order_id, "customerId": customer_id,
                       "refundId": refund.refund_id, "pointsClawedBack": clawback, "pointsExcusedExpired": excused,
                       "refundedTotal": str(total), "balanceAfter": head.balance - clawback}
            return Plan(entries=[draft], outcome=outcome)

        return self._ledger.append_one(TransactionRequest(
            tenant_id=tenant_id, customer_id=customer_id,
            idempotency_key=f"refund:{order_id}:{refund.refund_id}",
            fingerprint=fingerprint_of(refund.model_dump(mode="json")), plan=plan,
        ))

    def _refund_in_window(self, tenant_id: str, customer_id: str, order_id: str, refund: RefundRequest,
                          entries: list[dict[str, Any]], order_amount: Decimal, currency: str, head: Head) -> Plan:
        """The plan of a refund of an order with window earns (see the module docstring)."""
        settled = {e["settlesEntryId"] for e in entries if e.get("settlesEntryId")}
        # Window earns a fraud review rejected (a VOID of the review, not of a refund): never earned.
        rejected = {e["settlesEntryId"] for e in entries
                    if e["entryType"] == "VOID" and "refundId" not in (e.get("attributes") or {})}
        # What the order earned: its window earns as written (not their re-pends) and its other
        # COMMITTED earns that settle nothing (a rule's "pending for 0 days").
        earned = sum(e["signedAmount"] for e in entries if e["entryType"] == "EARN" and (
            (_pending_in_window(e) and "repends" not in (e.get("attributes") or {}) and e["id"] not in rejected)
            or (e["status"] == "COMMITTED" and not e.get("settlesEntryId"))))
        reversals = [e for e in entries if e["entryType"] == "REVERSAL"]
        refunded = sum((Decimal(e["attributes"]["refundAmount"]) for e in reversals), Decimal(0))
        clawed = -sum(e["signedAmount"] for e in reversals)
        cancelled = sum(int((e.get("attributes") or {}).get("pendingCancelled", 0)) for e in reversals)
        total = refunded + refund.amount
        if total > order_amount:
            raise ValidationFailed("the refunds would exceed the order's amount",
                                   [FieldProblem("amount", f"at most {order_amount - refunded} {currency} is left to refund")])
        target = int((Decimal(earned) * total / order_amount).to_integral_value(rounding=ROUND_FLOOR))
        to_take = max(0, target - clawed - cancelled)
        drafts: list[EntryDraft] = []
        records: list[dict[str, Any]] = []
        cancelled_now = 0
        for held in (e for e in entries if _pending_in_window(e) and e["id"] not in settled):
            if to_take == 0:
                break
            part = min(to_take, held["signedAmount"])
            stamp = {"refundId": refund.refund_id, "cancelled": "refund"}
            drafts.append(EntryDraft(EntryType.VOID, 0, reference_order_id=order_id, reference_entry_id=held["id"],
                                     settles_entry_id=held["id"], settles_amount=held["signedAmount"],
                                     attributes=stamp))
            records.append({"id": settlement_id(held["id"]), "docType": "settlement", "settlesEntryId": held["id"],
                            "resolution": "cancelled", "refundId": refund.refund_id})
            if part < held["signedAmount"]:
                drafts.append(EntryDraft(
                    EntryType.EARN, held["signedAmount"] - part, status=EntryStatus.PENDING,
                    reference_order_id=order_id, reference_entry_id=held["id"], rule_set_id=held.get("ruleSetId"),
                    rule_set_version=held.get("ruleSetVersion"), arm=held.get("arm"),
                    attributes={**(held.get("attributes") or {}), "repends": held["id"]}, wallet=held.get("wallet")))
            cancelled_now += part
            to_take -= part
        expired = _expired_points(entries)
        excused = int((Decimal(expired) * total / order_amount).to_integral_value(rounding=ROUND_FLOOR))
        clawback = max(0, to_take - excused)
        assert 0 <= clawback + cancelled_now <= earned - clawed - cancelled, "refund beyond what was earned"
        first_earn = next((e["id"] for e in entries if e["entryType"] == "EARN"), None)
        drafts.append(EntryDraft(
            EntryType.REVERSAL, -clawback, reference_order_id=order_id, reference_entry_id=first_earn,
            attributes={"refundId": refund.refund_id, "refundAmount": str(refund.amount),
                        "pendingCancelled": cancelled_now, **({"reason": refund.reason} if refund.reason else {})}))
        outcome = {"status": "refunded", "orderId": order_id, "customerId": customer_id,
                   "refundId": refund.refund_id, "pointsClawedBack": clawback, "pointsExcusedExpired": excused,
                   "pointsCancelledPending": cancelled_now, "refundedTotal": str(total),
                   "balanceAfter": head.balance - clawback}
        return Plan(entries=drafts, outcome=outcome, records=records)

    def adjust(self, tenant_id: str, customer_id: str, adjustment: AdjustmentRequest,
               actor_key_id: str) -> TransactionOutcome:
        if adjustment.points == 0:
            raise ValidationFailed("an adjustment of zero points changes nothing",
                                   [FieldProblem("points", "must not be 0")])

        expiry = credit_expiry(self._tenants.get(tenant_id), self._clock.now(), adjustment.wallet) \
            if adjustment.points > 0 and self._clock is not None else {}

        def plan(head: Head) -> Plan:
            if head.balance + adjustment.points < 0:
                raise InsufficientPoints(
                    f"customer {customer_id} has {head.balance} points; cannot take {-adjustment.points}")
            if adjustment.wallet is not None:
                in_wallet = self._ledger.wallet_available(tenant_id, head, adjustment.wallet)
                if in_wallet + adjustment.points < 0:
                    raise InsufficientPoints(f"customer {customer_id} has {in_wallet} points in wallet "
                                             f"{adjustment.wallet!r}; cannot take {-adjustment.points}")
            draft = EntryDraft(EntryType.ADJUST, adjustment.points, attributes={
                "reasonCode": adjustment.reason_code.value, "reason": adjustment.reason, "actorKeyId": actor_key_id,
                **expiry}, wallet=adjustment.wallet)
            outcome = {"status": "adjusted", "customerId": customer_id, "points": adjustment.points,
                       "balanceAfter": head.balance + adjustment.points, "actorKeyId": actor_key_id}
            return Plan(entries=[draft], outcome=outcome)

        return self._ledger.append_one(TransactionRequest(
            tenant_id=tenant_id, customer_id=customer_id,
            idempotency_key=f"adjust:{adjustment.idempotency_key}",
            fingerprint=fingerprint_of(adjustment.model_dump(mode="json")), plan=plan,
        ))


def _expired_points(entries: list[dict[str, Any]]) -> int:
    """Points the expiry job took from the order's lots, from the order's own entries: each
    EXPIRE names its lot's order (``referenceOrderId``) and takes exactly what that lot held
    (shared/expiry/service.py), so this is what replaying the customer's whole ledger into
    lots gives (``Lot.expired`` of the order's lots), without that replay: a refund read
    every entry of the customer and sorted the open lots at every debit, 56 ms of CPU per
    refund at 1,000 orders (bench/bench_corrections.py). A test holds the two equal."""
    expired = -sum(e["signedAmount"] for e in entries if e["entryType"] == "EXPIRE")
    assert expired >= 0, "an EXPIRE entry adds points"
    return expired


def _held_for_review(entry: dict[str, Any]) -> bool:
    """A PENDING earn of a fraud hold (``shared.fraud.holds.hold``), in a return window
    (``fraudHold``) or not: only the review settles it (a refund cancelling part of a held
    window earn would re-pend the rest under a hold no review names, never to mature)."""
    return entry["entryType"] == "EARN" and entry["status"] == "PENDING" and entry["signedAmount"] > 0 \
        and (maturity_of(entry) is None or bool((entry.get("attributes") or {}).get("fraudHold")))


def _pending_in_window(entry: dict[str, Any]) -> bool:
    """A PENDING earn with ``maturesAt`` (one held for a fraud review is the review's until it is
    decided: ``_held_for_review`` refuses the refund before this is asked)."""
    return entry["entryType"] == "EARN" and entry["status"] == "PENDING" and entry["signedAmount"] > 0 \
        and maturity_of(entry) is not None


_ENTRY_VIEW_KEYS = ("id", "seq", "transactionId", "entryType", "signedAmount", "runningBalance", "runningPending",
                    "runningReserved",
                    "referenceOrderId", "referenceEntryId", "settlesEntryId", "ruleSetId", "ruleSetVersion", "arm",
                    "status", "createdAt", "attributes", "wallet", "walletSplit", "runningWallets")


def entry_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The entry's public fields, those that are set, in this order, then its tenant and customer."""
    # One pass (a history page makes up to 200 of these: two dict passes were ~20 % of its time).
    view = {k: v for k in _ENTRY_VIEW_KEYS if (v := doc.get(k)) is not None}
    tenant_id, customer_id = doc["tenantId"], doc["customerId"]
    if tenant_id is not None:
        view["tenantId"] = tenant_id
    if customer_id is not None:
        view["customerId"] = customer_id
    return view
