"""Tier history: one immutable record per tier change, in the customer's ledger partition.

Why the ledger container: it is append-only (the store refuses any update or
delete), partitioned per customer, and on the change feed, so a history record
reaches the projector like any ledger document: the ``tier.changed`` webhook is
published from it (message id derived from the record, so a redelivered change
is a no-op) and the ``tierhistory`` export pages it like transactions. Ledger
readers select by ``docType`` (``entry``, ``order``), so they never see these.

A record's id is its per-customer change number (``tierchange-000007``): two
writers deciding a change on the same state race on one id and exactly one
wins; the loser re-reads and decides again (like the ledger's sequence number).
The newest record is the customer's tier; the profile's ``tier`` field is a
copy of it, kept for the rule language and the customer API.
"""

from __future__ import annotations

from typing import Any

from shared.store.layout import LEDGER, customer_pk
from shared.store.port import DocumentStore, Filter, Query

TIER_CHANGE_DOC = "tierChange"
ID_PREFIX = "tierchange-"

REASON_THRESHOLD_REACHED = "threshold-reached"
REASON_BELOW_THRESHOLD = "below-threshold"
REASON_TIER_REMOVED = "tier-removed"

VIEW_FIELDS = ("id", "customerId", "changeSeq", "fromTier", "toTier", "direction", "reason", "trigger",
               "qualifying", "evaluationAt", "belowSince", "programVersion", "at")


def change_id(seq: int) -> str:
    assert 1 <= seq < 10**9
    return f"{ID_PREFIX}{seq:09d}"


class TierHistory:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def newest(self, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
        docs = self._store.query(LEDGER, Query(pk=customer_pk(tenant_id, customer_id),
                                               filters=(Filter("docType", "=", TIER_CHANGE_DOC),),
                                               order_by="id", descending=True, limit=1))
        return docs[0] if docs else None

    def list(self, tenant_id: str, customer_id: str, *, before_seq: int | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        filters = [Filter("docType", "=", TIER_CHANGE_DOC)]
        if before_seq is not None:
            filters.append(Filter("id", "<", change_id(before_seq)))
        return self._store.query(LEDGER, Query(pk=customer_pk(tenant_id, customer_id), filters=tuple(filters),
                                               order_by="id", descending=True, limit=limit))

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Create the record; ``DocumentExists`` if that change number is taken (a lost race)."""
        doc = dict(record, id=change_id(record["changeSeq"]), docType=TIER_CHANGE_DOC,
                   pk=customer_pk(record["tenantId"], record["customerId"]), createdAt=record["at"])
        return self._store.create(LEDGER, doc)


def view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in VIEW_FIELDS}
