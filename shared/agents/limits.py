"""Daily counters of points an agent moved: per agent key and per customer.

A counter is one small document per tenant, day and subject (``system``
container, partition ``agent-counters:<tenant>``, expiring with the fraud
counters' rule) holding the total; each quote counted in it has a marker
document of its own beside it, written in the same partition batch as the
counter's new total. So counting a quote is idempotent (a retried execution, a
replayed approval count once) and bounded by ``limit`` under an ETag
precondition: of executions racing for the last points of a budget exactly as
many win as fit, never more. The counter stays the same size however many
quotes a day counts (it held them all: one agent key's busy day took it towards
Cosmos DB's 2 MB document limit, rewritten whole at every action); counters
written that way still count their quotes (``quotes``) until they expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from typing import Any

from shared.errors import BatchFailed, DocumentExists, NotFound, PreconditionFailed
from shared.store.contention import attempts
from shared.store.layout import SYSTEM
from shared.store.port import Create, Delete, DocumentStore, Operation, Upsert, read_many

RETRIES = 50
DOC_TYPE = "agentCounter"


@dataclass(frozen=True)
class Counted:
    ok: bool
    total: int  # the counter's total after the attempt


def day_of(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc):%Y-%m-%d}"


class DailyCounters:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    @staticmethod
    def _pk(tenant_id: str) -> str:
        return f"agent-counters:{tenant_id}"

    @staticmethod
    def _id(day: str, subject: str) -> str:
        return f"day-{day}:{subject}"

    @classmethod
    def _marker_id(cls, day: str, subject: str, quote_id: str) -> str:
        return f"{cls._id(day, subject)}:quote:{quote_id}"

    def _read(self, tenant_id: str, day: str, subject: str, quote_id: str
              ) -> tuple[dict[str, Any] | None, int | None]:
        """The counter and the points it counted for ``quote_id`` (None: not counted)."""
        pk = self._pk(tenant_id)
        counter, marker = read_many(self._store, SYSTEM, [(pk, self._id(day, subject)),
                                                           (pk, self._marker_id(day, subject, quote_id))])
        if marker is not None:
            return counter, int(marker["points"])
        legacy = (counter or {}).get("quotes", {})
        return counter, (int(legacy[quote_id]) if quote_id in legacy else None)

    def total(self, tenant_id: str, day: str, subject: str, excluding: str | None = None) -> int:
        """Points counted today for ``subject``, less those of quote ``excluding`` (an execution
        retried after a crash is checked against the others, not against itself)."""
        if excluding is None:
            doc = self._store.read(SYSTEM, self._pk(tenant_id), self._id(day, subject)) or {}
            return int(doc.get("points", 0))
        counter, own = self._read(tenant_id, day, subject, excluding)
        return int((counter or {}).get("points", 0)) - (own or 0)

    def add(self, tenant_id: str, day: str, subject: str, quote_id: str, points: int,
            limit: int | None) -> Counted:
        """Count ``points`` of ``quote_id`` unless the total would pass ``limit`` (None: no limit)."""
        assert points >= 0, "counters count points moved, never negative"
        pk, doc_id = self._pk(tenant_id), self._id(day, subject)
        for _ in attempts(RETRIES):
            current, counted = self._read(tenant_id, day, subject, quote_id)
            total = int((current or {}).get("points", 0))
            if counted is not None:
                return Counted(True, total)  # counted before: a retry
            if limit is not None and total + points > limit:
                return Counted(False, total)
            doc = {k: v for k, v in (current or {}).items() if not k.startswith("_")}
            doc.update({"id": doc_id, "pk": pk, "docType": DOC_TYPE, "tenantId": tenant_id, "day": day,
                        "subject": subject, "points": total + points})
            marker = {"id": self._marker_id(day, subject, quote_id), "pk": pk, "docType": DOC_TYPE,
                      "tenantId": tenant_id, "day": day, "subject": subject, "quoteId": quote_id, "points": points}
            counter_op = Create(doc) if current is None else Upsert(doc, if_match=current["_etag"])
            try:
                self._store.batch(SYSTEM, pk, [Create(marker), counter_op])
                return Counted(True, total + points)
            except (BatchFailed, PreconditionFailed, DocumentExists):
                continue  # another execution counted first: read again
        raise PreconditionFailed(f"the agent counter {doc_id} of {tenant_id} kept changing")

    def remove(self, tenant_id: str, day: str, subject: str, quote_id: str) -> None:
        """Give back a quote's points (its action was refused by the ledger)."""
        pk, doc_id = self._pk(tenant_id), self._id(day, subject)
        marker_id = self._marker_id(day, subject, quote_id)
        for _ in attempts(RETRIES):
            current, counted = self._read(tenant_id, day, subject, quote_id)
            if current is None or counted is None:
                return
            doc = {k: v for k, v in current.items() if not k.startswith("_")}
            doc["points"] = int(current["points"]) - counted
            operations: list[Operation] = [Upsert(doc, if_match=current["_etag"])]
            if quote_id in current.get("quotes", {}):  # a counter of before the markers
                doc["quotes"] = {k: v for k, v in current["quotes"].items() if k != quote_id}
            else:
                operations.insert(0, Delete(marker_id))
            try:
                self._store.batch(SYSTEM, pk, operations)
                return
            except (BatchFailed, PreconditionFailed, NotFound):
                continue
        raise PreconditionFailed(f"the agent counter {doc_id} of {tenant_id} kept changing")
