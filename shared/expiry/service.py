"""The expiry job and customers' upcoming expiries.

``ExpiryService.run`` is the body of the ``expiry`` timer job (shared/jobs.py).
For each tenant, once per local day (the tenant's ``timeZone``), it expires what
is left of every lot whose ``expiresAt`` is at or before local midnight
(``shared.expiry.policy.cutoff``):

* **Where to look.** The expiry calendar (``shared.expiry.calendar``) lists,
  per UTC day, the customers with something due; the job reads the days from
  its per-tenant watermark (minus ``LOOKBACK_DAYS`` for change-feed lag) up to
  the cutoff's day, in pages of ``PAGE`` customers, and never scans the ledger.
* **What to write.** For each such customer it replays the ledger into lots
  (``shared.ledger.lots``) and writes, per due lot with points left, one EXPIRE
  entry of exactly that remainder, ``referenceEntryId`` = the lot. Each EXPIRE
  is its own ledger transaction with the idempotency key
  ``expire:<lotId>:<n>`` (n = EXPIRE entries that already named the lot, so a
  lot refilled by a RELEASE after expiring can be expired again). The plan is
  re-derived from the ledger on the head it is written on, so a redemption
  racing the job is never double-counted: the append re-plans on a conflict.
* **Idempotent.** Run twice, the second run finds every due lot empty and
  writes nothing; two job instances racing on one lot share its key, so one
  writes and the other gets the first outcome back.
* **Bounded and resumable.** A run stops after ``max_customers`` customers and
  saves its cursor (day, customer id) in the ``system`` container; the next run
  resumes there. A tenant is marked done for its local day only when every
  customer succeeded; otherwise the next run repeats the day (safe: idempotent).

Appends are grouped: each round writes at most one EXPIRE per customer of the
page, in one ``Ledger.append`` call (one group commit for the whole page).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.app.tenants import TenantDirectory
from shared.clock import Clock, iso
from shared.domain.tenants import TenantSettings
from shared.errors import NothingToExpire
from shared.expiry.calendar import ExpiryCalendar
from shared.expiry.policy import cutoff as cutoff_of, last_valid_day, local_midnight, local_today, stamp
from shared.ledger.entries import ENTRY_DOC, EntryDraft, EntryType, Head
from shared.ledger.lots import Lot, LotBook, replay
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.store.layout import LEDGER, SYSTEM, TENANTS, customer_pk
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.expiry")

PAGE = 500
ENTRY_PAGE = 10_000
LOOKBACK_DAYS = 2
STATE_PK = "expiry"


def read_book(store: DocumentStore, tenant_id: str, customer_id: str, book: LotBook | None = None) -> LotBook:
    """Replay a customer's ledger into lots (continuing ``book`` from its seq), in pages."""
    book = book if book is not None else LotBook()
    while True:
        page = store.query(LEDGER, Query(
            pk=customer_pk(tenant_id, customer_id),
            filters=(Filter("docType", "=", ENTRY_DOC), Filter("seq", ">", book.seq)),
            order_by="seq", limit=ENTRY_PAGE))
        replay(page, book)
        if len(page) < ENTRY_PAGE:
            return book


def expire_key(lot: Lot) -> str:
    return f"expire:{lot.lot_id}:{lot.expiries}"


@dataclass
class ExpiryReport:
    tenants: int = 0
    customers: int = 0
    lots_expired: int = 0
    points_expired: int = 0
    failed: list[str] = field(default_factory=list)
    complete: bool = True

    def summary(self) -> str:
        return (f"expiry: {self.tenants} tenant(s), {self.customers} customer(s) visited, {self.lots_expired} lot(s) "
                f"expired ({self.points_expired} points), {len(self.failed)} failed"
                + ("" if self.complete else ", more to do next run"))


class ExpiryService:
    def __init__(self, store: DocumentStore, ledger: Ledger, tenants: TenantDirectory, clock: Clock) -> None:
        self._store = store
        self._ledger = ledger
        self._tenants = tenants
        self._clock = clock
        self.calendar = ExpiryCalendar(store)

    # --- reads -------------------------------------------------------------------------

    def book(self, tenant_id: str, customer_id: str) -> LotBook:
        return read_book(self._store, tenant_id, customer_id)

    def upcoming(self, tenant_id: str, customer_id: str, limit: int = 100) -> dict[str, Any]:
        """The customer's points that will expire, by last valid local day, soonest first."""
        zone = ZoneInfo(self._tenants.get(tenant_id).time_zone)
        book = self.book(tenant_id, customer_id)
        now = self._clock.now()
        cutoff = cutoff_of(now, zone)
        days: dict[date, dict[str, Any]] = {}
        never = 0
        for lot in book.open_lots():
            if lot.expires_at is None:
                never += lot.remaining
                continue
            day = last_valid_day(lot.expires_at, zone)
            item = days.setdefault(day, {
                "expiresOn": day.isoformat(), "expiresAt": iso(local_midnight(day + timedelta(days=1), zone)),
                "points": 0, "lots": 0, "overdue": lot.expires_at <= cutoff})
            item["points"] += lot.remaining
            item["lots"] += 1
        items = [days[day] for day in sorted(days)]
        return {"customerId": customer_id, "timeZone": zone.key, "asOf": iso(now),
                "available": book.balance, "deficit": book.deficit, "neverExpiring": never,
                "items": items[:limit], "more": len(items) > limit}

    # --- the job -----------------------------------------------------------------------

    def run(self, max_customers: int = 50_000) -> ExpiryReport:
        report = ExpiryReport()
        budget = [max_customers]
        for tenant in self._all_tenants():
            if budget[0] <= 0:
                report.complete = False
                break
            report.tenants += 1
            self._run_tenant(tenant, report, budget)
        log.info(report.summary(), extra=fields(job="expiry"))
        return report

    def run_tenant(self, tenant_id: str, max_customers: int = 50_000) -> ExpiryReport:
        report = ExpiryReport(tenants=1)
        self._run_tenant(self._tenants.get(tenant_id), report, [max_customers])
        return report

    def _run_tenant(self, tenant: TenantSettings, report: ExpiryReport, budget: list[int]) -> None:
        zone = ZoneInfo(tenant.time_zone)
        now = self._clock.now()
        today, cutoff = local_today(now, zone), cutoff_of(now, zone)
        state = self._store.read(SYSTEM, STATE_PK, _state_id(tenant.tenant_id)) or {}
        if state.get("doneLocalDate") == today.isoformat():
            return
        last_day = cutoff.date()
        if state.get("cursorFor") == today.isoformat():
            day, after = date.fromisoformat(state["cursorDay"]), state.get("cursorAfter")
        elif state.get("nextDay"):
            day, after = date.fromisoformat(state["nextDay"]) - timedelta(days=LOOKBACK_DAYS), None
        else:
            day, after = self.calendar.first_day(tenant.tenant_id) or last_day, None
        failures_before = len(report.failed)
        # A customer that failed in an earlier, budget-cut run of today keeps the day open.
        failed_earlier = state.get("cursorFor") == today.isoformat() and bool(state.get("cursorFailed"))
        while day <= last_day:
            if budget[0] <= 0:
                self._save(tenant.tenant_id, {**state, "cursorFor": today.isoformat(), "cursorDay": day.isoformat(),
                                              "cursorAfter": after,
                                              "cursorFailed": failed_earlier or len(report.failed) > failures_before})
                report.complete = False
                return
            limit = min(PAGE, budget[0])
            page = self.calendar.customers(tenant.tenant_id, day, after, limit)
            if page:
                self.expire_customers(tenant.tenant_id, page, cutoff, report)
                budget[0] -= len(page)
            if len(page) < limit:
                day, after = day + timedelta(days=1), None
            else:
                after = page[-1]
        done = not failed_earlier and len(report.failed) == failures_before
        self._save(tenant.tenant_id, {"nextDay": last_day.isoformat() if done else state.get("nextDay"),
                                      "doneLocalDate": today.isoformat() if done else state.get("doneLocalDate")})

    def expire_customers(self, tenant_id: str, customer_ids: list[str], cutoff: datetime,
                         report: ExpiryReport | None = None) -> ExpiryReport:
        """Expire every lot of these customers that is due at ``cutoff`` (idempotent)."""
        report = report if report is not None else ExpiryReport()
        books = {cid: self.book(tenant_id, cid) for cid in dict.fromkeys(customer_ids)}
        report.customers += len(books)
        skipped: dict[str, set[str]] = {cid: set() for cid in books}
        while books:
            requests: list[TransactionRequest] = []
            for cid, book in books.items():
                lot = next((lot for lot in book.due(cutoff) if lot.lot_id not in skipped[cid]), None)
                if lot is not None:
                    requests.append(self._request(tenant_id, cid, books, lot.lot_id, expire_key(lot), cutoff))
            if not requests:
                break
            for request, outcome in zip(requests, self._ledger.append(requests)):
                cid = request.customer_id
                lot_id = request.idempotency_key.split(":")[1]
                if isinstance(outcome.error, NothingToExpire) or outcome.duplicate:
                    skipped[cid].add(lot_id)  # spent, expired or refilled meanwhile: next run looks again
                    books[cid] = read_book(self._store, tenant_id, cid, books[cid])
                elif outcome.error is not None:
                    log.error("expiry of a customer failed: %s", outcome.error.message,
                              extra=fields(job="expiry", tenant=tenant_id, error=outcome.error.code))
                    report.failed.append(cid)
                    del books[cid]
                else:
                    replay(outcome.entries, books[cid])
                    report.lots_expired += 1
                    report.points_expired += -outcome.entries[0]["signedAmount"]
        return report

    def _request(self, tenant_id: str, customer_id: str, books: dict[str, LotBook], lot_id: str, key: str,
                 cutoff: datetime) -> TransactionRequest:
        expiries = int(key.rsplit(":", 1)[1])

        def plan(head: Head) -> Plan:
            book = books[customer_id]
            if head.seq != book.seq:
                # Someone wrote since the replay: plan on the ledger as it is now.
                book = books[customer_id] = read_book(self._store, tenant_id, customer_id, book)
            lot = book.lots[lot_id]
            if lot.expiries != expiries or lot.remaining <= 0 or lot.expires_at is None or lot.expires_at > cutoff:
                raise NothingToExpire(f"lot {lot_id} of customer {customer_id} has nothing left to expire")
            assert lot.expires_at is not None
            # A lot of a wallet expires out of that wallet (shared/ledger/wallets.py).
            draft = EntryDraft(EntryType.EXPIRE, -lot.remaining, reference_entry_id=lot_id,
                               reference_order_id=lot.order_id, wallet=lot.wallet,
                               attributes={"lotExpiresAt": stamp(lot.expires_at), "cutoff": iso(cutoff)})
            outcome = {"status": "expired", "customerId": customer_id, "lotId": lot_id, "points": lot.remaining,
                       "balanceAfter": head.balance - lot.remaining}
            return Plan(entries=[draft], outcome=outcome)

        return TransactionRequest(tenant_id=tenant_id, customer_id=customer_id, idempotency_key=key,
                                  fingerprint=fingerprint_of({"lot": lot_id, "expiries": expiries}), plan=plan)

    # --- state ----------------------------------------------------------------------------

    def _all_tenants(self) -> list[TenantSettings]:
        tenants: list[TenantSettings] = []
        after = ""
        while True:
            docs = self._store.query(TENANTS, Query(pk=None, filters=(
                Filter("docType", "=", "tenant"), Filter("id", ">", after)), order_by="id", limit=1000))
            for doc in docs:
                try:
                    tenants.append(TenantSettings.from_doc(doc))
                except ValueError as bad:  # one unreadable tenant must not stop everyone's expiry
                    log.error("tenant skipped by expiry: %s", bad,
                              extra=fields(job="expiry", tenant=doc.get("id"), error=type(bad).__name__))
            if len(docs) < 1000:
                return tenants
            after = docs[-1]["id"]

    def _save(self, tenant_id: str, state: dict[str, Any]) -> None:
        self._store.upsert(SYSTEM, {"id": _state_id(tenant_id), "pk": STATE_PK, "docType": "expiryState",
                                    "tenantId": tenant_id, **{k: v for k, v in state.items()
                                                              if k not in ("id", "pk", "_etag", "_ts")}})


def _state_id(tenant_id: str) -> str:
    return "tenant-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


__all__ = ["ExpiryReport", "ExpiryService", "read_book"]
