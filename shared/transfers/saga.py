"""Transfers of available points between two customers of a tenant: a saga over two partitions.

A ledger transaction is atomic inside one customer partition only (a Cosmos DB
transactional batch), and a transfer touches two. So a transfer is four steps,
each one atomic and idempotent on its own, driven forward by whoever gets to it
first (the request, or the ``transfers`` recovery job after a crash):

1. **intent**: the durable transfer record, ``system`` container, partition
   ``transfers:<tenantId>``, id = the transfer id. Created before anything
   moves (``DocumentExists``: the same transfer, driven again; another body:
   409). While it exists the transfer is *open*; ``dueAt`` says when recovery
   may take it over (``RECOVERY_GRACE`` after its last step). A driver that did
   not record it (a resend of the key, the recovery job) *adopts* it first:
   ``dueAt`` moved on under the intent's ETag. A driver refused at the debit
   closes the intent only under the ETag it saw, so never one another driver
   adopted (and may have debited) meanwhile.
2. **debit** (sender partition, idempotency key ``transfer-out:<id>``): one
   ``TRANSFER_OUT`` entry of ``-points``, the ``transfer-<id>`` record, the
   marker. Its plan refuses (nothing written) below ``minPoints``, above
   ``maxPoints``, over the day's ``perDay``, over the fraud policy's
   ``transfersPerHour``, or when the *available* balance is too low. It also
   decides which lots go: the sender's open lots in FIFO order (first expiring
   first, the order the lot replay of shared/ledger/lots.py takes them), grouped
   by expiry date into ``parts``, kept in the marker's outcome. The points are
   now out of the sender's balance and *held by the transfer*: in no balance
   until step 3, and never lost, because the open intent drives step 3.
3. **credit** (receiver partition, idempotency key ``transfer-in:<id>``): one
   ``TRANSFER_IN`` entry per part, each a lot with the part's ``expiresAt``, so
   the points keep their expiry dates. It reads the parts from the debit's
   marker, so it can only ever credit what was debited, and its key makes a
   second credit a replay. It is never refused: once debited, the points go.
4. **completion** (sender partition, key ``transfer-done:<id>``): the
   ``transfer-done-<id>`` record (no entry), then the intent is deleted.

Crash anywhere and the intent stays open: recovery re-runs the steps from 2;
each finds its marker and replays, the first missing one is done. Hence points
are never created (the credit is keyed by the transfer and reads the debit's
parts), never lost (an open intent is driven until completed) and never
credited without their debit (step 3 reads the debit's marker and stops when
there is none). An intent whose debit is refused when recovery drives it
(the sender spent the points meanwhile) is closed as failed, with nothing moved.

Both entries name the transfer (``attributes.transferId``) and the other party
(``attributes.counterpartyId``), so each customer's history shows the transfer,
and each is a committed entry, hence a ``transaction.committed`` webhook for
each customer from the change feed (shared/webhooks/events.py).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Callable
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from shared.app.customers import CustomerService
from shared.app.tenants import TenantDirectory
from shared.clock import Clock, iso
from shared.domain.orders import EntityId
from shared.errors import (AccrueError, Conflict, DocumentExists, InsufficientPoints, NotFound, PreconditionFailed,
                           ValidationFailed)
from shared.errors import FieldProblem
from shared.expiry.policy import local_midnight, local_today
from shared.expiry.service import read_book
from shared.ledger.entries import ENTRY_DOC, EntryDraft, EntryType, Head
from shared.ledger import wallets
from shared.ledger.lots import LotBook
from shared.ledger.service import Ledger, Plan, TransactionOutcome, TransactionRequest, fingerprint_of
from shared.store.layout import LEDGER, SYSTEM, customer_pk
from shared.store.contention import attempts
from shared.store.port import DocumentStore, Filter, Query
from shared.store.removal import delete_if, delete_if_present
from shared.telemetry.logs import fields
from shared.transfers.policy import TransferLimits

log = logging.getLogger("accrue.transfers")

INTENT_DOC = "transferIntent"
TRANSFER_DOC = "transfer"
COMPLETION_DOC = "transferCompletion"
# An open transfer is left to its request this long after its last step; then recovery drives it.
RECOVERY_GRACE = timedelta(seconds=30)
# A partition batch holds at most 100 operations (shared/store/port.py): the credit's entries
# and its marker. Lots beyond this many expiry dates are folded into the last part, which then
# carries the earliest of the folded dates (the receiver's points never outlive the sender's).
MAX_PARTS = 90
RECOVERY_BATCH = 200
BOOK_CACHE_SIZE = 10_000

Key = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Note = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class TransferRequest(BaseModel):
    """A transfer of available points to another customer of the same tenant."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to_customer_id: EntityId = Field(alias="toCustomerId")
    # A JSON integer only, as for adjustments.
    points: StrictInt = Field(ge=1, le=10**12)
    idempotency_key: Key = Field(alias="idempotencyKey")
    note: Note | None = None


class TransferRefused(AccrueError):
    """A transfer a limit or a screen does not allow: nothing was written."""

    code = "transfer-refused"
    status = 422


@dataclass
class TransferResult:
    body: dict[str, Any]
    created: bool


def transfer_id(tenant_id: str, sender_id: str, idempotency_key: str) -> str:
    """One transfer per sender and key: a repeated request is the same transfer."""
    digest = hashlib.sha256(f"{tenant_id}|{sender_id}|{idempotency_key}".encode()).hexdigest()
    return "tr-" + digest[:24]


def _unstamped(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def intent_pk(tenant_id: str) -> str:
    return f"transfers:{tenant_id}"


class Transfers:
    def __init__(self, store: DocumentStore, ledger: Ledger, clock: Clock, tenants: TenantDirectory,
                 customers: CustomerService, transfers_per_hour: Callable[[str], int | None] | None = None) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self._tenants = tenants
        self._customers = customers
        # The fraud policy's per-customer transfersPerHour (shared/fraud/policy.py); None: no screen.
        self._transfers_per_hour = transfers_per_hour or (lambda tenant_id: None)
        # Senders' lot books, continued from their seq instead of replayed from the start on
        # every debit (a book is a function of the committed entries up to its seq, so continuing
        # one is always right). A plan takes its book out while it uses it: never shared.
        self._books: OrderedDict[str, LotBook] = OrderedDict()
        self._books_lock = threading.Lock()

    # --- the request ------------------------------------------------------------------

    def transfer(self, tenant_id: str, sender_id: str, request: TransferRequest) -> TransferResult:
        tid = transfer_id(tenant_id, sender_id, request.idempotency_key)
        fingerprint = fingerprint_of({"from": sender_id, **request.model_dump(mode="json", by_alias=True)})
        done = self._ledger.marker(tenant_id, sender_id, f"transfer-out:{tid}")
        if done is not None:  # a replay: the first outcome, driven to its end if it is still open
            if done.get("fingerprint") != fingerprint:
                raise Conflict(f"idempotency key {request.idempotency_key!r} was already used for another transfer")
            intent = self._store.read(SYSTEM, intent_pk(tenant_id), tid)
            body = self.drive(intent) if intent is not None else self._completed_view(done["outcome"])
            return TransferResult({**body, "duplicate": True}, created=False)
        self._check_parties(tenant_id, sender_id, request.to_customer_id)
        limits = self._limits(tenant_id)
        _check_amount(limits, request.points)
        now = self._clock.now()
        intent = {"id": tid, "pk": intent_pk(tenant_id), "docType": INTENT_DOC, "tenantId": tenant_id,
                  "transferId": tid, "fromCustomerId": sender_id, "toCustomerId": request.to_customer_id,
                  "points": request.points, "note": request.note, "fingerprint": fingerprint,
                  "idempotencyKey": request.idempotency_key, "createdAt": iso(now),
                  "dueAt": iso(now + RECOVERY_GRACE)}
        recorded_here = True
        try:
            intent = self._store.create(SYSTEM, intent)
        except DocumentExists:
            existing = self._store.read(SYSTEM, intent_pk(tenant_id), tid)
            if existing is not None and existing.get("fingerprint") != fingerprint:
                raise Conflict(f"idempotency key {request.idempotency_key!r} was already used for another transfer")
            adopted = self._adopt(existing) if existing is not None else None
            if adopted is None:  # closed between the create and now: its marker answers, or a new intent
                return self.transfer(tenant_id, sender_id, request)
            intent, recorded_here = adopted, False  # the same transfer, sent again while it is open
        try:
            body, debited_here = self._drive(intent)
        except AccrueError:
            if recorded_here and self._ledger.marker(tenant_id, sender_id, f"transfer-out:{tid}") is None:
                # Refused at the debit: nothing moved. The intent goes (a refusal is not remembered,
                # as for every ledger refusal: the same key may be sent again), unless another
                # driver adopted it meanwhile: its debit may have gone through, and the intent
                # is what drives that transfer to its credit.
                self._close_unmoved(intent)
            # Else debited: the intent stays open and the recovery job completes the transfer.
            raise
        # Created is decided by the debit, not by the intent: concurrent sends of one key all
        # drive the one transfer, and a send that found no marker can even create the intent
        # again after the first send closed it. One debit is written, so one call answers
        # "created"; every other one replayed that debit and answers as the replay it is.
        return TransferResult(body if debited_here else {**body, "duplicate": True}, created=debited_here)

    # --- the saga ---------------------------------------------------------------------

    def drive(self, intent: dict[str, Any]) -> dict[str, Any]:
        """Steps 2 to 4 for an open transfer, each replayed if already done; returns the outcome."""
        return self._drive(intent)[0]

    def _drive(self, intent: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """As ``drive``, and whether this call wrote the debit (False: it replayed one)."""
        debit = self._debit(intent)
        self._credit(intent, debit.outcome)
        self._complete(intent, debit.outcome)
        self._close(intent)
        return self._completed_view(debit.outcome), not debit.duplicate

    def _debit(self, intent: dict[str, Any]) -> TransactionOutcome:
        tenant_id, sender, receiver = intent["tenantId"], intent["fromCustomerId"], intent["toCustomerId"]
        tid, points = intent["transferId"], intent["points"]
        limits = self._limits(tenant_id)
        per_hour = self._transfers_per_hour(tenant_id)
        zone = ZoneInfo(self._tenants.get(tenant_id).time_zone)

        def plan(head: Head) -> Plan:
            now = self._clock.now()
            _check_amount(limits, points)
            if limits.per_day is not None:
                # The instant the local day began (the first midnight when clocks went back at 01:00;
                # ``replace(hour=0)`` kept the fold of now, and the day's first hour went uncounted).
                day_start = local_midnight(local_today(now, zone), zone)
                today = -sum(e["signedAmount"] for e in self._sent_since(tenant_id, sender, day_start))
                if today + points > limits.per_day:
                    raise TransferRefused(f"{today + points} points transferred today would exceed the daily "
                                          f"limit of {limits.per_day}")
            if per_hour is not None:
                count = len(self._sent_since(tenant_id, sender, now - timedelta(hours=1)))
                if count + 1 > per_hour:
                    raise TransferRefused(f"{count + 1} transfers in one hour exceed the limit of {per_hour} "
                                          "(fraud policy transfersPerHour)")
            if head.balance < points:
                raise InsufficientPoints(f"customer {sender} has {head.balance} available points; "
                                         f"cannot transfer {points}")
            parts = self._parts(tenant_id, sender, head, points)
            draft = EntryDraft(EntryType.TRANSFER_OUT, -points, attributes={
                "transferId": tid, "counterpartyId": receiver, "parts": parts,
                **({"note": intent["note"]} if intent.get("note") else {})})
            record = {"id": f"transfer-{tid}", "docType": TRANSFER_DOC, "transferId": tid,
                      "fromCustomerId": sender, "toCustomerId": receiver, "points": points, "parts": parts}
            outcome = {"transferId": tid, "fromCustomerId": sender, "toCustomerId": receiver, "points": points,
                       "parts": parts, "senderBalanceAfter": head.balance - points, "createdAt": iso(now)}
            return Plan(entries=[draft], outcome=outcome, records=[record])

        return self._ledger.append_one(TransactionRequest(
            tenant_id, sender, f"transfer-out:{tid}", intent["fingerprint"], plan))

    def _credit(self, intent: dict[str, Any], debit: dict[str, Any]) -> None:
        tenant_id, tid = intent["tenantId"], debit["transferId"]
        assert debit["points"] == sum(p["points"] for p in debit["parts"]), "parts add up to the transfer"
        receiver, sender = debit["toCustomerId"], debit["fromCustomerId"]

        def plan(head: Head) -> Plan:
            drafts = [EntryDraft(EntryType.TRANSFER_IN, part["points"], attributes={
                "transferId": tid, "counterpartyId": sender,
                **({"expiresAt": part["expiresAt"]} if part.get("expiresAt") else {})}) for part in debit["parts"]]
            record = {"id": f"transfer-in-{tid}", "docType": TRANSFER_DOC, "transferId": tid,
                      "fromCustomerId": sender, "toCustomerId": receiver, "points": debit["points"]}
            return Plan(entries=drafts, records=[record], outcome={
                "transferId": tid, "receiverBalanceAfter": head.balance + debit["points"]})

        self._ledger.append_one(TransactionRequest(
            tenant_id, receiver, f"transfer-in:{tid}", fingerprint_of({"transfer": tid, "parts": debit["parts"]}),
            plan))

    def _complete(self, intent: dict[str, Any], debit: dict[str, Any]) -> None:
        tenant_id, tid = intent["tenantId"], debit["transferId"]

        def plan(head: Head) -> Plan:
            record = {"id": f"transfer-done-{tid}", "docType": COMPLETION_DOC, "transferId": tid,
                      "completedAt": iso(self._clock.now())}
            return Plan(entries=[], records=[record], outcome={"transferId": tid, "status": "completed"})

        self._ledger.append_one(TransactionRequest(
            tenant_id, debit["fromCustomerId"], f"transfer-done:{tid}", fingerprint_of({"done": tid}), plan))

    def _adopt(self, intent: dict[str, Any]) -> dict[str, Any] | None:
        """Take over an open intent another driver recorded (a resend of its key, or the
        recovery job): its ``dueAt`` moved on under its ETag, so a driver that was refused
        at the debit cannot close it any more (``_close_unmoved``). The adopted intent, or
        None if it was closed meanwhile."""
        for _ in attempts():
            try:
                due = iso(self._clock.now() + RECOVERY_GRACE)
                return self._store.upsert(SYSTEM, dict(_unstamped(intent), dueAt=due), if_match=intent["_etag"])
            except PreconditionFailed:
                now = self._store.read(SYSTEM, intent["pk"], intent["id"])
                if now is None:
                    return None
                intent = now  # adopted by another driver just now: adopt it from there
        raise Conflict(f"transfer {intent['transferId']} kept changing hands; try again")

    def _close_unmoved(self, intent: dict[str, Any]) -> None:
        """Close an intent whose debit this driver saw refused, only if nobody adopted it
        since (its ETag unchanged): an adopter may have debited, and must find it open
        (theirs to drive, or to close, now)."""
        delete_if(self._store, SYSTEM, intent["pk"], intent["id"], lambda now: now["_etag"] == intent["_etag"])

    def _close(self, intent: dict[str, Any]) -> None:
        """Close a completed transfer's intent (its completion record written: whoever
        removes it, the request or recovery, the transfer is done)."""
        delete_if_present(self._store, SYSTEM, intent["pk"], intent["id"])

    # --- recovery ---------------------------------------------------------------------

    def open_transfers(self, due_only: bool = True, limit: int = RECOVERY_BATCH) -> list[dict[str, Any]]:
        filters = [Filter("docType", "=", INTENT_DOC)]
        if due_only:
            filters.append(Filter("dueAt", "<=", iso(self._clock.now())))
        return self._store.query(SYSTEM, Query(pk=None, filters=tuple(filters), limit=limit))

    def recover(self) -> dict[str, int]:
        """Drive every open transfer past its grace to its end (the ``transfers`` job)."""
        report = {"scanned": 0, "recovered": 0, "failed": 0}
        for found in self.open_transfers():
            report["scanned"] += 1
            intent: dict[str, Any] | None = found
            try:
                intent = self._adopt(found)
                if intent is None:
                    report["recovered"] += 1  # closed by its request meanwhile
                    continue
                self.drive(intent)
                report["recovered"] += 1
            except (InsufficientPoints, TransferRefused, ValidationFailed, NotFound) as refused:
                # Only the debit can refuse: nothing moved. Closed, and said so.
                if self._ledger.marker(intent["tenantId"], intent["fromCustomerId"],
                                       f"transfer-out:{intent['transferId']}") is not None:
                    raise
                self._close_unmoved(intent)
                report["failed"] += 1
                log.warning("transfer %s closed unmoved: %s", intent["transferId"], refused.code,
                            extra=fields(tenant=intent["tenantId"]))
            except AccrueError as error:  # a store outage, a hot partition: the next run tries again
                report["retry"] = report.get("retry", 0) + 1
                log.warning("transfer %s not recovered yet: %s", found["transferId"], error.code,
                            extra=fields(tenant=found["tenantId"]))
        return report

    # --- reads and checks -------------------------------------------------------------

    def get(self, tenant_id: str, customer_id: str, tid: str) -> dict[str, Any]:
        """A transfer as seen by either party: ``pending`` (recorded, nothing moved yet),
        ``in-progress`` (debited from the sender, the credit or completion still to come: the
        request or the recovery job drives it) or ``completed``. NotFound for a transfer this
        customer is not a party to (the receiver is one once credited), and for one refused (a
        refusal is not remembered)."""
        sender = customer_id
        received = self._ledger.record(tenant_id, customer_id, f"transfer-in-{tid}")
        if received is not None:
            sender = received["fromCustomerId"]
        debit = self._ledger.marker(tenant_id, sender, f"transfer-out:{tid}")
        if debit is not None:
            view = self._completed_view(debit["outcome"])
            if self._ledger.marker(tenant_id, sender, f"transfer-done:{tid}") is None:
                view["status"] = "in-progress"
            if sender != customer_id:  # the receiver is not shown the sender's balance
                view.pop("balanceAfter")
            return view
        intent = self._store.read(SYSTEM, intent_pk(tenant_id), tid)
        if intent is not None and intent["fromCustomerId"] == customer_id:
            return {"transferId": tid, "status": "pending", "fromCustomerId": customer_id,
                    "toCustomerId": intent["toCustomerId"], "points": intent["points"],
                    "createdAt": intent["createdAt"]}
        raise NotFound(f"customer {customer_id} has no transfer {tid}")

    def _completed_view(self, debit: dict[str, Any]) -> dict[str, Any]:
        return {"transferId": debit["transferId"], "status": "completed", "fromCustomerId": debit["fromCustomerId"],
                "toCustomerId": debit["toCustomerId"], "points": debit["points"], "parts": debit["parts"],
                "balanceAfter": debit["senderBalanceAfter"], "createdAt": debit.get("createdAt")}

    def _check_parties(self, tenant_id: str, sender_id: str, receiver_id: str) -> None:
        if receiver_id == sender_id:
            raise ValidationFailed("a customer cannot transfer points to themselves",
                                   [FieldProblem("toCustomerId", "must be another customer")])
        found = self._customers.find_many(tenant_id, [sender_id, receiver_id])
        sender, receiver = found[sender_id], found[receiver_id]
        if sender is None:
            raise NotFound(f"customer {sender_id!r} does not exist")
        if sender.get("erasedAt"):
            raise TransferRefused(f"customer {sender_id!r} was erased")
        if receiver is None or receiver.get("erasedAt"):
            # Unknown and erased read the same: the answer says nothing about who exists.
            raise ValidationFailed("the receiver cannot receive points", [FieldProblem(
                "toCustomerId", "no such customer of this tenant, or the customer was erased")])

    def _limits(self, tenant_id: str) -> TransferLimits:
        limits = self._tenants.get(tenant_id).transfer_limits or TransferLimits()
        if not limits.enabled:
            raise TransferRefused("transfers are turned off for this tenant")
        return limits

    def _sent_since(self, tenant_id: str, sender_id: str, since: datetime) -> list[dict[str, Any]]:
        return self._store.query(LEDGER, Query(pk=customer_pk(tenant_id, sender_id), filters=(
            Filter("docType", "=", ENTRY_DOC), Filter("createdAt", ">=", iso(since)),
            Filter("entryType", "=", EntryType.TRANSFER_OUT.value)), limit=10_000))

    def _parts(self, tenant_id: str, sender_id: str, head: Head, points: int) -> list[dict[str, Any]]:
        """The lots the debit takes, grouped by expiry: ``[{points, expiresAt|None}]``."""
        pk = customer_pk(tenant_id, sender_id)
        with self._books_lock:
            cached = self._books.pop(pk, None)
        book = read_book(self._store, tenant_id, sender_id, cached)
        try:
            return self._split(book, head, points, self._wallet_split(tenant_id, head, points))
        finally:
            with self._books_lock:
                self._books[pk] = book
                while len(self._books) > BOOK_CACHE_SIZE:
                    self._books.popitem(last=False)

    def _wallet_split(self, tenant_id: str, head: Head, points: int) -> dict[str, int] | None:
        """How the ledger will split the debit over a wallet tenant's wallets (by their
        spending order, shared/ledger/wallets.py); None for a tenant without wallets."""
        settings = self._tenants.get(tenant_id).wallets
        if settings is None:
            return None
        before = wallets.start(dict(head.wallets), head.balance, settings)
        return wallets.split(before, EntryDraft(EntryType.TRANSFER_OUT, -points), settings) or None

    @staticmethod
    def _split(book: LotBook, head: Head, points: int, wallet_split: dict[str, int] | None = None
               ) -> list[dict[str, Any]]:
        """The parts of what the TRANSFER_OUT will take from the lots: the debit is replayed on a
        copy of the sender's open lots by the lots' own code (``LotBook.apply``, with the wallet
        split the ledger will write), so the receiver gets the expiries the sender loses. (Taking
        FIFO over every lot here, while the ledger took a wallet tenant's debit by spending order,
        gave the receiver dates of lots the sender kept: two lots' points expired for one.)"""
        if book.seq != head.seq:
            # The book is not the head this plan is on (another append since): the points as one
            # part now; the append itself fails on the sequence number and is re-planned.
            return [{"points": points, "expiresAt": None}]
        movement, lots = book.trial({"signedAmount": -points, "entryType": EntryType.TRANSFER_OUT.value,
                                     **({"walletSplit": wallet_split} if wallet_split else {})})
        taken: dict[str | None, int] = {}
        for lot_id, took in movement.taken:
            expires = lots[lot_id].expires_at
            key = iso(expires) if expires else None
            taken[key] = taken.get(key, 0) + took
        rest = points - sum(taken.values())
        if rest:  # the balance counts points no lot holds (history before lots): they never expire
            taken[None] = taken.get(None, 0) + rest
        # Soonest first, points that never expire last (the lots' FIFO order).
        parts = [{"points": taken[key], "expiresAt": key}
                 for key in sorted(taken, key=lambda k: (k is None, k or ""))]
        if len(parts) > MAX_PARTS:
            folded = parts[MAX_PARTS - 1:]
            dates = [p["expiresAt"] for p in folded if p["expiresAt"]]
            parts = parts[:MAX_PARTS - 1] + [{"points": sum(p["points"] for p in folded),
                                               "expiresAt": min(dates) if dates else None}]
        assert sum(p["points"] for p in parts) == points and all(p["points"] > 0 for p in parts)
        return parts


def _check_amount(limits: TransferLimits, points: int) -> None:
    if points < limits.min_points:
        raise TransferRefused(f"the smallest transfer is {limits.min_points} points")
    if limits.max_points is not None and points > limits.max_points:
        raise TransferRefused(f"the largest transfer is {limits.max_points} points")
