"""The expiry calendar: which customers the expiry job must visit on which day.

A read model fed by the ledger's change feed (a ``Projector`` subscriber), so
the daily job reads only the customers that have something to expire instead
of scanning every entry of every tenant. One document per (tenant, UTC day,
customer) in the ``expirycalendar`` container, partition ``tenantId:YYYY-MM-DD``,
id = customer id. It says "visit this customer on or after this day"; the job
then replays the customer's ledger (the truth) and expires what is due, so a
calendar document too many costs one replay and never a wrong entry.

Which entries put a customer on the calendar, and on which day (``due_day``):

* a credit with ``attributes.expiresAt`` (an earn, a held earn, a stamped
  ADJUST): the UTC day of its expiry, or the day it was written if that is
  later (a lot written already expired is still found: the job's look-back
  window starts at its last finished day, never earlier than the writes);
* a RELEASE, a voucher's refund (a positive ADJUST naming its purchase), or an
  approval of a held earn without its own expiry: the day it was written (it may
  refill or form a lot that is already past its expiry).

Idempotent: a redelivered change rewrites the same document. Rebuildable: it is
a function of the ledger (replay the change feed from the start).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any, Iterable

from shared.clock import parse_iso
from shared.ledger.entries import ENTRY_DOC, EntryType
from shared.ledger.lots import expiry_of
from shared.store.layout import EXPIRY_CALENDAR
from shared.store.port import DocumentStore, Filter, PartitionBatch, Query, Upsert

CALENDAR_DOC = "expiryDue"
MAX_UPSERTS_PER_BATCH = 100


def day_pk(tenant_id: str, day: date) -> str:
    return f"{tenant_id}:{day.isoformat()}"


def due_day(entry: dict[str, Any]) -> date | None:
    """The UTC day from which the job should look at this entry's customer (None: never)."""
    if entry.get("docType") != ENTRY_DOC or entry.get("signedAmount", 0) <= 0:
        return None
    written = parse_iso(entry["createdAt"]).date() if entry.get("createdAt") else None
    expires: datetime | None = expiry_of(entry)
    if expires is not None:
        day = expires.date()
        return max(day, written) if written else day
    if entry.get("entryType") == EntryType.RELEASE.value or entry.get("settlesEntryId"):
        return written
    if entry.get("entryType") == EntryType.ADJUST.value and entry.get("referenceEntryId"):
        return written  # a voucher's refund gives back to its purchase's lots, maybe expired ones
    return None


class ExpiryCalendar:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def project(self, docs: Iterable[dict[str, Any]]) -> int:
        """Put the customers of these ledger documents on the calendar; returns documents written."""
        wanted: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for doc in docs:
            day = due_day(doc)
            if day is None:
                continue
            pk = day_pk(doc["tenantId"], day)
            wanted[pk][doc["customerId"]] = {
                "id": doc["customerId"], "pk": pk, "docType": CALENDAR_DOC, "tenantId": doc["tenantId"],
                "customerId": doc["customerId"], "day": day.isoformat()}
        work: list[PartitionBatch] = []
        for pk, by_customer in wanted.items():
            rows = list(by_customer.values())
            for start in range(0, len(rows), MAX_UPSERTS_PER_BATCH):
                work.append(PartitionBatch(pk, [Upsert(row) for row in rows[start:start + MAX_UPSERTS_PER_BATCH]]))
        if work:
            self._store.batches(EXPIRY_CALENDAR, work)
            for batch in work:
                if batch.error is not None:
                    raise batch.error
        return sum(len(batch.operations) for batch in work)

    def customers(self, tenant_id: str, day: date, after: str | None, limit: int) -> list[str]:
        """A page of the customers due on ``day``, by customer id, after ``after``."""
        filters = (Filter("customerId", ">", after),) if after is not None else ()
        docs = self._store.query(EXPIRY_CALENDAR, Query(pk=day_pk(tenant_id, day), filters=filters,
                                                        order_by="customerId", limit=limit))
        return [doc["customerId"] for doc in docs]

    def first_day(self, tenant_id: str) -> date | None:
        """The tenant's earliest calendar day (once, when the job first meets a tenant)."""
        docs = self._store.query(EXPIRY_CALENDAR, Query(pk=None, filters=(Filter("tenantId", "=", tenant_id),),
                                                        order_by="day", limit=1))
        return date.fromisoformat(docs[0]["day"]) if docs else None
