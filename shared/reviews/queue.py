"""The manual review queue: held earns and large or fast redemptions waiting for a
tenant-admin's decision.

Built once per process as ``platform.reviews`` (a ``ReviewQueue``). Interface:

``register(kind, approve=callable, reject=callable)``
    One handler pair per kind ("earn": shared/fraud/holds.py; "redemption": the
    redemptions service). Each callable is ``handler(review, who, note) -> dict``:
    ``review`` is the review's public view (``reviewId``, ``tenantId``,
    ``customerId``, ``entryId``, ``details`` ...), ``who`` an ``Actor`` (key id and
    role of the deciding admin), ``note`` the admin's text or None. The handler
    writes the decision **as new ledger entries** (approve: EARN COMMITTED settling
    the hold, or confirm the reservation; reject: VOID settling the hold, or release
    the reservation), idempotently (use ``decision_key(review, action)`` as the
    idempotency key so a retried decision replays) and mutually exclusively (a
    ``settled-<entryId>`` record in the batch, so approve and reject cannot both
    land). It returns what it did (e.g. ``{"entryIds": [...]}``), stored on the
    review as ``result``. A handler that finds the entry already settled raises an
    ``AccrueError`` (a 409 ``Conflict``); nothing is then changed here.

``submit(tenant_id, kind, customer_id, entry_id, reasons, details) -> review``
    Queue an item. Idempotent per ``(kind, customer_id, entry_id)``: the review id
    is derived from them, so submitting twice returns the first review unchanged.
    ``entry_id`` is the held PENDING ledger entry (for an earn of several lots, the
    first; list them all in ``details``). ``reasons``: ``[{"code", "detail", ...}]``
    (plain strings are accepted as codes). ``details``: JSON, no personal data.

``list(tenant_id, status=None, kind=None, customer_id=None, limit=100)``
    Oldest first. ``status``: ``open`` | ``approved`` | ``rejected`` | ``withdrawn``.

``get(tenant_id, review_id)`` / ``inspect(tenant_id, review_id)``
    ``inspect`` adds why it was held (``reasons``, already on the review) and the
    customer's state: the ledger head and the newest ``HISTORY`` entries.

``approve(tenant_id, review_id, who, note=None)`` / ``reject(...)``
    Run the kind's handler, then mark the review decided with ``decidedBy``
    (key id and role), ``decidedAt``, ``note`` and ``result`` under the ETag it was
    read with, and append an audit record (``review.approved`` /
    ``review.rejected``). A decided review cannot be decided again:
    ``ReviewDecided`` (409), also for the loser of two admins racing.

``withdraw(tenant_id, kind, customer_id, entry_id, reason)``
    The item ended outside the queue (a merchant cancelled a reservation under
    review): the review is closed as ``withdrawn`` by the system, audited.

Guarantees and why in this order: the ledger is written first, the review second.
If the process stops in between, the review still reads ``open`` and the same
decision repeated replays the handler's idempotent append and then marks it; the
other decision is refused by the ledger (the settlement record exists). The review
document is a convenience index over the ledger, which stays the truth: nothing in
the ledger is ever updated in place. Tenants are isolated by partition: a review is
read only inside the caller's tenant partition, so another tenant's id is a 404.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Protocol

from shared.audit.log import Actor, AuditLog, HasActor
from shared.clock import Clock, iso
from shared.errors import ConfigurationError, DocumentExists, NotFound, PreconditionFailed, ReviewDecided
from shared.ledger.service import Ledger
from shared.store.contention import attempts
from shared.store.layout import REVIEWS
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter, Query

OPEN, APPROVED, REJECTED, WITHDRAWN = "open", "approved", "rejected", "withdrawn"
STATUSES = (OPEN, APPROVED, REJECTED, WITHDRAWN)
HISTORY = 20
MAX_LIST = 500
ERASED_TEXT = "[erased]"
MAX_NOTE = 1000

Decision = Literal["approve", "reject"]


class ReviewHandler(Protocol):
    def __call__(self, review: dict[str, Any], who: Actor, note: str | None) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Handlers:
    approve: ReviewHandler
    reject: ReviewHandler


def review_id(kind: str, customer_id: str, entry_id: str) -> str:
    return "rv-" + hashlib.sha256(f"{kind}\x00{customer_id}\x00{entry_id}".encode()).hexdigest()[:24]


def decision_key(review: dict[str, Any], action: str) -> str:
    """The idempotency key a handler should use for its ledger append."""
    return f"review:{review['reviewId']}:{action}"


def _reasons(reasons: Iterable[dict[str, Any] | str]) -> list[dict[str, Any]]:
    out = []
    for reason in reasons:
        out.append({"code": reason, "detail": reason} if isinstance(reason, str) else dict(reason))
    return out


class ReviewQueue:
    def __init__(self, store: DocumentStore, ledger: Ledger, clock: Clock, audit: AuditLog) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._audit = audit
        self._handlers: dict[str, Handlers] = {}

    # --- wiring -----------------------------------------------------------------------

    def register(self, kind: str, *, approve: ReviewHandler, reject: ReviewHandler) -> None:
        self._handlers[kind] = Handlers(approve, reject)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    # --- submitting ---------------------------------------------------------------------

    def submit(self, tenant_id: str, kind: str, customer_id: str, entry_id: str,
               reasons: Iterable[dict[str, Any] | str], details: dict[str, Any] | None = None) -> dict[str, Any]:
        rid = review_id(kind, customer_id, entry_id)
        doc = {
            "id": rid, "pk": tenant_id, "docType": "review", "reviewId": rid, "tenantId": tenant_id,
            "kind": kind, "customerId": customer_id, "entryId": entry_id, "reasons": _reasons(reasons),
            "details": details or {}, "status": OPEN, "createdAt": iso(self._clock.now()),
        }
        try:
            return _public(self._store.create(REVIEWS, doc))
        except DocumentExists:
            # Submitted before (a redelivered change, a retried redemption): same review.
            return self.get(tenant_id, rid)

    # --- reading ------------------------------------------------------------------------

    def get(self, tenant_id: str, review_id_: str) -> dict[str, Any]:
        return _public(self._read(tenant_id, review_id_))

    def erase_text(self, tenant_id: str, customer_id: str, kinds: Iterable[str], fields: Iterable[str]) -> int:
        """Erasure: the free-text ``fields`` of the customer's items of ``kinds`` (in their
        ``details``) replaced by ``ERASED_TEXT``, each under its ETag; how many changed. The
        items stay (their decision, reasons and ids are the record of what was decided)."""
        fields = tuple(fields)
        changed = 0
        for kind in kinds:
            for item in self.list(tenant_id, kind=kind, customer_id=customer_id, limit=MAX_LIST):
                for _ in attempts():
                    doc = self._store.read(REVIEWS, tenant_id, item["reviewId"])
                    details = dict((doc or {}).get("details") or {})
                    if doc is None or not any(details.get(f) not in (None, ERASED_TEXT) for f in fields):
                        break
                    details.update({f: ERASED_TEXT for f in fields if details.get(f) is not None})
                    try:
                        self._store.upsert(REVIEWS, dict(doc, details=details), if_match=doc["_etag"])
                        changed += 1
                        break
                    except PreconditionFailed:
                        continue  # decided or changed just now: look again
        return changed

    def list(self, tenant_id: str, *, status: str | None = None, kind: str | None = None,
             customer_id: str | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
        """Reviews oldest first: at most ``min(limit, MAX_LIST)``, or with ``limit=None`` every
        one (keyset pages, no cap: what the API pages through)."""
        filters = [Filter("docType", "=", "review")]
        if status:
            filters.append(Filter("status", "=", status))
        if kind:
            filters.append(Filter("kind", "=", kind))
        if customer_id:
            filters.append(Filter("customerId", "=", customer_id))
        if limit is None:
            docs = sorted(read_all(self._store, REVIEWS, tenant_id, tuple(filters)),
                          key=lambda d: (d["createdAt"], d["reviewId"]))
        else:
            docs = self._store.query(REVIEWS, Query(pk=tenant_id, filters=tuple(filters), order_by="createdAt",
                                                    limit=max(1, min(limit, MAX_LIST))))
        return [_public(d) for d in docs]

    def inspect(self, tenant_id: str, review_id_: str, history: int = HISTORY) -> dict[str, Any]:
        review = self.get(tenant_id, review_id_)
        customer_id = review["customerId"]
        head = self._ledger.head(tenant_id, customer_id)
        entries = self._ledger.entries(tenant_id, customer_id, limit=history)
        return {
            **review,
            "customer": {
                "customerId": customer_id,
                "available": head.balance, "pending": head.pending, "reserved": head.reserved,
                "lifetimeEarned": head.lifetime_earned, "ordersCredited": head.orders_credited,
                "recentEntries": [_entry_view(e) for e in entries],
            },
        }

    # --- deciding -----------------------------------------------------------------------

    def approve(self, tenant_id: str, review_id_: str, who: HasActor | Actor | None,
                note: str | None = None) -> dict[str, Any]:
        return self.decide(tenant_id, review_id_, "approve", who, note)

    def reject(self, tenant_id: str, review_id_: str, who: HasActor | Actor | None,
               note: str | None = None) -> dict[str, Any]:
        return self.decide(tenant_id, review_id_, "reject", who, note)

    def decide(self, tenant_id: str, review_id_: str, decision: Decision, who: HasActor | Actor | None,
               note: str | None = None) -> dict[str, Any]:
        doc = self._read(tenant_id, review_id_)
        _still_open(doc)
        handlers = self._handlers.get(doc["kind"])
        if handlers is None:
            raise ConfigurationError(f"no review handler is registered for kind {doc['kind']!r}")
        actor = Actor.of(who)
        note = (note or None) and note[:MAX_NOTE]
        handler = handlers.approve if decision == "approve" else handlers.reject
        # The ledger first (idempotent, mutually exclusive), then the review: see the module doc.
        result = handler(_public(doc), actor, note) or {}
        status = APPROVED if decision == "approve" else REJECTED
        decided = dict(doc, status=status, decidedAt=iso(self._clock.now()),
                       decidedBy={"keyId": actor.key_id, "role": actor.role}, note=note, result=result)
        saved = self._mark(doc, decided)
        self._audit.record(tenant_id, f"review.{status}", actor, target=f"review:{review_id_}",
                           before={"status": OPEN},
                           after={"status": status, "kind": doc["kind"], "customerId": doc["customerId"],
                                  "entryId": doc["entryId"], "result": result},
                           reason=note)
        return _public(saved)

    def withdraw(self, tenant_id: str, kind: str, customer_id: str, entry_id: str,
                 reason: str | None = None) -> dict[str, Any] | None:
        """Close an open review whose item ended elsewhere; None if there is no such review."""
        rid = review_id(kind, customer_id, entry_id)
        doc = self._store.read(REVIEWS, tenant_id, rid)
        if doc is None or doc["status"] != OPEN:
            return None if doc is None else _public(doc)
        withdrawn = dict(doc, status=WITHDRAWN, decidedAt=iso(self._clock.now()),
                         decidedBy={"keyId": "system", "role": "system"}, note=reason)
        try:
            saved = self._mark(doc, withdrawn)
        except ReviewDecided:
            return self.get(tenant_id, rid)
        self._audit.record(tenant_id, "review.withdrawn", None, target=f"review:{rid}",
                           before={"status": OPEN}, after={"status": WITHDRAWN, "kind": kind,
                                                           "customerId": customer_id, "entryId": entry_id},
                           reason=reason)
        return _public(saved)

    # --- internals ----------------------------------------------------------------------

    def _read(self, tenant_id: str, rid: str) -> dict[str, Any]:
        doc = self._store.read(REVIEWS, tenant_id, rid)
        if doc is None or doc.get("docType") != "review":
            raise NotFound(f"review {rid!r} does not exist")
        return doc

    def _mark(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._store.upsert(REVIEWS, {k: v for k, v in after.items() if not k.startswith("_")},
                                      if_match=before["_etag"])
        except PreconditionFailed:
            # Another admin decided between our read and our write.
            _still_open(self._read(before["tenantId"], before["id"]))
            raise ReviewDecided(f"review {before['id']} changed while it was being decided; read it again",
                                reviewId=before["id"]) from None


def _still_open(doc: dict[str, Any]) -> None:
    if doc["status"] != OPEN:
        decided_by = (doc.get("decidedBy") or {}).get("keyId")
        raise ReviewDecided(f"review {doc['id']} was already {doc['status']} by {decided_by}; a decision is final",
                            reviewId=doc["id"], status=doc["status"], decidedBy=decided_by)


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("id", "pk", "docType")}


def _entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "seq", "entryType", "status", "signedAmount", "runningBalance", "runningPending",
            "runningReserved", "referenceOrderId", "settlesEntryId", "createdAt")
    return {k: entry.get(k) for k in keys if entry.get(k) is not None}

