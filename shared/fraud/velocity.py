"""Velocity windows: how much a customer (or a tenant) earned recently.

**Per customer: derived from the customer's own ledger, inside the plan.** The
amount earned in a window is the difference of the partition's *earned volume*
(``runningLifetimeEarned + runningPending``: committed earns, held earns, minus
refunds and rejected holds) between the head being appended to and the newest
entry written at or before the window's start. Both are in the customer's
partition, so the check is consistent with the append: the head passed to the
plan includes the same ingest call's earlier orders of that customer (written in
the same group commit), and a plan that loses a race is re-planned on the fresh
head. Approving a hold moves points from pending to lifetime: the volume does not
change, so an approval is not counted twice. One point read per window.

Distinct cards and devices come from the order records of the last 24 hours in
the partition, plus the orders of the same ingest call not yet written (passed in
by the caller; a set union, so one counted twice is still one).

**Per tenant: a counter.** No one partition sees a whole tenant, so tenant totals
are kept in counter documents (``system`` container, partition
``fraud-counters:<tenantId>``, one document per UTC hour and per UTC day, both
incremented in one ETag-guarded batch, so a day is always the sum of its hours). They
are incremented after each ingest call's append, by the points that call credited or
held, and read once per call; the call's own orders are added from memory. So the
tenant limit is a soft limit: concurrent ingest
instances see each other's points after their batches commit, and a process that
stops between the append and the increment under-counts that batch. That is the
trade we chose: an exact tenant-wide limit would serialise every earn of a tenant
through one document, which the per-customer partitioning exists to avoid.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared.clock import iso
from shared.errors import BatchFailed, DocumentExists, PreconditionFailed
from shared.ledger.entries import ENTRY_DOC, EntryType, Head
from shared.ledger.service import Ledger
from shared.store.contention import attempts
from shared.store.layout import LEDGER, SYSTEM, customer_pk
from shared.store.port import Create, DocumentStore, Filter, Operation, Query, Upsert, read_many

HOUR, DAY, MONTH = timedelta(hours=1), timedelta(days=1), timedelta(days=30)
MAX_RECORDS = 10_000
COUNTER_RETRIES = 20


def earned_volume(head: Head) -> int:
    return head.lifetime_earned + head.pending


class CustomerWindows:
    """Sums over one customer's ledger, ending at ``now``, for one plan."""

    def __init__(self, ledger: Ledger, store: DocumentStore, tenant_id: str, customer_id: str, head: Head,
                 now: datetime) -> None:
        self._ledger, self._store = ledger, store
        self._tenant_id, self._customer_id = tenant_id, customer_id
        self._head, self._now = head, now
        self._volumes: dict[datetime, int] = {}

    def volume_at(self, moment: datetime) -> int:
        if moment not in self._volumes:
            self._volumes[moment] = earned_volume(self._ledger.head_as_of(self._tenant_id, self._customer_id, moment))
        return self._volumes[moment]

    def earned_within(self, window: timedelta) -> int:
        """Points earned in ``(now - window, now]``, before the order being planned."""
        return earned_volume(self._head) - self.volume_at(self._now - window)

    def earned_between(self, older: timedelta, newer: timedelta) -> int:
        """Points earned in ``(now - older, now - newer]``."""
        return self.volume_at(self._now - newer) - self.volume_at(self._now - older)

    def identities(self, window: timedelta) -> tuple[set[str], set[str]]:
        """Card fingerprints and device ids on this customer's orders recorded in the window."""
        records = self._store.query(LEDGER, Query(
            pk=customer_pk(self._tenant_id, self._customer_id),
            filters=(Filter("docType", "=", "order"), Filter("createdAt", ">", iso(self._now - window))),
            limit=MAX_RECORDS))
        cards = {r["order"]["cardFingerprint"] for r in records if (r.get("order") or {}).get("cardFingerprint")}
        devices = {r["order"]["deviceId"] for r in records if (r.get("order") or {}).get("deviceId")}
        return cards, devices


def redemptions_within(store: DocumentStore, tenant_id: str, customer_id: str, now: datetime,
                       window: timedelta = HOUR) -> int:
    """Redemptions and conversions (direct or reserved: the debiting entry) in the window."""
    entries = store.query(LEDGER, Query(
        pk=customer_pk(tenant_id, customer_id),
        filters=(Filter("docType", "=", ENTRY_DOC), Filter("createdAt", ">", iso(now - window)),
                 Filter("entryType", "in", [EntryType.REDEEM.value, EntryType.CONVERT.value])),
        limit=MAX_RECORDS))
    return sum(1 for e in entries if e["signedAmount"] < 0)


class TenantCounters:
    """Points earned per tenant per UTC hour and UTC day (see the module doc for the trade-off)."""

    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    @staticmethod
    def _ids(now: datetime) -> tuple[str, str]:
        return f"hour-{now:%Y-%m-%dT%H}", f"day-{now:%Y-%m-%d}"

    @staticmethod
    def _pk(tenant_id: str) -> str:
        return f"fraud-counters:{tenant_id}"

    def totals(self, tenant_id: str, now: datetime) -> tuple[int, int]:
        hour_id, day_id = self._ids(_utc(now))
        hour = self._store.read(SYSTEM, self._pk(tenant_id), hour_id)
        day = self._store.read(SYSTEM, self._pk(tenant_id), day_id)
        return (hour or {}).get("points", 0), (day or {}).get("points", 0)

    def add(self, tenant_id: str, now: datetime, points: int) -> None:
        """Add ``points`` to the hour's and the day's counters in one batch of the tenant's
        partition: the day always equals the sum of its hours (two writes could part them)."""
        if points == 0:
            return
        pk = self._pk(tenant_id)
        ids = self._ids(_utc(now))
        for _ in attempts(COUNTER_RETRIES):
            currents = read_many(self._store, SYSTEM, [(pk, counter_id) for counter_id in ids])
            writes: list[Operation] = []
            for counter_id, current in zip(ids, currents, strict=True):
                doc = {"id": counter_id, "pk": pk, "docType": "fraudCounter", "tenantId": tenant_id,
                       "points": (current or {}).get("points", 0) + points}
                writes.append(Create(doc) if current is None else Upsert(doc, if_match=current["_etag"]))
            try:
                self._store.batch(SYSTEM, pk, writes)
                return
            except (BatchFailed, PreconditionFailed, DocumentExists):
                continue  # another ingest instance counted first: read again
        raise PreconditionFailed(f"the fraud counters {ids} of {tenant_id} kept changing")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


__all__ = ["CustomerWindows", "TenantCounters", "redemptions_within", "earned_volume",
           "HOUR", "DAY", "MONTH"]
