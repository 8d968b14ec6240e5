"""Vouchers: points exchanged for a code, and that code redeemed at a point of sale.

What it guarantees (docs/vouchers.md):

* **Bought through the ledger.** A voucher reward is redeemed like any reward
  (``Redemptions.redeem``, direct: a REDEEM entry, the reward's stock and limits,
  review above the threshold). The voucher document is written after the ledger
  entry and is derived from it: its code is ``HMAC(tenant key, redemptionId)``
  (shared/vouchers/codes.py), its id ``vc-`` + the redemption's hash, its expiry
  counted from the redemption's ``createdAt``. So a retry of the same request
  (same idempotency key) after a crash between the two writes makes the same
  voucher, never a second one, and the points are spent exactly once.
* **Redeemed exactly once per use.** The voucher is one document in its own
  partition (``codes`` container, ``tenantId:v:<codeHash>``) holding its use
  count and, per use, the point of sale's idempotency key. A redemption is one
  ETag compare-and-swap of that document: of any number of concurrent attempts
  on a single-use code, one writes ``used: 1`` and every other one re-reads and
  is refused (409 ``voucher-not-redeemable``, ``state: used``), or, carrying the
  winner's idempotency key, gets the winner's answer.
* **Cancel and expiry return points by policy.** An unused voucher cancelled
  (or expired, by the ``vouchers`` timer job) is marked so by a CAS and, when the
  tenant's spend policy says ``refund``, flagged ``refundPending``; the refund is
  an ADJUST entry with idempotency key ``voucher-refund:<voucherId>`` (written
  once whatever the retries), after which the flag is cleared. A crash between
  the two leaves the flag, and the job finishes the refund.
* **Every event reaches the outbox.** A change of a voucher (issued, redeemed, cancelled,
  expired) writes the event it owes in the same document write (``eventsDue``, flag
  ``eventsPending``); it is then published (idempotent per event: its source id) and the
  list cleared by a CAS. A publish that fails (the outbox store down), or a crash before
  it, leaves the list: the retry of the request and the ``vouchers`` job publish it.
  Before, a failed publish was logged and the event lost for good (an outside review).
* **Codes are secrets.** Stored as a hash only; shown in the exchange's answer
  and to a point of sale that already holds it; never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import Clock, iso, parse_iso
from shared.domain.orders import EntityId
from shared.errors import Conflict, DocumentExists, FieldProblem, NotFound, OutOfStock, PreconditionFailed, \
    ReservationExpired, ReservationSettled, SpendError, ValidationFailed
from shared.ledger.entries import EntryDraft, EntryType, Head
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.spend.catalogue import Catalogue, RewardFields
from shared.spend.policy import SpendPolicies
from shared.spend.redemptions import COMPLETED, CONFIRMED, IN_REVIEW, RESERVED, RedeemRequest, Redemptions, \
    SpendResult, record_id
from shared.store.contention import attempts
from shared.store.layout import CODES, voucher_pk
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry.logs import fields
from shared.vouchers import codes
from shared.vouchers.pools import CodePools

log = logging.getLogger("accrue.vouchers")

CAS_ATTEMPTS = 200
JOB_PAGE = 500
ACTIVE, USED, CANCELLED, EXPIRED = "active", "used", "cancelled", "expired"
VOUCHER_DOC_ID = "voucher"
Digest = Callable[[str, str, str], bytes]


class VoucherNotRedeemable(SpendError, Conflict):
    """Used up, cancelled, expired or for another channel (409, names ``state``)."""

    code = "voucher-not-redeemable"


class VoucherRedeemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    channel: Literal["online", "in-store"] = Field(description="where the voucher is being used")
    order_id: EntityId | None = Field(default=None, alias="orderId",
                                      description="the merchant's order it pays towards, for the record")


@dataclass(frozen=True)
class VoucherOutcome:
    body: dict[str, Any]
    created: bool


def _owing(doc: dict[str, Any], event_type: str, at: str, **extra: Any) -> dict[str, Any]:
    """``doc`` that also owes ``event_type`` (its data as of this change), after the events it
    already owed: written with the change, so the event cannot be lost between the two."""
    data = {"voucherId": doc["voucherId"], "customerId": doc["customerId"], "status": doc["status"],
            "points": doc["points"], **extra}
    return {**doc, "eventsDue": [*(doc.get("eventsDue") or []), {"type": event_type, "data": data, "at": at}],
            "eventsPending": True}


def voucher_id_of(redemption_id: str) -> str:
    assert redemption_id.startswith("rd-")
    return "vc-" + redemption_id[3:]


def redemption_id_of(voucher_id: str) -> str:
    assert voucher_id.startswith("vc-")
    return "rd-" + voucher_id[3:]


class Vouchers:
    def __init__(self, store: DocumentStore, ledger: Ledger, clock: Clock, catalogue: Catalogue,
                 policies: SpendPolicies, redemptions: Redemptions, digest: Digest, pools: CodePools) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._catalogue = catalogue
        self._policies = policies
        self._redemptions = redemptions
        self._digest = digest
        self.pools = pools
        # Called with (tenant, event type, data) after a voucher changes state: the webhook
        # outbox when the platform wires it; ids and amounts only, never the code.
        self.publish: Callable[[str, str, dict[str, Any], str], object] | None = None  # (tenant, type, data, at)
        if redemptions is not None:  # tests of the point of sale alone wire none
            redemptions.on_unpaid = self._return_code

    def _return_code(self, record: dict[str, Any]) -> None:
        """A pool exchange whose reservation was released (its process died between the hand-out
        and the confirm, and no retry came): its code goes back to the pool (idempotent)."""
        if record.get("rewardId") is None:
            return
        try:
            reward = self._catalogue.reward(record["tenantId"], record["rewardId"])
        except NotFound:
            return
        if reward.voucher is not None and reward.voucher.pool_id is not None:
            self.pools.give_back(record["tenantId"], reward.voucher.pool_id, record["redemptionId"])

    # --- exchange: points for a voucher --------------------------------------------------

    def is_voucher_reward(self, tenant_id: str, reward_id: str | None) -> bool:
        return reward_id is not None and self._catalogue.reward(tenant_id, reward_id).type == "voucher"

    def exchange(self, tenant_id: str, customer_id: str, request: RedeemRequest, actor: str) -> SpendResult:
        """Redeem a voucher reward and issue its voucher (the answer's ``voucher``, with the code)."""
        assert request.reward_id is not None
        reward = self._catalogue.reward(tenant_id, request.reward_id)
        assert reward.type == "voucher" and reward.voucher is not None
        if request.mode != "direct":
            raise ValidationFailed("a voucher is bought at once", [FieldProblem("mode", "a voucher reward is "
                                                                                 "redeemed with mode direct")])
        if reward.voucher.pool_id is not None:
            return self._exchange_from_pool(tenant_id, customer_id, request, reward, actor)
        result = self._redemptions.redeem(tenant_id, customer_id, request, actor)
        rid = result.body["redemptionId"]
        record = self._redemptions.get(tenant_id, customer_id, rid)
        if record["status"] not in (COMPLETED, CONFIRMED):
            # In review (or released): the voucher is issued once the redemption is approved,
            # by repeating this request (same idempotency key).
            return result
        voucher = self._issue(tenant_id, customer_id, rid, record, reward)
        return SpendResult({**result.body, "voucher": voucher}, result.created)

    def _issue(self, tenant_id: str, customer_id: str, rid: str, record: dict[str, Any],
               reward: RewardFields) -> dict[str, Any]:
        terms = reward.voucher
        assert terms is not None
        code = self.code_of(tenant_id, rid)
        digest = codes.code_hash(tenant_id, code)
        expires = parse_iso(record["createdAt"]) + timedelta(days=terms.valid_days)
        doc = {"id": VOUCHER_DOC_ID, "pk": voucher_pk(tenant_id, digest), "docType": "voucher",
               "tenantId": tenant_id, "voucherId": voucher_id_of(rid), "customerId": customer_id,
               "redemptionId": rid, "rewardId": record.get("rewardId"), "entryId": record["entryId"],
               "points": record["points"], "uses": terms.uses, "used": 0,
               "value": terms.value.model_dump(mode="json") if terms.value else None,
               "productSku": terms.product_sku, "channel": terms.channel, "expiresAt": iso(expires),
               "status": ACTIVE, "createdAt": record["createdAt"], "redemptions": {}}
        doc = _owing(doc, "voucher.issued", iso(self._clock.now()))
        try:
            stored = self._store.create(CODES, {k: v for k, v in doc.items() if v is not None})
        except DocumentExists:
            stored = self._read(tenant_id, digest)
            assert stored is not None and stored["redemptionId"] == rid, "one voucher per code"
        stored = self._announce(stored)  # a retry publishes what an earlier attempt could not
        return {**self._view(stored), "code": code}

    def _exchange_from_pool(self, tenant_id: str, customer_id: str, request: RedeemRequest, reward: RewardFields,
                            actor: str) -> SpendResult:
        """A partner's code: reserve the points, take a code from the pool (never one given
        before), confirm; an empty pool cancels the reservation (the points come back)."""
        terms = reward.voucher
        assert terms is not None and terms.pool_id is not None
        reserve = request.model_copy(update={"mode": "reserve"})
        result = self._redemptions.redeem(tenant_id, customer_id, reserve, actor)
        rid = result.body["redemptionId"]
        state = self._redemptions.get(tenant_id, customer_id, rid)
        if state["status"] == IN_REVIEW:
            # No code before a tenant-admin approves: repeating this request then hands it out.
            return result
        if state["status"] not in (RESERVED, CONFIRMED):
            self._refuse_unpaid(tenant_id, terms.pool_id, state)
        try:
            code = self.pools.hand_out(tenant_id, terms.pool_id, rid, customer_id)
        except OutOfStock:
            try:
                self._redemptions.cancel(tenant_id, customer_id, rid)
            except ReservationSettled:
                pass
            raise
        try:
            body = self._redemptions.confirm(tenant_id, customer_id, rid).body
        except (ReservationSettled, ReservationExpired):
            # A replay of a confirmed exchange, or a reservation that expired or was released
            # between the reserve and this confirm (a crash, a slow retry): only a confirmed one
            # keeps its code.
            state = self._redemptions.get(tenant_id, customer_id, rid)
            if state["status"] != CONFIRMED:
                self._refuse_unpaid(tenant_id, terms.pool_id, state)
            body = {**result.body, "status": state["status"]}
        voucher = {"voucherId": voucher_id_of(rid), "poolId": terms.pool_id, "code": code,
                   "source": "partner", "channel": terms.channel}
        return SpendResult({**body, "voucher": voucher}, result.created)

    def _refuse_unpaid(self, tenant_id: str, pool_id: str, state: dict[str, Any]) -> None:
        """A pool exchange whose points came back, or are coming back, keeps no code: refused
        (409). Once the reservation is settled unpaid (released, cancelled, rejected: final,
        so no confirm can follow) any code it was given goes back to the pool; while it has
        only expired, unsettled, a confirm that began before its expiry may still commit, so
        the code stays until the timer job settles it and a retry finds it settled."""
        rid, status = state["redemptionId"], state["status"]
        if not state.get("pointsReleased"):
            raise ReservationExpired(f"reservation {rid} expired; its points are being given back and no code is "
                                     "handed out; redeem again with a new idempotency key", redemptionId=rid,
                                     state=status)
        self.pools.give_back(tenant_id, pool_id, rid)
        raise ReservationSettled(f"redemption {rid} is {status}: its points are given back and no code is handed "
                                 "out; redeem again with a new idempotency key", redemptionId=rid, state=status)

    def code_of(self, tenant_id: str, redemption_id: str) -> str:
        return codes.encode(self._digest(tenant_id, "voucher-code", redemption_id)[:codes.CODE_BITS // 8])

    # --- point of sale -------------------------------------------------------------------

    def check(self, tenant_id: str, code: str) -> dict[str, Any]:
        """What a point of sale may know before redeeming: state, uses left, value, expiry."""
        doc = self._read(tenant_id, codes.code_hash(tenant_id, code))
        if doc is None:
            raise NotFound("no voucher has this code")
        return self._view(doc)

    def redeem(self, tenant_id: str, code: str, idempotency_key: str, request: VoucherRedeemRequest,
               actor: str) -> VoucherOutcome:
        """One use of the voucher, exactly once per ``idempotency_key`` (see the module docstring)."""
        digest = codes.code_hash(tenant_id, code)  # a malformed or mistyped code: 422 before any read
        fingerprint = fingerprint_of(request.model_dump(mode="json", by_alias=True))
        for _ in attempts(CAS_ATTEMPTS):
            doc = self._read(tenant_id, digest)
            if doc is None:
                raise NotFound("no voucher has this code")
            earlier = doc.get("redemptions", {}).get(idempotency_key)
            if earlier is not None:
                if earlier["fingerprint"] != fingerprint:
                    raise Conflict("this Idempotency-Key was already used for a different redemption")
                self._announce(doc)
                return VoucherOutcome({**earlier["outcome"], "duplicate": True}, created=False)
            now = self._clock.now()
            self._refuse_unless_redeemable(doc, request, now)
            use = doc["used"] + 1
            outcome = {"voucherId": doc["voucherId"], "status": "redeemed", "use": use,
                       "usesLeft": doc["uses"] - use, "value": doc.get("value"), "productSku": doc.get("productSku"),
                       "channel": request.channel, "orderId": request.order_id, "redeemedAt": iso(now)}
            outcome = {k: v for k, v in outcome.items() if v is not None}
            updated = {**doc, "used": use, "status": USED if use >= doc["uses"] else ACTIVE,
                       "redemptions": {**doc.get("redemptions", {}), idempotency_key: {
                           "fingerprint": fingerprint, "outcome": outcome, "actorKeyId": actor}}}
            updated = _owing({k: v for k, v in updated.items() if not k.startswith("_")}, "voucher.redeemed",
                             iso(now), use=use)
            try:
                stored = self._store.upsert(CODES, updated, if_match=doc["_etag"])
            except PreconditionFailed:
                # Another use (or a cancel) changed it first: re-read and decide again (after
                # the jittered pause of shared/store/contention.py).
                continue
            self._announce(stored)
            return VoucherOutcome(outcome, created=True)
        raise Conflict("this voucher is being redeemed by many points of sale at once: retry")

    def _refuse_unless_redeemable(self, doc: dict[str, Any], request: VoucherRedeemRequest, now: datetime) -> None:
        state = self._state(doc, now)
        vid = doc["voucherId"]
        if state != ACTIVE:
            raise VoucherNotRedeemable(f"voucher {vid} is {state}", voucherId=vid, state=state)
        if doc["channel"] != "any" and doc["channel"] != request.channel:
            raise VoucherNotRedeemable(f"voucher {vid} is for the {doc['channel']} channel only", voucherId=vid,
                                       state=state, channel=doc["channel"])

    # --- the owner's side: list, cancel ---------------------------------------------------

    def list(self, tenant_id: str, customer_id: str, limit: int | None = 1000) -> list[dict[str, Any]]:
        """The customer's vouchers, newest first; ``limit=None``: every one (keyset pages on
        ``voucherId``, unique in the tenant: the documents' ``id`` is the same in every partition)."""
        filters = (Filter("customerId", "=", customer_id), Filter("tenantId", "=", tenant_id),
                   Filter("docType", "=", "voucher"))
        docs = (read_all(self._store, CODES, None, filters, key="voucherId") if limit is None
                else self._store.query(CODES, Query(pk=None, filters=filters, limit=limit)))
        return sorted((self._view(d) for d in docs), key=lambda v: (v["createdAt"], v["voucherId"]), reverse=True)

    def cancel(self, tenant_id: str, customer_id: str, voucher_id: str, actor: str) -> VoucherOutcome:
        """Cancel an unused voucher; its points come back if the tenant's policy says ``refund``."""
        digest = codes.code_hash(tenant_id, self.code_of(tenant_id, redemption_id_of(voucher_id)))
        policy = self._policies.get(tenant_id)
        for _ in attempts(CAS_ATTEMPTS):
            doc = self._read(tenant_id, digest)
            if doc is None or doc["customerId"] != customer_id:
                raise NotFound(f"voucher {voucher_id!r} does not exist for customer {customer_id}")
            if doc["status"] == CANCELLED:
                self._announce(doc)
                self._finish_refund(tenant_id, doc)
                return VoucherOutcome({**self._view(self._read(tenant_id, digest) or doc), "duplicate": True}, False)
            state = self._state(doc, self._clock.now())
            if state != ACTIVE or doc["used"] > 0:
                raise VoucherNotRedeemable(f"voucher {voucher_id} is {state if state != ACTIVE else 'partly used'}: "
                                           "only an unused voucher can be cancelled", voucherId=voucher_id,
                                           state=state)
            updated = _owing(self._ended(doc, CANCELLED, policy.voucher_cancel == "refund", actor),
                             "voucher.cancelled", iso(self._clock.now()))
            try:
                stored = self._store.upsert(CODES, updated, if_match=doc["_etag"])
            except PreconditionFailed:
                continue
            stored = self._announce(stored)
            self._finish_refund(tenant_id, stored)
            return VoucherOutcome(self._view(self._read(tenant_id, digest) or updated), True)
        raise Conflict("this voucher changed too often while it was being cancelled: retry")

    # --- timer job ------------------------------------------------------------------------

    def run_due(self) -> dict[str, int]:
        """The ``vouchers`` job: mark expired the active vouchers past their expiry (flagging a
        refund where the tenant's policy says so), then finish every pending refund. Bounded
        (``JOB_PAGE`` of each per run) and idempotent: run it twice, the same ledger."""
        now = iso(self._clock.now())
        expired = refunded = 0
        due = self._store.query(CODES, Query(pk=None, filters=(
            Filter("expiresAt", "<=", now), Filter("docType", "=", "voucher"), Filter("status", "=", ACTIVE)),
            order_by="expiresAt", limit=JOB_PAGE))
        for doc in due:
            policy = self._policies.get(doc["tenantId"])
            updated = _owing(self._ended(doc, EXPIRED, policy.voucher_expiry == "refund" and doc["used"] == 0,
                                         "system"), "voucher.expired", now)
            try:
                stored = self._store.upsert(CODES, updated, if_match=doc["_etag"])
            except PreconditionFailed:
                continue  # used or cancelled meanwhile: the next run sees what it became
            expired += 1
            self._announce(stored)
        owed = self._store.query(CODES, Query(pk=None, filters=(
            Filter("eventsPending", "=", True), Filter("docType", "=", "voucher")), limit=JOB_PAGE))
        announced = sum(1 for doc in owed if not self._announce(doc).get("eventsPending"))
        pending = self._store.query(CODES, Query(pk=None, filters=(
            Filter("refundPending", "=", True), Filter("docType", "=", "voucher")), limit=JOB_PAGE))
        for doc in pending:
            refunded += self._finish_refund(doc["tenantId"], doc)
        return {"expired": expired, "refunded": refunded, "announced": announced}

    # --- internals ------------------------------------------------------------------------

    def _ended(self, doc: dict[str, Any], status: str, refund: bool, actor: str) -> dict[str, Any]:
        updated = {k: v for k, v in doc.items() if not k.startswith("_")}
        updated.update(status=status, endedAt=iso(self._clock.now()), endedBy=actor,
                       refund="due" if refund else "forfeited")
        if refund:
            updated["refundPending"] = True
        return updated

    def _finish_refund(self, tenant_id: str, doc: dict[str, Any]) -> int:
        """Write the refund entry (once: its idempotency key) and clear the flag; 1 if this call cleared it."""
        if not doc.get("refundPending"):
            return 0
        vid, points = doc["voucherId"], doc["points"]
        # The points go back where the purchase took them: to its lots (shared/ledger/lots.py:
        # an ADJUST naming the debit it gives back, so they keep their expiry) and, for a tenant
        # with wallets, to the wallets its split took from.
        purchase = self._ledger.record(tenant_id, doc["customerId"], doc["entryId"]) or {}
        taken = purchase.get("walletSplit") or {}
        given = tuple(sorted((wallet, -part) for wallet, part in taken.items() if part < 0)) or None
        assert given is None or sum(part for _, part in given) == points, "a refund gives back what was taken"

        def plan(head: Head) -> Plan:
            draft = EntryDraft(EntryType.ADJUST, points, reference_entry_id=doc["entryId"], wallet_split=given,
                               attributes={"voucherId": vid, "reason": f"voucher-{doc['status']}",
                                           **({"rewardId": doc["rewardId"]} if doc.get("rewardId") else {})})
            return Plan([draft], {"voucherId": vid, "points": points, "available": head.balance + points})

        self._ledger.append_one(TransactionRequest(tenant_id, doc["customerId"], f"voucher-refund:{vid}",
                                                   fingerprint_of(["voucher-refund", vid, points]), plan))
        current = self._read(tenant_id, doc["pk"].rsplit(":", 1)[1])
        if current is None or not current.get("refundPending"):
            return 0
        cleared = {k: v for k, v in current.items() if not k.startswith("_") and k != "refundPending"}
        cleared["refund"] = "refunded"
        try:
            self._store.upsert(CODES, cleared, if_match=current["_etag"])
        except PreconditionFailed:
            return 0  # another run cleared it (the entry is written once either way)
        # The unit of a reward with stock goes back with the points: once, by whoever cleared the
        # flag (a crash right here keeps the unit taken: stock counts low, never high).
        redemption = self._ledger.record(tenant_id, doc["customerId"], record_id(doc["redemptionId"])) or {}
        if redemption.get("stockTaken") and doc.get("rewardId"):
            self._catalogue.give_back(tenant_id, doc["rewardId"])
        log.info("voucher refunded", extra=fields(tenant=tenant_id, voucher_id=vid, points=points))
        return 1

    def _read(self, tenant_id: str, digest: str) -> dict[str, Any] | None:
        return self._store.read(CODES, voucher_pk(tenant_id, digest), VOUCHER_DOC_ID)

    def _state(self, doc: dict[str, Any], now: datetime) -> str:
        if doc["status"] == ACTIVE and iso(now) >= doc["expiresAt"]:
            return EXPIRED  # the job writes it; it is expired from this instant all the same
        return str(doc["status"])

    def _view(self, doc: dict[str, Any]) -> dict[str, Any]:
        view = {"voucherId": doc["voucherId"], "customerId": doc["customerId"], "redemptionId": doc["redemptionId"],
                "rewardId": doc.get("rewardId"), "status": self._state(doc, self._clock.now()),
                "uses": doc["uses"], "used": doc["used"], "value": doc.get("value"),
                "productSku": doc.get("productSku"), "channel": doc["channel"], "expiresAt": doc["expiresAt"],
                "createdAt": doc["createdAt"], "points": doc["points"], "refund": doc.get("refund")}
        return {k: v for k, v in view.items() if v is not None}

    def _announce(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Publish the events ``doc`` owes (``eventsDue``), then clear them by a CAS; returns
        the document as stored after. A failed publish leaves them for the request's retry or
        the ``vouchers`` job; a lost CAS (the voucher changed meanwhile) too: the next writer
        keeps the list, and publishing again is idempotent (each event's source id)."""
        due = doc.get("eventsDue") or []
        if not due or self.publish is None:
            return doc
        try:
            for event in due:
                self.publish(doc["tenantId"], event["type"], event["data"], event["at"])
        except Exception as error:  # noqa: BLE001 - the voucher changed; its events wait in the document
            log.warning("voucher event not published yet: the job retries",
                        extra=fields(tenant=doc["tenantId"], voucher_id=doc["voucherId"], error=type(error).__name__))
            return doc
        cleared = {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("eventsDue", "eventsPending")}
        try:
            return self._store.upsert(CODES, cleared, if_match=doc["_etag"])
        except PreconditionFailed:
            return self._read(doc["tenantId"], doc["pk"].rsplit(":", 1)[1]) or doc
