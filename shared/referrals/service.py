"""Referrals: a customer's referral code, the referee it brings, and both parties'
rewards when the referee's first qualifying order is credited (docs/referrals.md).

Documents (``codes`` container, nothing personal):

* ``tenantId:r:<CODE>`` / ``referralcode``: the code's owner (the referrer), and
  keyed digests of the referrer's canonical email and phone (self-referral checks).
* ``tenantId:referee:<customerId>`` / ``referral``: the referral of one referee;
  its ``state`` moves by ETag compare-and-swap only: ``pending`` -> ``qualified``
  (or ``capped``, ``held``) -> ``reversed``; ``held`` -> ``qualified`` | ``capped`` |
  ``rejected`` (a review's approval takes a place under the cap like a qualification;
  the order refunded in full while the referral is held closes it, nothing paid).
* ``tenantId:referrer:<customerId>`` / ``cap:<period start>``: referrals the
  referrer got rewarded in that period (the cap), by CAS.

Exactly once: qualification is driven by the ledger's change feed (at least once,
any order). The state CAS decides once which order qualified; the two credits are
ledger appends keyed ``referral:<referralId>:referrer`` and ``...:referee``, each
in its own customer's partition, so a redelivery (or a crash between the CAS and
the credits: the next delivery of that order finds ``qualified`` and re-appends,
which the keys make no-ops) writes each exactly once. Reversal is the same with
``referral-reversal:`` keys, when the qualifying order's refunds reach its amount
within the programme's return window.

Abuse: no self-referral (the same customer, the same canonical email, the same
phone, by keyed digest), a cap per referrer per period, and a velocity screen
(more than ``velocityPerDay`` qualified referrals of one referrer in 24 hours):
the referral is ``held`` and sent to the manual review queue (kind ``referral``),
where approve credits it and reject closes it. An order held by the fraud controls
qualifies when its review credits it (the ``orderDecision`` record).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from shared.clock import Clock, iso, parse_iso
from shared.errors import Conflict, DocumentExists, FieldProblem, NotFound, PreconditionFailed, ValidationFailed
from shared.expiry.policy import credit_expiry
from shared.fraud.holds import ORDER_DECISION_DOC
from shared.ledger.entries import EntryDraft, EntryType, Head, order_record_id
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.store.contention import attempts
from shared.store.layout import CODES, CUSTOMERS, TENANTS, customer_pk
from shared.store.port import DocumentStore, Filter, Query
from shared.store.replace import Change, replace
from shared.telemetry.logs import fields
from shared.vouchers import codes

log = logging.getLogger("accrue.referrals")

PROGRAMME_ID = "referral:programme"
REVIEW_KIND = "referral"
CAS_ATTEMPTS = 100
# A customer's code is the first of their candidates (keyed digests of the id) that no other
# customer holds; sixteen taken in a row would take a programme of ~10^11 codes.
CODE_CANDIDATES = 16
REFERRAL_SYMBOLS = 8  # 40 bits: a referral code is shared openly, not a secret; the check symbol catches typos
Digest = Callable[[str, str, str], bytes]
PENDING, QUALIFIED, CAPPED, HELD, REJECTED, REVERSED = "pending", "qualified", "capped", "held", "rejected", "reversed"


class ReferralProgramme(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    referrer_points: StrictInt = Field(alias="referrerPoints", ge=0, le=10**9)
    referee_points: StrictInt = Field(alias="refereePoints", ge=0, le=10**9)
    minimum_amount: str = Field(default="0.00", alias="minimumAmount", pattern=r"^[0-9]{1,9}\.[0-9]{2}$",
                                max_length=12, description="a qualifying order's amount is at least this")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", max_length=3,
                                 description="a qualifying order is in this currency (null: any)")
    cap_per_period: StrictInt | None = Field(default=None, alias="capPerPeriod", ge=1, le=1000)
    period_days: StrictInt = Field(default=30, alias="periodDays", ge=1, le=366)
    velocity_per_day: StrictInt | None = Field(default=None, alias="velocityPerDay", ge=1, le=10**6,
                                               description="more qualified referrals of one referrer in 24 h: held")
    return_window_days: StrictInt = Field(default=30, alias="returnWindowDays", ge=0, le=366)
    condition: str | None = Field(default=None, min_length=1, max_length=2000,
                                  description="a condition in the rule language (grammar/README.md) the order must "
                                              "also meet, e.g. order.channel = \"web\" and order.amount >= 20")

    @model_validator(mode="after")
    def _compiles(self) -> "ReferralProgramme":
        if self.condition is not None:
            compiled_condition(self.condition)  # a syntax, type or budget error: 422 naming it
        return self


def condition_source(condition: str) -> str:
    """The condition as a one-rule rule set: it holds for an order iff that rule earns."""
    return f'rule "referral-qualifies" when {condition} then earn 1 point'


@functools.lru_cache(maxsize=256)
def compiled_condition(condition: str) -> Any:
    from shared.rules.ruleset import CompiledRuleSet  # noqa: PLC0415 - the rules engine only when a condition is set

    return CompiledRuleSet.from_source(condition_source(condition), "referral-condition")


_PROGRAMME_KEYS = tuple(f.alias or n for n, f in ReferralProgramme.model_fields.items())


def _canonical_email(email: str) -> str:
    local, _, domain = email.strip().lower().partition("@")
    local = local.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def _canonical_phone(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())[-9:]


def referral_id_of(tenant_id: str, referee_id: str) -> str:
    import hashlib
    return "rf-" + hashlib.sha256(f"{tenant_id}\x00{referee_id}".encode()).hexdigest()[:24]


class Referrals:
    def __init__(self, store: DocumentStore, ledger: Ledger, clock: Clock, digest: Digest,
                 open_personal: Callable[[dict[str, Any]], dict[str, Any]], reviews: Any = None,
                 tenants: Any = None) -> None:
        """``tenants``: the tenant directory whose expiry policy stamps the rewards (None: they
        never expire; tests of the mechanics alone)."""
        self._store = store
        self._tenants = tenants
        self._ledger = ledger
        self._clock = clock
        self._digest = digest
        self._open = open_personal
        self._reviews = reviews
        self.publish: Callable[[str, str, dict[str, Any], str], None] | None = None
        # (tenant id, customer id) -> (TenantSettings, CustomerContext) for the rule condition; set by the platform.
        self.context: Callable[[str, str], tuple[Any, Any]] | None = None
        if reviews is not None:
            reviews.register(REVIEW_KIND, approve=self._approve, reject=self._reject)

    # --- programme --------------------------------------------------------------------------

    def programme(self, tenant_id: str) -> ReferralProgramme | None:
        doc = self._store.read(TENANTS, tenant_id, PROGRAMME_ID)
        if doc is None:
            return None
        return ReferralProgramme.model_validate({k: doc[k] for k in _PROGRAMME_KEYS if k in doc})

    def save_programme(self, tenant_id: str, programme: ReferralProgramme) -> Change:
        """Replace the programme: a repeat changes nothing; ``before`` None when there was none."""
        body = programme.model_dump(mode="json", by_alias=True)
        done = replace(self._store, TENANTS, tenant_id, PROGRAMME_ID,
                       lambda _current: {"id": PROGRAMME_ID, "pk": tenant_id, "docType": "referralProgramme",
                                         "tenantId": tenant_id, **body, "updatedAt": iso(self._clock.now())},
                       content=lambda d: {k: d.get(k) for k in body})
        before = {k: done.before.get(k) for k in body} if done.before is not None else None
        return Change(before, body, done.changed)

    # --- codes --------------------------------------------------------------------------------

    def _code(self, tenant_id: str, customer_id: str, candidate: int = 0) -> str:
        """The customer's ``candidate``-th code: the first one is the one they get unless
        another customer holds it (40 bits: two customers of a large programme can share a
        digest; about one pair in a million customers with codes)."""
        raw = self._digest(tenant_id, "referral-code", customer_id if not candidate else f"{customer_id}\n{candidate}")
        number = int.from_bytes(raw[:5], "big")
        data = "".join(codes.ALPHABET[(number >> (5 * (REFERRAL_SYMBOLS - 1 - i))) & 31]
                       for i in range(REFERRAL_SYMBOLS))
        return data + codes.check_symbol(data)

    def _code_doc(self, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
        """The customer's code document, if they have one: candidates are taken in order
        and never given back, so the first candidate nobody holds ends the search."""
        for candidate in range(CODE_CANDIDATES):
            doc = self._store.read(CODES, f"{tenant_id}:r:{self._code(tenant_id, customer_id, candidate)}",
                                   "referralcode")
            if doc is None or doc["customerId"] == customer_id:
                return doc
        return None

    def forget_signals(self, tenant_id: str, customer_id: str) -> None:
        """Erasure: drop the keyed digests of the customer's email and phone from their code
        (the code keeps working; only the self-referral check loses these signals)."""
        for _ in attempts(CAS_ATTEMPTS):
            doc = self._code_doc(tenant_id, customer_id)
            if doc is None or not ({"emailDigest", "phoneDigest"} & doc.keys()):
                return
            kept = {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("emailDigest", "phoneDigest")}
            try:
                self._store.upsert(CODES, kept, if_match=doc["_etag"])
                return
            except PreconditionFailed:
                continue

    def code_for(self, tenant_id: str, customer: dict[str, Any]) -> str:
        """The customer's referral code (the same on every call): 8 symbols and a check symbol,
        never one another customer holds."""
        customer_id = customer["customerId"]
        personal = self._open(customer)
        for candidate in range(CODE_CANDIDATES):
            code = self._code(tenant_id, customer_id, candidate)
            doc = {"id": "referralcode", "pk": f"{tenant_id}:r:{code}", "docType": "referralCode",
                   "tenantId": tenant_id, "customerId": customer_id, "createdAt": iso(self._clock.now()),
                   **self._signals(tenant_id, personal)}
            try:
                self._store.create(CODES, doc)
            except DocumentExists:
                holder = self._store.read(CODES, doc["pk"], "referralcode")
                assert holder is not None, "referral codes are never deleted"
                if holder["customerId"] != customer_id:
                    continue  # another customer's: this customer's next candidate
                # Made before (or by a concurrent call).
            # The digests came from the profile as read before the create: an erasure that
            # ran meanwhile may have looked for this document before it existed.
            now = self._store.read(CUSTOMERS, customer_pk(tenant_id, customer_id), customer_id)
            if now is None or now.get("erasedAt"):
                self.forget_signals(tenant_id, customer_id)
            return code
        raise Conflict(f"no free referral code for customer {customer_id!r} among {CODE_CANDIDATES} candidates")

    def _signals(self, tenant_id: str, personal: dict[str, Any]) -> dict[str, str]:
        signals = {}
        if personal.get("email"):
            signals["emailDigest"] = self._digest(tenant_id, "referral-email",
                                                  _canonical_email(personal["email"])).hex()
        if personal.get("phone"):
            signals["phoneDigest"] = self._digest(tenant_id, "referral-phone",
                                                  _canonical_phone(personal["phone"])).hex()
        return signals

    def _owner(self, tenant_id: str, typed: str) -> dict[str, Any]:
        text = typed.upper().replace("-", "").replace(" ", "")
        if len(text) != REFERRAL_SYMBOLS + 1 or any(c not in codes.ALPHABET for c in text[:-1]) \
                or codes.check_symbol(text[:-1]) != text[-1]:
            raise ValidationFailed("not a referral code (a symbol mistyped?)",
                                   [FieldProblem("referralCode", "8 symbols and a check symbol")])
        doc = self._store.read(CODES, f"{tenant_id}:r:{text}", "referralcode")
        if doc is None:
            raise ValidationFailed("no customer has this referral code",
                                   [FieldProblem("referralCode", "unknown referral code")])
        return doc

    # --- enrolment (at registration) -------------------------------------------------------

    def check_enrolment(self, tenant_id: str, referee_id: str, code: str, personal: dict[str, Any]) -> dict[str, Any]:
        """Refuse a self-referral before anything is written; returns the code's document."""
        owner = self._owner(tenant_id, code)
        signals = self._signals(tenant_id, personal)
        same = owner["customerId"] == referee_id or any(
            owner.get(k) is not None and owner.get(k) == v for k, v in signals.items())
        if same:
            raise ValidationFailed("a customer cannot refer themselves",
                                   [FieldProblem("referralCode", "the code's owner matches this customer")])
        if self.programme(tenant_id) is None:
            raise ValidationFailed("the tenant runs no referral programme",
                                   [FieldProblem("referralCode", "no referral programme is configured")])
        return owner

    def enrol(self, tenant_id: str, referee_id: str, owner: dict[str, Any]) -> dict[str, Any]:
        rid = referral_id_of(tenant_id, referee_id)
        doc = {"id": "referral", "pk": f"{tenant_id}:referee:{referee_id}", "docType": "referral",
               "tenantId": tenant_id, "referralId": rid, "referrerId": owner["customerId"], "customerId": referee_id,
               "status": PENDING, "createdAt": iso(self._clock.now())}
        try:
            return self._store.create(CODES, doc)
        except DocumentExists:
            existing = self._referral(tenant_id, referee_id)
            assert existing is not None
            return existing

    def get(self, tenant_id: str, referee_id: str) -> dict[str, Any]:
        doc = self._referral(tenant_id, referee_id)
        if doc is None:
            raise NotFound(f"customer {referee_id!r} was not referred")
        return _view(doc)

    # --- the change feed: qualification and reversal ----------------------------------------

    def project(self, docs: list[dict[str, Any]]) -> int:
        """Projector subscriber: credited order records qualify; refunds may reverse."""
        done = 0
        for doc in docs:
            if doc.get("docType") == "order" and doc.get("status") == "credited":
                done += self._qualify(doc)
            elif doc.get("docType") == ORDER_DECISION_DOC and doc.get("status") == "credited":
                # A fraud-held order credited in review: its own record stays ``held``.
                record = self._ledger.record(doc["tenantId"], doc["customerId"], order_record_id(doc["orderId"]))
                if record is not None:
                    done += self._qualify({**record, "status": "credited"})
            elif doc.get("docType") == "entry" and doc.get("entryType") == "REVERSAL" and doc.get("referenceOrderId"):
                done += self._maybe_reverse(doc)
        return done

    def _qualify(self, record: dict[str, Any]) -> int:
        tenant_id, referee_id = record["tenantId"], record["customerId"]
        referral = self._referral(tenant_id, referee_id)
        if referral is None:
            return 0
        if referral["status"] == QUALIFIED and referral.get("orderId") == record["orderId"]:
            self._credit(referral)  # a redelivery, or a crash after the CAS: the keyed appends are no-ops
            return 0
        if referral["status"] == HELD and referral.get("orderId") == record["orderId"]:
            # A redelivery, or a crash between the hold and its review: the review is filed
            # (idempotent), or the referral would wait for a decision nobody is asked for.
            self._file_review(tenant_id, referral, self.programme(tenant_id))
            return 0
        if referral["status"] != PENDING:
            return 0
        programme = self.programme(tenant_id)
        order = record.get("order") or {}
        if programme is None or not self._qualifies(programme, order) or \
                not self._condition_holds(programme, tenant_id, referee_id, order):
            return 0
        accepted = parse_iso(record.get("acceptedAt") or iso(self._clock.now()))
        state = QUALIFIED
        if programme.velocity_per_day is not None and \
                self._recent(tenant_id, referral["referrerId"], accepted) >= programme.velocity_per_day:
            state = HELD
        elif programme.cap_per_period is not None and not self._take_cap(tenant_id, referral["referrerId"],
                                                                         referral["referralId"], programme, accepted):
            state = CAPPED
        updated = self._move(referral, state, orderId=record["orderId"], qualifiedAt=iso(accepted),
                             orderAmount=str(order.get("amount")), orderTimestamp=order.get("timestamp"),
                             referrerPoints=programme.referrer_points, refereePoints=programme.referee_points)
        if updated is None:
            return 0
        if state == HELD:
            self._file_review(tenant_id, referral, programme)
        if state == QUALIFIED:
            self._credit(updated)
        return 1

    def _file_review(self, tenant_id: str, referral: dict[str, Any], programme: ReferralProgramme | None) -> None:
        if self._reviews is None:
            return
        limit = programme.velocity_per_day if programme is not None else None
        detail = (f"the referrer had {limit} or more qualified referrals in 24 hours" if limit is not None
                  else "the referrer had too many qualified referrals in 24 hours")
        self._reviews.submit(tenant_id, REVIEW_KIND, referral["customerId"], referral["referralId"], [
            {"code": "referral-velocity", "detail": detail}],
            {"referralId": referral["referralId"], "referrerId": referral["referrerId"]})

    @staticmethod
    def _qualifies(programme: ReferralProgramme, order: dict[str, Any]) -> bool:
        try:
            amount = Decimal(str(order.get("amount")))
        except Exception:  # noqa: BLE001 - an order without an amount does not qualify
            return False
        if programme.currency is not None and order.get("currency") != programme.currency:
            return False
        return amount >= Decimal(programme.minimum_amount)

    def _condition_holds(self, programme: ReferralProgramme, tenant_id: str, referee_id: str,
                         order: dict[str, Any]) -> bool:
        if programme.condition is None:
            return True
        if self.context is None:
            return False  # no way to evaluate the condition: nothing qualifies (never the unsafe direction)
        from shared.domain.orders import Order  # noqa: PLC0415

        tenant, customer = self.context(tenant_id, referee_id)
        result = compiled_condition(programme.condition).evaluate(tenant, Order.model_validate(order), customer)
        return result.points > 0

    def _recent(self, tenant_id: str, referrer_id: str, at: datetime) -> int:
        """The referrer's referrals qualified in the day before ``at`` (the velocity screen).
        The query names the referrer and the day: it read every qualified referral of the
        tenant, at most 10,000 of them in no order, so past that the screen counted a sample
        and let a fast referrer through (found by an outside review)."""
        since = iso(at - timedelta(days=1))
        docs = self._store.query(CODES, Query(pk=None, filters=(
            Filter("tenantId", "=", tenant_id), Filter("docType", "=", "referral"),
            Filter("referrerId", "=", referrer_id), Filter("qualifiedAt", ">=", since),
            Filter("status", "in", [QUALIFIED, REVERSED])), limit=10_000))
        return len(docs)

    def _take_cap(self, tenant_id: str, referrer_id: str, referral_id: str, programme: ReferralProgramme,
                  at: datetime) -> bool:
        """A place under the referrer's cap for this period, held by ``referral_id``: two
        deliveries of one referral's order racing here take one place, not two."""
        period = int(at.timestamp() // (programme.period_days * 86400))
        pk, doc_id = f"{tenant_id}:referrer:{referrer_id}", f"cap:{programme.period_days}:{period}"
        assert programme.cap_per_period is not None
        for _ in attempts(CAS_ATTEMPTS):
            doc = self._store.read(CODES, pk, doc_id)
            held = list(doc["referrals"]) if doc else []
            if referral_id in held:
                return True
            if len(held) >= programme.cap_per_period:
                return False
            fresh = {"id": doc_id, "pk": pk, "docType": "referralCap", "tenantId": tenant_id,
                     "referrals": held + [referral_id]}
            try:
                if doc is None:
                    self._store.create(CODES, fresh)
                else:
                    self._store.upsert(CODES, fresh, if_match=doc["_etag"])
                return True
            except (PreconditionFailed, DocumentExists):
                continue  # another delivery took a place first: count again
        raise Conflict("the referrer's cap is in heavy contention: the change feed retries")

    def _credit(self, referral: dict[str, Any]) -> None:
        tenant_id, rid = referral["tenantId"], referral["referralId"]
        for role, customer_id, points in (("referrer", referral["referrerId"], referral["referrerPoints"]),
                                          ("referee", referral["customerId"], referral["refereePoints"])):
            self._append(tenant_id, customer_id, f"referral:{rid}:{role}", points, rid, role, "referral-qualified")
        if self.publish is not None:
            self.publish(tenant_id, "referral.qualified", {
                "referralId": rid, "referrerId": referral["referrerId"], "refereeId": referral["customerId"],
                "orderId": referral["orderId"], "referrerPoints": referral["referrerPoints"],
                "refereePoints": referral["refereePoints"]}, f"referral.qualified:{rid}")
        log.info("referral qualified", extra=fields(tenant=tenant_id, referral_id=rid))

    def _append(self, tenant_id: str, customer_id: str, key: str, points: int, rid: str, role: str,
                reason: str) -> None:
        if points == 0:
            return
        # A reward is new points, stamped by the tenant's expiry policy like any credit.
        expiry = credit_expiry(self._tenants.get(tenant_id), self._clock.now()) \
            if points > 0 and self._tenants is not None else {}

        def plan(head: Head) -> Plan:
            draft = EntryDraft(EntryType.ADJUST, points, attributes={"referralId": rid, "role": role,
                                                                     "reason": reason, **expiry})
            return Plan([draft], {"referralId": rid, "points": points, "available": head.balance + points})

        self._ledger.append_one(TransactionRequest(tenant_id, customer_id, key, fingerprint_of([key, points]), plan))

    def _maybe_reverse(self, entry: dict[str, Any]) -> int:
        tenant_id, referee_id = entry["tenantId"], entry["customerId"]
        for _ in attempts(CAS_ATTEMPTS):
            referral = self._referral(tenant_id, referee_id)
            if referral is None or referral.get("orderId") != entry["referenceOrderId"]:
                return 0
            if referral["status"] == REVERSED:
                self._debit(referral)  # redelivery: the keyed appends are no-ops
                return 0
            if referral["status"] not in (QUALIFIED, HELD) or not self._refunded_in_window(referral, entry):
                return 0  # partly refunded, or after the return window: the referral stands
            if referral["status"] == HELD:
                # Nothing was paid yet: closed, and its review has nothing left to decide.
                if self._move(referral, REJECTED, rejectedFor="order-refunded",
                              reversedAt=iso(self._clock.now())) is None:
                    continue  # a review decided it meanwhile: decide again on what it is now
                if self._reviews is not None:
                    self._reviews.withdraw(tenant_id, REVIEW_KIND, referee_id, referral["referralId"],
                                           "the qualifying order was refunded in full")
                return 1
            updated = self._move(referral, REVERSED, reversedAt=iso(self._clock.now()))
            if updated is None:
                continue
            self._debit(updated)
            return 1
        raise Conflict("the referral kept changing under its reversal: the change feed retries")

    def _refunded_in_window(self, referral: dict[str, Any], entry: dict[str, Any]) -> bool:
        """Whether the qualifying order's refunds reached its amount, ``entry`` (a REVERSAL of
        it) within the programme's return window."""
        programme = self.programme(referral["tenantId"])
        window = programme.return_window_days if programme else 0
        # From when Accrue accepted the order (``qualifiedAt``), not the order's own timestamp: a
        # point of sale whose clock is behind closed the window before the referral qualified
        # (an outside review), one ahead kept it open by its skew. Pending points count the same way.
        accepted = parse_iso(referral["qualifiedAt"])
        if parse_iso(entry["createdAt"]) > accepted + timedelta(days=window):
            return False
        reversals = [e for e in self._ledger.entries_for_order(referral["tenantId"], referral["customerId"],
                                                               referral["orderId"])
                     if e["entryType"] == "REVERSAL"]
        refunded = sum((Decimal(e["attributes"]["refundAmount"]) for e in reversals
                        if (e.get("attributes") or {}).get("refundAmount")), Decimal(0))
        return refunded >= Decimal(referral["orderAmount"])

    def _debit(self, referral: dict[str, Any]) -> None:
        tenant_id, rid = referral["tenantId"], referral["referralId"]
        for role, customer_id, points in (("referrer", referral["referrerId"], referral["referrerPoints"]),
                                          ("referee", referral["customerId"], referral["refereePoints"])):
            self._append(tenant_id, customer_id, f"referral-reversal:{rid}:{role}", -points, rid, role,
                         "referral-reversed")
        if self.publish is not None:
            self.publish(tenant_id, "referral.reversed", {
                "referralId": rid, "referrerId": referral["referrerId"], "refereeId": referral["customerId"],
                "orderId": referral["orderId"]}, f"referral.reversed:{rid}")

    # --- review decisions ---------------------------------------------------------------------

    def _approve(self, review: dict[str, Any], who: Any, note: str | None) -> dict[str, Any]:
        referral = self._referral(review["tenantId"], review["customerId"])
        assert referral is not None
        programme = self.programme(review["tenantId"])
        state = QUALIFIED
        if referral["status"] == HELD and programme is not None and programme.cap_per_period is not None and \
                not self._take_cap(review["tenantId"], referral["referrerId"], referral["referralId"], programme,
                                   parse_iso(referral["qualifiedAt"])):
            state = CAPPED  # approved, but the referrer's places this period are taken: as a qualification
        updated = self._move(referral, state, expected=HELD) or self._referral(review["tenantId"],
                                                                              review["customerId"])
        assert updated is not None
        if updated["status"] == QUALIFIED:
            self._credit(updated)
        return _view(updated)

    def _reject(self, review: dict[str, Any], who: Any, note: str | None) -> dict[str, Any]:
        referral = self._referral(review["tenantId"], review["customerId"])
        assert referral is not None
        updated = self._move(referral, REJECTED, expected=HELD) or referral
        return _view(updated)

    # --- internals ----------------------------------------------------------------------------

    def _referral(self, tenant_id: str, referee_id: str) -> dict[str, Any] | None:
        return self._store.read(CODES, f"{tenant_id}:referee:{referee_id}", "referral")

    def _move(self, referral: dict[str, Any], state: str, expected: str | None = None,
              **changes: Any) -> dict[str, Any] | None:
        """CAS the referral from its read state to ``state``; None if another writer moved it first."""
        if expected is not None and referral["status"] != expected:
            return None
        updated = {k: v for k, v in referral.items() if not k.startswith("_")}
        updated.update(status=state, **{k: v for k, v in changes.items() if v is not None})
        try:
            return self._store.upsert(CODES, updated, if_match=referral["_etag"])
        except PreconditionFailed:
            return None  # the winner of the race (same order redelivered) does the rest


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    keys = ("referralId", "referrerId", "customerId", "status", "orderId", "qualifiedAt", "referrerPoints",
            "refereePoints", "createdAt", "reversedAt")
    return {k: doc[k] for k in keys if doc.get(k) is not None}

