"""Redemptions: points spent on a reward or as an amount, reserved, confirmed,
cancelled, released on timeout, fulfilled by a partner, or sent to review.

Every step is one atomic ledger append in the customer's partition, so the
ledger's guarantees carry over (see shared/ledger/service.py):

* **No overdraft.** A reservation or direct redemption is planned on the
  customer's head and refused when ``head.balance < points``; the per-customer
  sequence number means a plan raced by another writer is re-planned on the
  fresh head, so concurrent redemptions (threads or processes) can never take
  the available balance below zero together.
* **Idempotent.** A redemption carries the caller's idempotency key (marker
  ``redeem:<key>``); its id ``rd-<hash of that key>`` is deterministic, so a
  replay finds the same redemption. Confirm, cancel, expire, approve, reject
  and compensation each use ``<action>:<redemptionId>`` as their key: repeating
  one returns its first outcome.
* **Mutually exclusive endings.** Every ending of a reservation writes the
  record ``settled-<reservationEntryId>`` in its batch; a second ending finds
  it (or collides on it) and is refused with ``reservation-settled`` (409)
  naming the state. Nothing is ever edited: the state is derived from the
  immutable ``redemption-<id>`` record and the settlement record.

Entries (the brief's recipes): reserve = REDEEM (CONVERT for conversions)
PENDING -R; confirm = same type COMMITTED 0 settling it; cancel / timeout /
rejection / partner failure = RELEASE COMMITTED +R settling it; direct = REDEEM
COMMITTED -R. Each entry's ``attributes`` name the ``redemptionId`` (and the
``rewardId``), so which points went where is readable from the ledger alone.

Modes: ``direct`` (one entry), ``reserve`` (two-phase: the merchant confirms or
cancels before ``expiresAt``), ``partner`` (a partner's reward or a conversion:
reserve, call the partner through the port, then confirm, or release and
report ``partner-rejected`` 502 / ``partner-unavailable`` 503 with
``state: released``). A redemption of at least the tenant's review threshold
is reserved without expiry and waits for a tenant-admin (``approve`` confirms,
or fulfils through the partner first; ``reject`` releases); a merchant may
still cancel it.

Timeouts: ``release_expired`` (timer job ``reservations``) releases the
reservations whose ``expiresAt`` has passed. It scans redemption records by
``expiresAt`` from a watermark kept in the ``system`` container; the watermark
trails the job's own clock by ``WATERMARK_LAG`` so a reservation committed a
little late is still seen, and running the job twice changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Callable, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from shared.clock import Clock, iso
from shared.domain.orders import EntityId
from shared.domain.wallets import WalletName
from shared.errors import (
    AccrueError,
    Conflict,
    LedgerConflict,
    NotEnoughPoints,
    NotFound,
    PartnerRejected,
    PartnerUnavailable,
    RedemptionLimitReached,
    ReservationExpired,
    ReservationInReview,
    ReservationSettled,
    SpendError,
)
from shared.ledger.entries import (
    ENTRY_DOC,
    EntryDraft,
    EntryStatus,
    EntryType,
    Head,
    entry_id,
    settlement_id,
)
from shared.ledger.service import Ledger, Plan, TransactionOutcome, TransactionRequest, fingerprint_of
from shared.spend.catalogue import Catalogue
from shared.spend.partners import PartnerCallFailed, PartnerDirectory, PartnerRequest
from shared.spend.policy import SpendPolicies
from shared.store.layout import LEDGER, SYSTEM, customer_pk
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry import metrics, tracing
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.spend")

Key = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
MAX_POINTS = 10**12
WATERMARK_LAG = timedelta(minutes=5)
WATERMARK_PK, WATERMARK_ID = "spend", "reservation-expiry"
EXPIRY_PAGE = 500
APPEND_ROUNDS = 6
REVIEW_KIND = "redemption"

# States a caller sees.
RESERVED, IN_REVIEW, COMPLETED, CONFIRMED = "reserved", "in-review", "completed", "confirmed"
CANCELLED, EXPIRED, REJECTED, RELEASED = "cancelled", "expired", "rejected", "released"


class RedeemRequest(BaseModel):
    """A reward (``rewardId``) or an amount (``points``), exactly one."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    idempotency_key: Key = Field(alias="idempotencyKey")
    reward_id: EntityId | None = Field(default=None, alias="rewardId")
    points: StrictInt | None = Field(default=None, ge=1, le=MAX_POINTS)
    mode: Literal["direct", "reserve"] = Field(
        default="direct", description="direct: spent at once; reserve: held until confirmed or cancelled")
    wallet: WalletName | None = Field(
        default=None, description="draw from this wallet only (docs/wallets.md); default: the spending order")

    @model_validator(mode="after")
    def _one_target(self) -> "RedeemRequest":
        if (self.reward_id is None) == (self.points is None):
            raise ValueError("give exactly one of rewardId or points")
        return self


class ReviewSink(Protocol):
    """Where a redemption above the threshold is sent for a person's decision."""

    def __call__(self, tenant_id: str, customer_id: str, redemption_id: str, summary: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class SpendResult:
    body: dict[str, Any]
    created: bool  # False: a replay of an earlier request (nothing new written)


def redemption_id(tenant_id: str, customer_id: str, namespaced_key: str) -> str:
    """The redemption's id, which partners de-duplicate on (their ``reference``): of the tenant,
    the customer and the key, as idempotency keys are per customer. (It was of the key alone,
    so two customers, or two tenants, using one key got one partner reference and the second
    fulfilment was answered as a replay of the first; found by an outside review. Ids already
    stored stay as they are: a replay reads its id from the stored outcome, never derives it.)"""
    return "rd-" + hashlib.sha256(f"{tenant_id}|{customer_id}|{namespaced_key}".encode()).hexdigest()[:24]


def record_id(rid: str) -> str:
    return f"redemption-{rid}"


class Redemptions:
    def __init__(self, store: DocumentStore, ledger: Ledger, clock: Clock, catalogue: Catalogue,
                 policies: SpendPolicies, partners: PartnerDirectory) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._catalogue = catalogue
        self._policies = policies
        self._partners = partners
        # Set by the platform when the review queue exists; without it an item above
        # the threshold still waits (in-review) and is listed by ``in_review``.
        self.review_sink: ReviewSink | None = None
        self._review_queue: Any = None
        # Fraud screening of redemptions (``FraudControls.check_redemption``), set by the
        # platform: called inside the ledger plan, so the count it makes is consistent
        # with the append. Reasons send the redemption to review; they never refuse it.
        self.screen: Callable[[str, str], list[dict[str, Any]]] | None = None
        # Called by the expiry scan with a reservation's record once its points are back (set
        # by the vouchers: a partner code handed out for it returns to its pool). Called for a
        # release this scan wrote and again for one it finds settled, so a scan that stopped
        # between the two is made good by the next; it must be idempotent.
        self.on_unpaid: Callable[[dict[str, Any]], None] | None = None

    # --- merchant operations ----------------------------------------------------------

    @tracing.traced("redemption", from_args={"accrue.tenant": "tenant_id"})
    def redeem(self, tenant_id: str, customer_id: str, request: RedeemRequest, actor: str) -> SpendResult:
        """Counted by outcome (``accrue.redemptions``): the state it leaves, ``refused:<code>``, or a replay."""
        try:
            result = self._redeem(tenant_id, customer_id, request, actor)
        except AccrueError as refused:
            metrics.redemption(f"refused:{refused.code}", "request")
            raise
        metrics.redemption(str(result.body.get("status")) if result.created else "replayed", "request")
        return result

    def _redeem(self, tenant_id: str, customer_id: str, request: RedeemRequest, actor: str) -> SpendResult:
        key = f"redeem:{request.idempotency_key}"
        rid = redemption_id(tenant_id, customer_id, key)
        fingerprint = fingerprint_of(request.model_dump(mode="json", by_alias=True))
        existing = self._ledger.marker(tenant_id, customer_id, key)
        if existing is not None:
            return self._replayed(tenant_id, customer_id, key, fingerprint, existing)
        now = self._clock.now()
        policy = self._policies.get(tenant_id)
        reward_id, limit, partner_id, sku, stock_taken = request.reward_id, None, None, None, False
        points = request.points or 0
        if reward_id is not None:
            reward = self._catalogue.reward(tenant_id, reward_id)
            self._catalogue.check_available(tenant_id, reward_id, reward, now)
            points, limit, partner_id, sku = reward.points_cost, reward.per_customer_limit, reward.partner_id, \
                reward.partner_sku
            if reward.stock is not None:
                # Refuse the plain cases before touching the shared counter (so a refusal
                # writes nothing at all); the ledger plan re-checks both authoritatively.
                self._precheck(tenant_id, customer_id, points, reward_id, limit)
                self._catalogue.take(tenant_id, reward_id)
                stock_taken = True
        mode = "partner" if partner_id else request.mode
        try:
            outcome = self._reserve(
                tenant_id, customer_id, key, fingerprint, rid, points=points, entry_type=EntryType.REDEEM,
                kind="reward" if reward_id else "points", mode=mode, reward_id=reward_id, limit=limit,
                review=policy.review_threshold_points is not None and points >= policy.review_threshold_points,
                expires_at=now + timedelta(seconds=policy.reservation_ttl_seconds), stock_taken=stock_taken,
                actor=actor, extra={"partnerId": partner_id, "partnerSku": sku}, screened=True,
                wallet=request.wallet)
        except BaseException:
            if stock_taken:
                self._catalogue.give_back(tenant_id, reward_id)  # nothing was written: the unit is free again
            raise
        if outcome.duplicate and stock_taken:
            self._catalogue.give_back(tenant_id, reward_id)  # a concurrent replay won: it holds its own unit
        return self._after_reserve(tenant_id, customer_id, rid, outcome)

    def confirm(self, tenant_id: str, customer_id: str, rid: str) -> SpendResult:
        record, _ = self._load(tenant_id, customer_id, rid)
        if record["mode"] == "partner":
            raise Conflict(f"redemption {rid} is fulfilled by a partner: it is confirmed by the partner's answer")
        return self._settle(tenant_id, customer_id, rid, "confirm", CONFIRMED, check_expiry=True)

    def cancel(self, tenant_id: str, customer_id: str, rid: str) -> SpendResult:
        record, _ = self._load(tenant_id, customer_id, rid)
        if record["mode"] == "partner" and not record.get("review"):
            raise Conflict(f"redemption {rid} is being fulfilled by a partner: it cannot be cancelled")
        result = self._settle(tenant_id, customer_id, rid, "cancel", CANCELLED, allow_review=True)
        if record.get("review") and self._review_queue is not None:
            self._review_queue.withdraw(tenant_id, REVIEW_KIND, customer_id, record["entryId"],
                                        "the merchant cancelled the reservation")
        return result

    def get(self, tenant_id: str, customer_id: str, rid: str) -> dict[str, Any]:
        record, settlement = self._load(tenant_id, customer_id, rid)
        return self._view(record, settlement)

    def list(self, tenant_id: str, customer_id: str, limit: int | None = 50) -> list[dict[str, Any]]:
        """Redemptions, newest first: the newest ``limit``, or every one (``None``: keyset pages)."""
        pk, filters = customer_pk(tenant_id, customer_id), (Filter("docType", "=", "redemption"),)
        docs = (sorted(read_all(self._store, LEDGER, pk, filters), key=lambda d: (d["createdAt"], d["redemptionId"]),
                       reverse=True) if limit is None else
                self._store.query(LEDGER, Query(pk=pk, filters=filters, order_by="createdAt", descending=True,
                                                limit=limit)))
        return [self._view(d, self._ledger.record(tenant_id, customer_id, settlement_id(d["entryId"])))
                for d in docs]

    # --- review decisions (tenant-admin, through the review queue) --------------------

    def approve(self, tenant_id: str, customer_id: str, rid: str, partner_account: str | None = None) -> SpendResult:
        record, settlement = self._load(tenant_id, customer_id, rid)
        if not record.get("review"):
            raise Conflict(f"redemption {rid} is not waiting for review")
        if settlement is None and record.get("partnerId"):
            return self._fulfil(tenant_id, customer_id, record, partner_account, action="approve")
        return self._settle(tenant_id, customer_id, rid, "approve", CONFIRMED, allow_review=True)

    def reject(self, tenant_id: str, customer_id: str, rid: str, reason: str | None = None) -> SpendResult:
        record, _ = self._load(tenant_id, customer_id, rid)
        if not record.get("review"):
            raise Conflict(f"redemption {rid} is not waiting for review")
        return self._settle(tenant_id, customer_id, rid, "reject", REJECTED, allow_review=True, reason=reason)

    def attach_review_queue(self, queue: Any) -> None:
        """Send redemptions above the threshold to the manual review queue
        (``shared.reviews.ReviewQueue``, kind ``redemption``) and decide them there:
        approve confirms (or fulfils through the partner first), reject releases.
        A merchant's cancel of a reservation in review withdraws the review."""
        def submit(tenant_id: str, customer_id: str, rid: str, summary: dict[str, Any]) -> None:
            record, _ = self._load(tenant_id, customer_id, rid)
            reasons = record.get("reviewReasons") or [
                {"code": "redemption-above-threshold",
                 "detail": f"{summary['points']} points is at or above the tenant's review threshold"}]
            queue.submit(tenant_id, REVIEW_KIND, customer_id, record["entryId"], reasons,
                         {k: v for k, v in summary.items() if v is not None})

        def approve(review: dict[str, Any], who: Any, note: str | None) -> dict[str, Any]:
            return self.approve(review["tenantId"], review["customerId"], review["details"]["redemptionId"]).body

        def reject(review: dict[str, Any], who: Any, note: str | None) -> dict[str, Any]:
            return self.reject(review["tenantId"], review["customerId"], review["details"]["redemptionId"],
                               note).body

        self.review_sink = submit
        self._review_queue = queue
        queue.register(REVIEW_KIND, approve=approve, reject=reject)

    # --- timer ------------------------------------------------------------------------

    def release_expired(self) -> dict[str, int]:
        """Release every reservation past its ``expiresAt``; idempotent (run twice, same ledger)."""
        now = self._clock.now()
        mark = self._store.read(SYSTEM, WATERMARK_PK, WATERMARK_ID)
        start = mark["until"] if mark else "0000"
        scanned = released = 0
        held: str | None = None  # the first reservation whose on_unpaid failed: the watermark stays at it
        while True:
            docs = self._store.query(LEDGER, Query(pk=None, filters=(
                Filter("docType", "=", "redemption"), Filter("expiresAt", ">=", start),
                # At its expiresAt a reservation is expired (a confirm is refused then): released too.
                Filter("expiresAt", "<=", iso(now))), order_by="expiresAt", limit=EXPIRY_PAGE))
            for doc in docs:
                scanned += 1
                settlement = self._ledger.record(doc["tenantId"], doc["customerId"], settlement_id(doc["entryId"]))
                if settlement:
                    if settlement.get("resolution") != CONFIRMED and not self._unpaid(doc):
                        held = min(held or doc["expiresAt"], doc["expiresAt"])
                    continue
                try:
                    result = self._settle(doc["tenantId"], doc["customerId"], doc["redemptionId"], "expire", EXPIRED,
                                          release_only_expired=True)
                    released += result.created
                except SpendError:
                    continue  # confirmed or cancelled meanwhile
                if not self._unpaid(doc):
                    held = min(held or doc["expiresAt"], doc["expiresAt"])
            if len(docs) < EXPIRY_PAGE or docs[-1]["expiresAt"] == start:
                break
            start = docs[-1]["expiresAt"]
        until = iso(now - WATERMARK_LAG)
        if held is not None:
            until = min(until, held)  # scanned again next time (``expiresAt >= until``)
        if mark is None or until > mark["until"]:
            self._store.upsert(SYSTEM, {"id": WATERMARK_ID, "pk": WATERMARK_PK, "docType": "watermark",
                                        "until": until})
        return {"scanned": scanned, "released": released}

    def _unpaid(self, record: dict[str, Any]) -> bool:
        """``on_unpaid`` for ``record``; False when it failed (the next scan calls it again)."""
        if self.on_unpaid is None:
            return True
        try:
            self.on_unpaid(record)
            return True
        except Exception as exc:  # noqa: BLE001 - the releases go on; the next scan calls it again
            log.error("after releasing reservation %s: %s: %s; the next scan retries", record["redemptionId"],
                      type(exc).__name__, exc, extra=fields(tenant=record["tenantId"], error=type(exc).__name__))
            return False

    # --- partner flows (used by conversions too) -----------------------------------------

    def reserve_for_partner(self, tenant_id: str, customer_id: str, key: str, fingerprint: str, *, points: int,
                            entry_type: EntryType, kind: str, partner_id: str, actor: str,
                            extra: dict[str, Any], partner_account: str | None,
                            wallet: str | None = None) -> SpendResult:
        """Reserve, call the partner, confirm or compensate. A replay of ``key`` resumes
        a reservation a crash left open (the partner de-duplicates on the redemption id)."""
        rid = redemption_id(tenant_id, customer_id, key)
        existing = self._ledger.marker(tenant_id, customer_id, key)
        if existing is not None:
            return self._replayed(tenant_id, customer_id, key, fingerprint, existing, partner_account)
        policy = self._policies.get(tenant_id)
        outcome = self._reserve(
            tenant_id, customer_id, key, fingerprint, rid, points=points, entry_type=entry_type, kind=kind,
            mode="partner", reward_id=None, limit=None,
            # Not reviewed: approving later would need the partner account, which is never stored.
            review=False,
            expires_at=self._clock.now() + timedelta(seconds=policy.reservation_ttl_seconds), stock_taken=False,
            actor=actor, extra={"partnerId": partner_id, **extra}, wallet=wallet)
        return self._after_reserve(tenant_id, customer_id, rid, outcome, partner_account)

    # --- internals ----------------------------------------------------------------------

    def _append(self, request: TransactionRequest) -> TransactionOutcome:
        """The ledger re-plans a lost race at once, a bounded number of times; on a hot
        customer a crowd of writers can exhaust that. Back off with jitter and try
        again (safe: the request is idempotent) before passing the 409 on."""
        for attempt in range(APPEND_ROUNDS):
            try:
                return self._ledger.append_one(request)
            except LedgerConflict:
                if attempt == APPEND_ROUNDS - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _precheck(self, tenant_id: str, customer_id: str, points: int, reward_id: str, limit: int | None) -> None:
        head = self._ledger.head(tenant_id, customer_id)
        if head.balance < points:
            raise NotEnoughPoints(f"customer {customer_id} has {head.balance} points available; {points} were asked "
                                  "for", available=head.balance, requested=points)
        if limit is not None and self._redeemed(tenant_id, customer_id, reward_id) >= limit:
            raise RedemptionLimitReached(f"customer {customer_id} already redeemed reward {reward_id!r} the "
                                         f"maximum of {limit} time(s)", rewardId=reward_id, limit=limit)

    def _reserve(self, tenant_id: str, customer_id: str, key: str, fingerprint: str, rid: str, *, points: int,
                 entry_type: EntryType, kind: str, mode: str, reward_id: str | None, limit: int | None,
                 review: bool, expires_at: datetime, stock_taken: bool, actor: str,
                 extra: dict[str, Any], screened: bool = False, wallet: str | None = None) -> TransactionOutcome:
        assert isinstance(points, int) and points >= 1
        threshold_review = review

        def plan(head: Head) -> Plan:
            if head.balance < points:
                raise NotEnoughPoints(f"customer {customer_id} has {head.balance} points available; "
                                      f"{points} were asked for", available=head.balance, requested=points)
            if wallet is not None:
                in_wallet = self._ledger.wallet_available(tenant_id, head, wallet)
                if in_wallet < points:
                    raise NotEnoughPoints(f"customer {customer_id} has {in_wallet} points in wallet {wallet!r}; "
                                          f"{points} were asked for", available=in_wallet, requested=points)
            if limit is not None:
                taken = self._redeemed(tenant_id, customer_id, reward_id)
                if taken >= limit:
                    raise RedemptionLimitReached(f"customer {customer_id} already redeemed reward {reward_id!r} "
                                                 f"{taken} time(s); the limit is {limit}", rewardId=reward_id,
                                                 limit=limit)
            reasons = []
            if threshold_review:
                reasons.append({"code": "redemption-above-threshold",
                                "detail": f"{points} points is at or above the tenant's review threshold"})
            if screened and self.screen is not None:
                reasons.extend(self.screen(tenant_id, customer_id))
            review = bool(reasons)
            reservation = entry_id(head.seq + 1)
            committed = mode == "direct" and not review
            draft = EntryDraft(entry_type, -points, status=EntryStatus.COMMITTED if committed else EntryStatus.PENDING,
                               attributes={"redemptionId": rid, "kind": kind,
                                           **({"rewardId": reward_id} if reward_id else {})}, wallet=wallet)
            status = COMPLETED if committed else (IN_REVIEW if review else RESERVED)
            expiry = None if committed or review else iso(expires_at)
            record = {"id": record_id(rid), "docType": "redemption", "redemptionId": rid, "kind": kind, "mode": mode,
                      "entryType": entry_type.value, "points": points, "rewardId": reward_id, "entryId": reservation,
                      "expiresAt": expiry, "review": review, "stockTaken": stock_taken, "actorKeyId": actor,
                      **({"reviewReasons": reasons} if reasons else {}),
                      **{k: v for k, v in extra.items() if v is not None}}
            outcome = {"redemptionId": rid, "status": status, "points": points, "available": head.balance - points,
                       "entryId": reservation, "expiresAt": expiry, "rewardId": reward_id, "kind": kind, "mode": mode}
            return Plan([draft], {k: v for k, v in outcome.items() if v is not None}, [record])

        return self._append(TransactionRequest(tenant_id, customer_id, key, fingerprint, plan))

    def _after_reserve(self, tenant_id: str, customer_id: str, rid: str, outcome: TransactionOutcome,
                       partner_account: str | None = None) -> SpendResult:
        body = dict(outcome.outcome)
        if body["status"] == IN_REVIEW:
            record, _ = self._load(tenant_id, customer_id, rid)
            self._submit_review(tenant_id, customer_id, record, partner_account)
        elif body["mode"] == "partner":
            record, _ = self._load(tenant_id, customer_id, rid)
            return self._fulfil(tenant_id, customer_id, record, partner_account, action="fulfil")
        return SpendResult(body, created=not outcome.duplicate)

    def _replayed(self, tenant_id: str, customer_id: str, key: str, fingerprint: str, marker: dict[str, Any],
                  partner_account: str | None = None) -> SpendResult:
        if marker.get("fingerprint") != fingerprint:
            raise Conflict(f"idempotency key {marker['idempotencyKey'].split(':', 1)[1]!r} was already used for a "
                           "different request")
        body = dict(marker["outcome"])
        record, settlement = self._load(tenant_id, customer_id, body["redemptionId"])
        if record.get("review") and settlement is None:
            # The first call may have died between the ledger and the queue: submitting is
            # idempotent, so a retry makes sure the review exists.
            self._submit_review(tenant_id, customer_id, record, partner_account)
        if record["mode"] == "partner" and not record.get("review"):
            if settlement is None:
                # A crash (or timeout) left the partner call unfinished: resume it.
                return self._fulfil(tenant_id, customer_id, record, partner_account, action="fulfil")
            if settlement["resolution"] == RELEASED:
                self._raise_partner_failure(tenant_id, customer_id, record, settlement)
            fulfilled = self._ledger.marker(tenant_id, customer_id, f"fulfil:{record['redemptionId']}")
            if fulfilled is not None:
                # Fulfilled: a repeat is answered as the fulfilment was (confirmed, with the
                # partner's reference), not with the reservation it started from.
                return SpendResult({**fulfilled["outcome"], "state": self._view(record, settlement)["status"],
                                    "duplicate": True}, created=False)
        return SpendResult({**body, "state": self._view(record, settlement)["status"], "duplicate": True},
                           created=False)

    def _fulfil(self, tenant_id: str, customer_id: str, record: dict[str, Any], partner_account: str | None,
                action: str) -> SpendResult:
        rid = record["redemptionId"]
        request = PartnerRequest(partner_id=record["partnerId"], kind="conversion" if record["kind"] == "conversion"
                                 else "reward", reference=rid, tenant_id=tenant_id, customer_id=customer_id,
                                 points=record["points"], sku=record.get("partnerSku"),
                                 amount=record.get("partnerAmount"), partner_account=partner_account)
        try:
            receipt = self._partners.port(record["partnerId"]).fulfil(request)
        except (PartnerCallFailed, NotFound) as failure:
            permanent = isinstance(failure, NotFound) or failure.permanent
            details = {"permanent": permanent, "reason": getattr(failure, "message", str(failure)),
                       "attempts": getattr(failure, "attempts", 0), "circuit": getattr(failure, "circuit", None)}
            try:
                self._settle(tenant_id, customer_id, rid, "compensate", RELEASED, allow_review=True,
                             partner_failure=details)
            except ReservationSettled:
                pass  # already released (a replay of the compensation): report the same failure
            if record.get("review") and self._review_queue is not None:
                # The approval ended in a release: the review is closed, not left open on a
                # reservation that can no longer be approved or rejected.
                self._review_queue.withdraw(tenant_id, REVIEW_KIND, customer_id, record["entryId"],
                                            f"the partner could not fulfil: {details['reason']}")
            _, settlement = self._load(tenant_id, customer_id, rid)
            self._raise_partner_failure(tenant_id, customer_id, record, settlement)
        try:
            result = self._settle(tenant_id, customer_id, rid, action, CONFIRMED, allow_review=action == "approve",
                                  partner_reference=receipt.partner_reference)
        except ReservationSettled:
            # The partner delivered, but the reservation ended meanwhile (it outlived its
            # TTL during a very slow call): an operator must settle this by hand.
            log.error("a partner fulfilled a redemption (reference %s) after its reservation ended",
                      receipt.partner_reference, extra=fields(tenant=tenant_id, partner_id=record["partnerId"],
                                                              redemption_id=rid, error="reservation-settled"))
            raise
        return SpendResult({**result.body, "partnerReference": receipt.partner_reference,
                            "partnerAttempts": receipt.attempts}, created=result.created)

    def _raise_partner_failure(self, tenant_id: str, customer_id: str, record: dict[str, Any],
                               settlement: dict[str, Any] | None) -> None:
        failure = (settlement or {}).get("partnerFailure") or {}
        available = self._ledger.head(tenant_id, customer_id).balance
        cls = PartnerRejected if failure.get("permanent") else PartnerUnavailable
        raise cls(f"partner {record['partnerId']} could not fulfil redemption {record['redemptionId']}: "
                  f"{failure.get('reason', 'failed')}; the {record['points']} reserved points were given back",
                  redemptionId=record["redemptionId"], state=RELEASED, pointsReturned=record["points"],
                  available=available, partnerId=record["partnerId"], attempts=failure.get("attempts"),
                  circuit=failure.get("circuit"))

    def _settle(self, tenant_id: str, customer_id: str, rid: str, action: str, resolution: str, *,
                check_expiry: bool = False, allow_review: bool = False, release_only_expired: bool = False,
                partner_reference: str | None = None, partner_failure: dict[str, Any] | None = None,
                reason: str | None = None) -> SpendResult:
        key = f"{action}:{rid}"
        confirm = resolution == CONFIRMED

        def plan(head: Head) -> Plan:
            record, settlement = self._load(tenant_id, customer_id, rid)
            now = self._clock.now()
            if settlement is not None or record.get("expiresAt") is None and not record.get("review"):
                state = self._view(record, settlement)["status"]
                raise ReservationSettled(f"redemption {rid} is already {state}", redemptionId=rid, state=state)
            if record.get("review") and not allow_review:
                raise ReservationInReview(f"redemption {rid} waits for a tenant-admin's review", redemptionId=rid,
                                          state=IN_REVIEW)
            expired = record.get("expiresAt") is not None and iso(now) >= record["expiresAt"]
            if check_expiry and expired:
                raise ReservationExpired(f"reservation {rid} expired at {record['expiresAt']}; its points are "
                                         "being given back", redemptionId=rid, state=EXPIRED,
                                         expiresAt=record["expiresAt"])
            if release_only_expired and not expired:
                raise ReservationSettled(f"reservation {rid} has not expired", redemptionId=rid, state=RESERVED)
            points, reservation = record["points"], record["entryId"]
            attributes = {"redemptionId": rid, "kind": record["kind"], "resolution": resolution,
                          **({"rewardId": record["rewardId"]} if record.get("rewardId") else {}),
                          **({"partnerReference": partner_reference} if partner_reference else {})}
            if confirm:
                draft = EntryDraft(EntryType(record["entryType"]), 0, settles_entry_id=reservation,
                                   settles_amount=-points, reference_entry_id=reservation, attributes=attributes)
                available = head.balance
            else:
                draft = EntryDraft(EntryType.RELEASE, points, settles_entry_id=reservation, settles_amount=-points,
                                   reference_entry_id=reservation, attributes=attributes)
                available = head.balance + points
            settled = {"id": settlement_id(reservation), "docType": "settlement", "redemptionId": rid,
                       "resolution": resolution, "partnerReference": partner_reference,
                       "partnerFailure": partner_failure, "reason": reason}
            outcome = {"redemptionId": rid, "status": resolution, "points": points, "available": available,
                       "kind": record["kind"], "mode": record["mode"], "rewardId": record.get("rewardId"),
                       "programmeId": record.get("programmeId"), "partnerAmount": record.get("partnerAmount"),
                       "partnerReference": partner_reference}
            return Plan([draft], {k: v for k, v in outcome.items() if v is not None},
                        [{k: v for k, v in settled.items() if v is not None}])

        request = TransactionRequest(tenant_id, customer_id, key, fingerprint_of([action, rid]), plan)
        try:
            outcome = self._append(request)
        except Conflict as error:
            if isinstance(error, SpendError):
                raise
            # Lost the race on the settlement record itself: say who won.
            record, settlement = self._load(tenant_id, customer_id, rid)
            state = self._view(record, settlement)["status"]
            raise ReservationSettled(f"redemption {rid} is already {state}", redemptionId=rid, state=state) from None
        if not outcome.duplicate:
            metrics.redemption(resolution, "settlement")
        if not confirm and not outcome.duplicate:
            record, _ = self._load(tenant_id, customer_id, rid)
            if record.get("stockTaken") and record.get("rewardId"):
                self._catalogue.give_back(tenant_id, record["rewardId"])
        return SpendResult({**outcome.outcome, **({"duplicate": True} if outcome.duplicate else {})},
                           created=not outcome.duplicate)

    def _load(self, tenant_id: str, customer_id: str, rid: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        record = self._ledger.record(tenant_id, customer_id, record_id(rid))
        if record is None or record.get("docType") != "redemption":
            raise NotFound(f"redemption {rid!r} does not exist for customer {customer_id}")
        return record, self._ledger.record(tenant_id, customer_id, settlement_id(record["entryId"]))

    def redeemed_units(self, tenant_id: str, customer_id: str, reward_id: str) -> int:
        """Units of ``reward_id`` the customer holds (for eligibility answers: shared/agents)."""
        return self._redeemed(tenant_id, customer_id, reward_id)

    def _redeemed(self, tenant_id: str, customer_id: str, reward_id: str | None) -> int:
        """Units of ``reward_id`` this customer holds: reservations and direct redemptions, minus
        releases and refunded vouchers (a positive ADJUST naming the reward: shared/vouchers)."""
        entries = self._store.query(LEDGER, Query(pk=customer_pk(tenant_id, customer_id), filters=(
            Filter("docType", "=", ENTRY_DOC), Filter("attributes.rewardId", "=", reward_id),
            Filter("entryType", "in", [EntryType.REDEEM.value, EntryType.RELEASE.value, EntryType.ADJUST.value])),
            limit=10_000))
        return sum(1 for e in entries if e["entryType"] == EntryType.REDEEM.value and e["signedAmount"] < 0) - \
            sum(1 for e in entries if e["entryType"] != EntryType.REDEEM.value and e["signedAmount"] > 0)

    def _submit_review(self, tenant_id: str, customer_id: str, record: dict[str, Any],
                       partner_account: str | None) -> None:
        if self.review_sink is None:
            return
        summary = {"redemptionId": record["redemptionId"], "points": record["points"], "kind": record["kind"],
                   "mode": record["mode"], "rewardId": record.get("rewardId"), "partnerId": record.get("partnerId")}
        self.review_sink(tenant_id, customer_id, record["redemptionId"], summary)

    def _view(self, record: dict[str, Any], settlement: dict[str, Any] | None) -> dict[str, Any]:
        if settlement is not None:
            status = settlement["resolution"]
        elif record.get("review"):
            status = IN_REVIEW
        elif record.get("expiresAt") is None:
            status = COMPLETED
        elif iso(self._clock.now()) >= record["expiresAt"]:
            status = EXPIRED  # the timer job writes the release
        else:
            status = RESERVED
        view = {"redemptionId": record["redemptionId"], "customerId": record["customerId"], "status": status,
                "kind": record["kind"], "mode": record["mode"], "points": record["points"],
                "rewardId": record.get("rewardId"), "partnerId": record.get("partnerId"),
                "programmeId": record.get("programmeId"), "partnerAmount": record.get("partnerAmount"),
                "entryId": record["entryId"], "expiresAt": record.get("expiresAt"), "createdAt": record["createdAt"],
                "review": bool(record.get("review")),
                "pointsReleased": settlement is not None and settlement["resolution"] != CONFIRMED}
        if settlement is not None:
            view["settledAt"] = settlement["createdAt"]
            if settlement.get("partnerReference"):
                view["partnerReference"] = settlement["partnerReference"]
        return {k: v for k, v in view.items() if v is not None}

