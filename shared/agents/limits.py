"""Daily counters of points an agent moved: per agent key and per customer.

A counter is one small document per tenant, day and subject (``system``
container, partition ``agent-counters:<tenant>``, expiring with the fraud
counters' rule). It holds the total and the quotes counted in it, so counting a
quote is idempotent (a retried execution, a replayed approval count once) and
bounded by ``limit`` under an ETag precondition: of executions racing for the
last points of a budget exactly as many win as fit, never more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from shared.errors import DocumentExists, PreconditionFailed
from shared.store.contention import attempts
from shared.store.layout import SYSTEM
from shared.store.port import DocumentStore

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

    def total(self, tenant_id: str, day: str, subject: str, excluding: str | None = None) -> int:
        """Points counted today for ``subject``, less those of quote ``excluding`` (an execution
        retried after a crash is checked against the others, not against itself)."""
        doc = self._store.read(SYSTEM, self._pk(tenant_id), self._id(day, subject)) or {}
        own = int(doc.get("quotes", {}).get(excluding, 0)) if excluding is not None else 0
        return int(doc.get("points", 0)) - own

    def add(self, tenant_id: str, day: str, subject: str, quote_id: str, points: int,
            limit: int | None) -> Counted:
        """Count ``points`` of ``quote_id`` unless the total would pass ``limit`` (None: no limit)."""
        assert points >= 0, "counters count points moved, never negative"
        pk, doc_id = self._pk(tenant_id), self._id(day, subject)
        for _ in attempts(RETRIES):
            current = self._store.read(SYSTEM, pk, doc_id)
            quotes = dict((current or {}).get("quotes", {}))
            total = int((current or {}).get("points", 0))
            if quote_id in quotes:
                return Counted(True, total)  # counted before: a retry
            if limit is not None and total + points > limit:
                return Counted(False, total)
            quotes[quote_id] = points
            doc = {"id": doc_id, "pk": pk, "docType": DOC_TYPE, "tenantId": tenant_id, "day": day,
                   "subject": subject, "points": total + points, "quotes": quotes}
            try:
                if current is None:
                    self._store.create(SYSTEM, doc)
                else:
                    self._store.upsert(SYSTEM, doc, if_match=current["_etag"])
                return Counted(True, total + points)
            except (PreconditionFailed, DocumentExists):
                continue  # another execution counted first: read again
        raise PreconditionFailed(f"the agent counter {doc_id} of {tenant_id} kept changing")

    def remove(self, tenant_id: str, day: str, subject: str, quote_id: str) -> None:
        """Give back a quote's points (its action was refused by the ledger)."""
        pk, doc_id = self._pk(tenant_id), self._id(day, subject)
        for _ in attempts(RETRIES):
            current = self._store.read(SYSTEM, pk, doc_id)
            if current is None or quote_id not in current.get("quotes", {}):
                return
            quotes = dict(current["quotes"])
            points = quotes.pop(quote_id)
            doc = {k: v for k, v in current.items() if not k.startswith("_")}
            doc.update(points=int(current["points"]) - int(points), quotes=quotes)
            try:
                self._store.upsert(SYSTEM, doc, if_match=current["_etag"])
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"the agent counter {doc_id} of {tenant_id} kept changing")
