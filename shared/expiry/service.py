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
  (``shared.ledger.lots``; the page's ledgers are read together, ``read_books``)
  and writes, per due lot with points left, one EXPIRE entry of exactly that
  remainder, ``referenceEntryId`` = the lot, keyed ``expire:<lotId>:<n>`` (n =
  EXPIRE entries that already named the lot, so a lot refilled by a RELEASE
  after expiring can be expired again). A customer's due lots (at most
  ``MAX_LOTS_PER_TRANSACTION``) are **one** ledger transaction: one marker, one
  head, one chain extension for all of them; its key is the lot's own for a
  single lot, else ``expire-lots:<digest of the lots' keys>``. The plan is
  re-derived from the ledger on the head it is written on, so a redemption
  racing the job is never double-counted: the append re-plans on a conflict,
  and a lot spent meanwhile is left out of the transaction.
* **Exactly once per lot.** The EXPIRE of (lot, n) is planned only while n
  EXPIREs name the lot and it has points left, on the very head it is written
  after: two writers cannot both write it (the loser of the sequence race
  re-plans and finds the lot expired). Run twice, the second run finds every
  due lot empty and writes nothing; two instances with the same plan share the
  transaction's key, so one writes and the other gets the first outcome back.
* **Bounded and resumable.** A run stops after ``max_customers`` customers and
  saves its cursor (day, customer id) in the ``system`` container; the next run
  resumes there. A tenant is marked done for its local day only when every
  customer succeeded; otherwise the next run repeats the day (safe: idempotent).

Appends are grouped: each round writes one transaction per customer of the
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
# Customers whose ledgers one query reads (read_books); a chunk with more than ENTRY_PAGE
# entries in all falls back to one query per customer.
BULK_CUSTOMERS = 100
# EXPIRE entries of one transaction: with its marker, well inside a partition batch
# (shared.store.port.MAX_BATCH_OPERATIONS, 100 on Cosmos DB).
MAX_LOTS_PER_TRANSACTION = 90
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


def lot_key(lot_id: str, expiries: int) -> str:
    """The key of one lot's n-th expiry: what its EXPIRE entry carries as ``idempotencyKey``."""
    return f"expire:{lot_id}:{expiries}"


def expire_key(lot: Lot) -> str:
    return lot_key(lot.lot_id, lot.expiries)


def group_key(keys: list[str]) -> str:
    """A transaction's key for the expiry of these lots: the lot's own key for one lot (so a
    single lot's transaction is keyed exactly as before grouping), else a digest of the set."""
    if len(keys) == 1:
        return keys[0]
    return "expire-lots:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:40]


def _seq(entry: dict[str, Any]) -> int:
    return entry["seq"]  # type: ignore[no-any-return]


def read_books(store: DocumentStore, tenant_id: str, customer_ids: list[str],
               newest: list[dict[str, Any]] | None = None) -> dict[str, LotBook]:
    """Many customers' lot books, their ledgers read together: one query per ``BULK_CUSTOMERS``
    customers (entries across partitions, ``pk IN (...)``), the same books ``read_book`` makes
    one by one. A chunk whose entries do not fit one page (long histories) is read customer by
    customer instead, so a book is never replayed from a partial history. ``newest``, if given,
    receives each customer's newest entry read (for ``Ledger.prime_heads``)."""
    books: dict[str, LotBook] = {}
    for start in range(0, len(customer_ids), BULK_CUSTOMERS):
        chunk = customer_ids[start:start + BULK_CUSTOMERS]
        pks = {customer_pk(tenant_id, cid): cid for cid in chunk}
        page = store.query(LEDGER, Query(pk=None, filters=(
            Filter("pk", "in", list(pks)), Filter("docType", "=", ENTRY_DOC), Filter("seq", ">", 0)),
            limit=ENTRY_PAGE))  # unordered: SQLite reads it by partition; ordered by seq it walked the seq index
        if len(page) >= ENTRY_PAGE:
            books.update((cid, read_book(store, tenant_id, cid)) for cid in chunk)
            continue
        by_customer: dict[str, list[dict[str, Any]]] = {cid: [] for cid in chunk}
        for entry in page:
            by_customer[pks[entry["pk"]]].append(entry)
        for cid, found in by_customer.items():
            found.sort(key=_seq)
            books[cid] = replay(found)
            if found and newest is not None:
                newest.append(found[-1])
    return books


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
        # Done means done up to a cut-off instant, not a local date's text: a tenant that moved
        # its zone west is often on a date of the same text whose midnight is hours later, and
        # the lots due between the two midnights waited a whole day (an outside review).
        mark = iso(cutoff)
        if state.get("doneCutoff") is not None:
            if state["doneCutoff"] >= mark:
                return
        elif state.get("doneLocalDate") == today.isoformat():
            return  # written before the cut-off was kept
        last_day = cutoff.date()
        if state.get("cursorFor") == mark:
            day, after = date.fromisoformat(state["cursorDay"]), state.get("cursorAfter")
        elif state.get("nextDay"):
            day, after = date.fromisoformat(state["nextDay"]) - timedelta(days=LOOKBACK_DAYS), None
        else:
            day, after = self.calendar.first_day(tenant.tenant_id) or last_day, None
        failures_before = len(report.failed)
        # A customer that failed in an earlier, budget-cut run of today keeps the day open.
        failed_earlier = state.get("cursorFor") == mark and bool(state.get("cursorFailed"))
        while day <= last_day:
            if budget[0] <= 0:
                self._save(tenant.tenant_id, {**state, "cursorFor": mark, "cursorDay": day.isoformat(),
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
                                      "doneLocalDate": today.isoformat() if done else state.get("doneLocalDate"),
                                      "doneCutoff": mark if done else state.get("doneCutoff")})

    def expire_customers(self, tenant_id: str, customer_ids: list[str], cutoff: datetime,
                         report: ExpiryReport | None = None) -> ExpiryReport:
        """Expire every lot of these customers that is due at ``cutoff`` (idempotent)."""
        report = report if report is not None else ExpiryReport()
        newest: list[dict[str, Any]] = []
        books = read_books(self._store, tenant_id, list(dict.fromkeys(customer_ids)), newest)
        self._ledger.prime_heads(newest)  # the plans need no head read (a stale one is re-planned)
        report.customers += len(books)
        skipped: dict[str, set[str]] = {cid: set() for cid in books}
        while books:
            requests: list[TransactionRequest] = []
            asked: list[list[str]] = []  # the lot ids of each request
            for cid, book in books.items():
                lots = [lot for lot in book.due(cutoff) if lot.lot_id not in skipped[cid]][:MAX_LOTS_PER_TRANSACTION]
                if lots:
                    requests.append(self._group_request(tenant_id, cid, books,
                                                        [(lot.lot_id, lot.expiries) for lot in lots], cutoff))
                    asked.append([lot.lot_id for lot in lots])
            if not requests:
                break
            # One group commit for the page: one transaction per customer, all its due lots in it.
            for request, lot_ids, outcome in zip(requests, asked, self._ledger.append(requests)):
                cid = request.customer_id
                if isinstance(outcome.error, NothingToExpire) or outcome.duplicate:
                    # Spent, expired or refilled meanwhile: look again on the ledger as it is now.
                    skipped[cid].update(lot_ids)
                    books[cid] = read_book(self._store, tenant_id, cid, books[cid])
                elif outcome.error is not None:
                    log.error("expiry of a customer failed: %s", outcome.error.message,
                              extra=fields(job="expiry", tenant=tenant_id, error=outcome.error.code))
                    report.failed.append(cid)
                    del books[cid]
                else:
                    replay(outcome.entries, books[cid])
                    report.lots_expired += len(outcome.entries)
                    report.points_expired += -sum(entry["signedAmount"] for entry in outcome.entries)
        return report

    def _request(self, tenant_id: str, customer_id: str, books: dict[str, LotBook], lot_id: str, key: str,
                 cutoff: datetime) -> TransactionRequest:
        """One lot's expiry as a transaction of its own (key ``expire:<lotId>:<n>``)."""
        return self._group_request(tenant_id, customer_id, books, [(lot_id, int(key.rsplit(":", 1)[1]))], cutoff)

    def _group_request(self, tenant_id: str, customer_id: str, books: dict[str, LotBook],
                       wanted: list[tuple[str, int]], cutoff: datetime) -> TransactionRequest:
        """The expiry of a customer's due lots ``wanted`` ((lot id, EXPIRE entries that already
        named it)) as one ledger transaction: one EXPIRE per lot that still has points left when
        planned, each entry keyed ``expire:<lotId>:<n>`` (``EntryDraft.idempotency_key``).

        Exactly once per lot: a lot's EXPIRE is planned only while exactly ``n`` EXPIREs name it
        and it has points left, on the head the transaction is written after (the ledger
        re-plans on a sequence conflict), so two writers can never both expire (lot, n). The
        transaction's own key names the whole set (``group_key``): a rerun or a second instance
        with the same plan gets the first outcome back."""
        assert 1 <= len(wanted) <= MAX_LOTS_PER_TRANSACTION
        assert len({lot_id for lot_id, _ in wanted}) == len(wanted), "a lot appears once in a group"
        keys = [lot_key(lot_id, n) for lot_id, n in wanted]

        def plan(head: Head) -> Plan:
            book = books[customer_id]
            if head.seq != book.seq:
                # Someone wrote since the replay: plan on the ledger as it is now.
                book = books[customer_id] = read_book(self._store, tenant_id, customer_id, book)
            drafts: list[EntryDraft] = []
            expired: list[dict[str, Any]] = []
            attributes_cutoff = iso(cutoff)
            for (lot_id, expiries), key in zip(wanted, keys):
                lot = book.lots.get(lot_id)
                if (lot is None or lot.expiries != expiries or lot.remaining <= 0 or lot.expires_at is None
                        or lot.expires_at > cutoff):
                    continue  # spent, expired or refilled since the page was read: nothing of it here
                # A lot of a wallet expires out of that wallet (shared/ledger/wallets.py).
                drafts.append(EntryDraft(EntryType.EXPIRE, -lot.remaining, reference_entry_id=lot_id,
                                         reference_order_id=lot.order_id, wallet=lot.wallet,
                                         attributes={"lotExpiresAt": stamp(lot.expires_at), "cutoff": attributes_cutoff},
                                         idempotency_key=key if len(wanted) > 1 else None))
                expired.append({"lotId": lot_id, "points": lot.remaining})
            if not drafts:
                raise NothingToExpire(f"lots of customer {customer_id} have nothing left to expire")
            points = sum(item["points"] for item in expired)
            # TIGER_STYLE: on one snapshot, the remaining lots add up to the (not negative) balance
            # (shared.ledger.lots). A book read past a stale head is not one: that plan collides.
            assert book.seq != head.seq or points <= head.balance, "expiry would take more than the balance"
            outcome: dict[str, Any] = {"status": "expired", "customerId": customer_id, "points": points,
                                       "balanceAfter": head.balance - points}
            if len(wanted) == 1:
                outcome["lotId"] = expired[0]["lotId"]  # a single lot's outcome, as it always was
            else:
                outcome["lots"] = expired
            return Plan(entries=drafts, outcome=outcome)

        fingerprint = fingerprint_of({"lot": wanted[0][0], "expiries": wanted[0][1]} if len(wanted) == 1
                                     else {"lots": [list(item) for item in wanted]})
        return TransactionRequest(tenant_id=tenant_id, customer_id=customer_id, idempotency_key=group_key(keys),
                                  fingerprint=fingerprint, plan=plan)

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


__all__ = ["ExpiryReport", "ExpiryService", "read_book", "read_books"]
