"""The maturation job: pending points whose return window has passed become available.

``Maturation.mature_customers(tenant, customers, now)`` writes, for every window
earn (shared/pending/window.py) of those customers whose ``maturesAt`` is at or
before ``now`` and that no later entry settled, **one** ledger transaction:

* an EARN COMMITTED of the held points, ``settlesEntryId`` = the pending entry
  (the running ``pending`` total drops, the available balance rises by the same
  amount, a lot is formed: shared/ledger/lots.py);
* its ``attributes``: the pending entry's, plus ``maturedAt``; the lot's
  ``expiresAt`` is the tenant policy's, **counted from maturity** (unless the rule
  gave an explicit expiry, which is kept);
* a ``settled-<entryId>`` record (resolution ``matured``): a refund that cancels
  the same entry writes the same record, so of the two exactly one lands.

Exactly once under redelivery, races and crashes: the idempotency key is
``mature:<entryId>`` (a second run, a second job instance, a run redone after a
kill -9 gets the first outcome back and writes nothing); the plan re-reads the
settlement record on the head it writes on (an append that lost a race
re-plans), so a refund landing first turns the maturation into a no-op.

Where to look (never a ledger scan): the **maturity calendar**, a read model fed
by the ledger's change feed (``MaturityCalendar.project``), one document per
(tenant, UTC hour of ``maturesAt``, customer): "visit this customer from this
hour on". It lives in the expiry calendar's container under its own partition
keys (``mature|<tenant>|<YYYY-MM-DDTHH>``, without a ``tenantId`` field, so the
expiry job never reads it), so no new container (nor Bicep) is needed. A
document too many costs one partition read, never a wrong entry.

Bounded: the ``maturation`` timer job (hourly) fans out one work item per tenant
(shared/jobs.py, shared/workitems.py); each slice visits at most ``PAGE``
customers of one calendar hour and stores its cursor. A tenant's watermark (the
first hour the next run reads, minus ``LOOKBACK_HOURS`` for change-feed lag) is
moved only when every customer of the run matured without error.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from shared.app.tenants import TenantDirectory
from shared.clock import Clock, iso, parse_iso
from shared.errors import NothingToMature
from shared.expiry.policy import policy_stamp
from shared.ledger.entries import ENTRY_DOC, EntryDraft, EntryType, Head, settlement_id
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.pending.window import MATURES_AT, is_window_earn, maturity_of
from shared.store.layout import EXPIRY_CALENDAR, LEDGER, SYSTEM, customer_pk
from shared.store.port import DocumentStore, Filter, PartitionBatch, Query, Upsert
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.pending")

CALENDAR_DOC = "maturityDue"
STATE_PK = "maturation"
PAGE = 200
ENTRY_PAGE = 10_000
LOOKBACK_HOURS = 2
MAX_UPSERTS_PER_BATCH = 100
SETTLEMENT_DOC = "settlement"


def hour_of(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def hour_pk(tenant_id: str, hour: datetime) -> str:
    return f"mature|{tenant_id}|{hour_of(hour).strftime('%Y-%m-%dT%H')}"


def due_hour(entry: dict[str, Any]) -> datetime | None:
    """The UTC hour from which the job should visit this entry's customer (None: never).
    An entry written after its maturity (late ingestion) is found from the hour it was written."""
    if not is_window_earn(entry):
        return None
    due = maturity_of(entry)
    assert due is not None
    written = parse_iso(entry["createdAt"]) if entry.get("createdAt") else due
    return hour_of(max(due, written))


class MaturityCalendar:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def project(self, docs: Iterable[dict[str, Any]]) -> int:
        """Put the customers of these ledger documents on the calendar (a projector subscriber)."""
        wanted: dict[str, dict[str, dict[str, Any]]] = {}
        for doc in docs:
            hour = due_hour(doc)
            if hour is None:
                continue
            pk = hour_pk(doc["tenantId"], hour)
            wanted.setdefault(pk, {})[doc["customerId"]] = {
                "id": doc["customerId"], "pk": pk, "docType": CALENDAR_DOC, "tenant": doc["tenantId"],
                "customerId": doc["customerId"], "hour": iso(hour)}
        work = [PartitionBatch(pk, [Upsert(row) for row in rows[start:start + MAX_UPSERTS_PER_BATCH]])
                for pk, by_customer in wanted.items()
                for rows in [list(by_customer.values())]
                for start in range(0, len(rows), MAX_UPSERTS_PER_BATCH)]
        if work:
            self._store.batches(EXPIRY_CALENDAR, work)
            for batch in work:
                if batch.error is not None:
                    raise batch.error
        return sum(len(batch.operations) for batch in work)

    def customers(self, tenant_id: str, hour: datetime, after: str | None, limit: int) -> list[str]:
        filters = (Filter("customerId", ">", after),) if after is not None else ()
        docs = self._store.query(EXPIRY_CALENDAR, Query(pk=hour_pk(tenant_id, hour), filters=filters,
                                                        order_by="customerId", limit=limit))
        return [doc["customerId"] for doc in docs]


@dataclass
class MaturationReport:
    customers: int = 0
    matured: int = 0
    points: int = 0
    duplicates: int = 0
    failed: list[str] = field(default_factory=list)


def open_window_earns(store: DocumentStore, tenant_id: str, customer_id: str) -> list[dict[str, Any]]:
    """The customer's window earns that no later entry settled, oldest first."""
    pk = customer_pk(tenant_id, customer_id)
    pending: dict[str, dict[str, Any]] = {}
    after = 0
    while True:
        page = store.query(LEDGER, Query(pk=pk, filters=(Filter("docType", "=", ENTRY_DOC), Filter("seq", ">", after)),
                                         order_by="seq", limit=ENTRY_PAGE))
        for entry in page:
            if is_window_earn(entry):
                pending[entry["id"]] = entry
            settled = entry.get("settlesEntryId")
            if settled:
                pending.pop(settled, None)
        if len(page) < ENTRY_PAGE:
            return list(pending.values())
        after = page[-1]["seq"]


def mature_key(entry_id: str) -> str:
    return f"mature:{entry_id}"


class Maturation:
    def __init__(self, store: DocumentStore, ledger: Ledger, tenants: TenantDirectory, clock: Clock) -> None:
        self._store = store
        self._ledger = ledger
        self._tenants = tenants
        self._clock = clock
        self.calendar = MaturityCalendar(store)

    # --- one customer's due earns ------------------------------------------------------

    def mature_customers(self, tenant_id: str, customer_ids: list[str], now: datetime | None = None,
                         report: MaturationReport | None = None) -> MaturationReport:
        """Mature every due window earn of these customers (idempotent); one group commit."""
        report = report if report is not None else MaturationReport()
        now = now or self._clock.now()
        tenant = self._tenants.get(tenant_id)
        requests: list[TransactionRequest] = []
        for customer_id in dict.fromkeys(customer_ids):
            report.customers += 1
            for entry in open_window_earns(self._store, tenant_id, customer_id):
                due = maturity_of(entry)
                if due is not None and due <= now:
                    # The expiry clock starts now, under the policy of the wallet it matures into.
                    requests.append(self._request(tenant_id, customer_id, entry, policy_stamp(
                        tenant.expiry_policy_of(entry.get("wallet")), tenant.time_zone, now)))
        if not requests:
            return report
        for request, outcome in zip(requests, self._ledger.append(requests)):
            if isinstance(outcome.error, NothingToMature):
                continue  # cancelled by a refund (or matured by a twin) meanwhile
            if outcome.error is not None:
                log.error("maturing a pending earn failed: %s", outcome.error.message,
                          extra=fields(job="maturation", tenant=tenant_id, error=outcome.error.code))
                if request.customer_id not in report.failed:
                    report.failed.append(request.customer_id)
            elif outcome.duplicate:
                report.duplicates += 1
            else:
                report.matured += 1
                report.points += outcome.entries[0]["signedAmount"]
        return report

    def _request(self, tenant_id: str, customer_id: str, held: dict[str, Any],
                 policy_expiry: str | None) -> TransactionRequest:
        held_id = held["id"]
        matured_at = iso(self._clock.now())

        def plan(head: Head) -> Plan:
            # On the head this is written on: a refund that cancelled it first wrote this record.
            if self._ledger.record(tenant_id, customer_id, settlement_id(held_id)) is not None:
                raise NothingToMature(f"pending entry {held_id} of customer {customer_id} is already settled")
            attributes = dict(held.get("attributes") or {})
            attributes["maturedAt"] = matured_at
            if "expiresAt" not in attributes and policy_expiry is not None:
                attributes["expiresAt"] = policy_expiry  # the expiry clock starts at maturity
            draft = EntryDraft(EntryType.EARN, held["signedAmount"], reference_order_id=held.get("referenceOrderId"),
                               reference_entry_id=held_id, settles_entry_id=held_id,
                               settles_amount=held["signedAmount"], rule_set_id=held.get("ruleSetId"),
                               rule_set_version=held.get("ruleSetVersion"), arm=held.get("arm"),
                               attributes=attributes, wallet=held.get("wallet"))
            record = {"id": settlement_id(held_id), "docType": SETTLEMENT_DOC, "settlesEntryId": held_id,
                      "resolution": "matured"}
            outcome = {"status": "matured", "customerId": customer_id, "entryId": held_id,
                       "points": held["signedAmount"], "orderId": held.get("referenceOrderId"),
                       "maturesAt": attributes.get(MATURES_AT)}
            return Plan([draft], outcome, [record])

        return TransactionRequest(tenant_id=tenant_id, customer_id=customer_id, idempotency_key=mature_key(held_id),
                                  fingerprint=fingerprint_of({"mature": held_id}), plan=plan)

    # --- the job: one tenant in slices (a work item's handler) ----------------------------

    def start(self, tenant_id: str) -> dict[str, Any]:
        """The cursor of a new run for the tenant: from its watermark (minus the look-back) to now's hour."""
        now = self._clock.now()
        state = self._store.read(SYSTEM, STATE_PK, _state_id(tenant_id)) or {}
        until = hour_of(now)
        if state.get("nextHour"):
            first = parse_iso(state["nextHour"]) - timedelta(hours=LOOKBACK_HOURS)
        else:
            # A tenant's first run: every window earn is due at least a day after it was
            # written, and the job runs hourly, so nothing lies before the look-back.
            first = until - timedelta(hours=LOOKBACK_HOURS)
        return {"hour": iso(first), "until": iso(until), "after": None, "customers": 0, "matured": 0,
                "points": 0, "failed": 0}

    def slice(self, tenant_id: str, cursor: dict[str, Any], page: int = PAGE) -> tuple[dict[str, Any], bool]:
        """Visit at most ``page`` customers of the cursor's hour; the next cursor and whether the run is done."""
        hour, until = parse_iso(cursor["hour"]), parse_iso(cursor["until"])
        if hour > until:
            return cursor, True
        customers = self.calendar.customers(tenant_id, hour, cursor["after"], page)
        report = self.mature_customers(tenant_id, customers) if customers else MaturationReport()
        cursor = dict(cursor, customers=cursor["customers"] + report.customers,
                      matured=cursor["matured"] + report.matured, points=cursor["points"] + report.points,
                      failed=cursor["failed"] + len(report.failed))
        if len(customers) == page:
            return dict(cursor, after=customers[-1]), False
        cursor = dict(cursor, hour=iso(hour + timedelta(hours=1)), after=None)
        if parse_iso(cursor["hour"]) <= until:
            return cursor, False
        if cursor["failed"] == 0:
            # The current hour is read again next run: its later earns are not due yet.
            self._store.upsert(SYSTEM, {"id": _state_id(tenant_id), "pk": STATE_PK, "docType": "maturationState",
                                        "tenantId": tenant_id, "nextHour": iso(until)})
        return cursor, True

    def run_tenant(self, tenant_id: str, page: int = PAGE, max_slices: int = 1_000_000) -> dict[str, Any]:
        """A whole run for one tenant, slice after slice (tests, the CLI, the benchmark)."""
        cursor = self.start(tenant_id)
        for _ in range(max_slices):
            cursor, done = self.slice(tenant_id, cursor, page)
            if done:
                break
        return cursor


def _state_id(tenant_id: str) -> str:
    return "tenant-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


__all__ = ["Maturation", "MaturationReport", "MaturityCalendar", "open_window_earns"]
