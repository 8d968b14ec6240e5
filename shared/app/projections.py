"""Projections: the ledger's change feed turned into read models.

The body of the Cosmos DB change-feed trigger, and of the local feed poller.
``Projector.apply`` takes changed ledger documents and maintains:

* ``balances``: one document per customer with the running totals of the
  newest entry seen (available, pending, lifetime earned, orders credited);
* ``orderstatus``: the final status of each order (credited, held, rejected);
  a held order's ``orderDecision`` record (its review) moves it to credited or
  rejected, and a redelivered hold never moves it back.

Idempotent and order-insensitive: a balance moves only to an entry with a
higher sequence number than the one it reflects (ETag-guarded, so two
projector instances cannot interleave), and an order's final status is
written whole. A redelivered or reordered change is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from shared.clock import Clock, iso
from shared.errors import DocumentExists, PreconditionFailed
from shared.ledger.entries import ENTRY_DOC, MARKER_DOC
from shared.ledger.service import fingerprint_of
from shared.store.contention import attempts
from shared.store.layout import BALANCES, ORDER_STATUS, SYSTEM, order_pk
from shared.store.port import Create, DocumentStore, PartitionBatch, Upsert, read_many
from shared.telemetry import metrics, tracing

BALANCE_ID = "balance"
FINAL_STATUSES = ("credited", "held", "rejected")
# A held order's review decision (written by shared/fraud/holds.py in the ledger).
ORDER_DECISION_DOC = "orderDecision"


@dataclass
class ProjectionReport:
    balances_updated: int = 0
    statuses_written: int = 0
    skipped: int = 0


class Projector:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        # Further read models fed by the same changes (the webhook outbox, issue 5):
        # each is called with the batch after the balances and statuses, and is idempotent.
        self.subscribers: list[Callable[[list[dict[str, Any]]], object]] = []

    def apply(self, docs: Iterable[dict[str, Any]]) -> ProjectionReport:
        docs = list(docs)
        if not tracing.enabled():
            return self._apply_all(docs)
        # One "projection" span per trace in the batch, child of its first ledger append
        # (the entries carry its context, ``traceContext``), so each order's trace reaches
        # its read model; they cover the whole batch's projection, which is when each
        # was projected. Per trace, not per entry: a 500-order request is one span.
        contexts = [c for c in dict.fromkeys(d.get("traceContext") for d in docs) if tracing.sampled(c)]
        first_of_trace: dict[str, str] = {}
        for context in contexts:
            first_of_trace.setdefault(context[3:35], context)  # "00-<trace id>-<span id>-<flags>"
        spans = [tracing.start("projection", context) for context in first_of_trace.values()]
        try:
            with tracing.span("projection batch", tracing.CONSUMER, links=tracing.links_from(contexts),
                              changes=len(docs)) as batch:
                try:
                    return self._apply_all(docs)
                except Exception as error:
                    for span in (batch, *spans):
                        tracing.fail(span, error)
                    raise
        finally:
            for span in spans:
                span.end()

    def _apply_all(self, docs: list[dict[str, Any]]) -> ProjectionReport:
        report = self._apply(docs)
        for subscriber in self.subscribers:
            subscriber(docs)
        # One lag per ledger transaction (its marker), measured once every read model has it.
        metrics.projection_lag([d["createdAt"] for d in docs if d.get("docType") == MARKER_DOC and d.get("createdAt")],
                               self._clock.now().timestamp())
        return report

    def _apply(self, docs: Iterable[dict[str, Any]]) -> ProjectionReport:
        report = ProjectionReport()
        newest: dict[str, dict[str, Any]] = {}
        statuses: list[dict[str, Any]] = []
        for doc in docs:
            kind = doc.get("docType")
            if kind == ENTRY_DOC:
                current = newest.get(doc["pk"])
                if current is None or doc["seq"] > current["seq"]:
                    newest[doc["pk"]] = doc
            elif kind == "order":
                if doc.get("status") == "held" and self._decided(doc):
                    continue  # a redelivered hold must not undo the review's decision
                statuses.append(_status_of(doc))
            elif kind == ORDER_DECISION_DOC:
                # A held order decided in review (shared/fraud/holds.py): credited or rejected.
                statuses.append(dict(_status_of(doc), reviewId=doc.get("reviewId")))
        if statuses:
            # Each order's status is its own partition: one group-committed call.
            work = [PartitionBatch(s["pk"], [Upsert(s)]) for s in statuses]
            self._store.batches(ORDER_STATUS, work)
            for batch in work:
                if batch.error is not None:
                    raise batch.error
            report.statuses_written = len(statuses)
        pending = list(newest.values())
        for _ in attempts(10):
            if not pending:
                return report
            pending = self._move_balances(pending, report)
        raise PreconditionFailed(f"{len(pending)} balance(s) kept changing under the projector")

    def _decided(self, record: dict[str, Any]) -> bool:
        status = self._store.read(ORDER_STATUS, order_pk(record["tenantId"], record["orderId"]), record["orderId"])
        return status is not None and status.get("reviewId") is not None

    def _move_balances(self, entries: list[dict[str, Any]], report: ProjectionReport) -> list[dict[str, Any]]:
        """Move each balance to its entry if the entry is newer; returns the entries
        that lost a race with another projector and must be looked at again."""
        work: list[tuple[dict[str, Any], PartitionBatch]] = []
        now = iso(self._clock.now())
        currents = read_many(self._store, BALANCES, [(entry["pk"], BALANCE_ID) for entry in entries])
        for entry, current in zip(entries, currents):
            if current is not None and current["lastSeq"] >= entry["seq"]:
                report.skipped += 1
                continue
            doc = {
                "id": BALANCE_ID, "pk": entry["pk"], "docType": "balance",
                "tenantId": entry["tenantId"], "customerId": entry["customerId"],
                "available": entry["runningBalance"], "pending": entry["runningPending"],
                "reserved": entry.get("runningReserved", 0),
                "lifetimeEarned": entry["runningLifetimeEarned"], "ordersCredited": entry["ordersCredited"],
                "lastSeq": entry["seq"], "lastEntryAt": entry["createdAt"], "projectedAt": now,
                **({"wallets": entry["runningWallets"]} if entry.get("runningWallets") else {}),
            }
            operation = Create(doc) if current is None else Upsert(doc, if_match=current["_etag"])
            work.append((entry, PartitionBatch(entry["pk"], [operation])))
        if work:
            self._store.batches(BALANCES, [batch for _, batch in work])
        retry = []
        for entry, batch in work:
            if batch.error is None:
                report.balances_updated += 1
            elif isinstance(batch.error, (DocumentExists, PreconditionFailed)):
                retry.append(entry)  # another projector moved it: look again
            else:
                raise batch.error
        return retry


def _status_of(record: dict[str, Any]) -> dict[str, Any]:
    tenant_id, order_id = record["tenantId"], record["orderId"]
    return {
        "id": order_id, "pk": order_pk(tenant_id, order_id), "docType": "orderStatus",
        "tenantId": tenant_id, "customerId": record["customerId"], "orderId": order_id,
        "status": record["status"], "points": record.get("points", 0),
        "transactionId": record.get("transactionId"), "ruleSetId": record.get("ruleSetId"),
        "ruleSetVersion": record.get("ruleSetVersion"), "arm": record.get("arm"),
        "reason": record.get("reason"), "acceptedAt": record.get("acceptedAt"),
        "decidedAt": record.get("createdAt"),
        # What the order was, so the API can tell a resend from a changed order under the same id.
        # Records written before ingest stored it carry the order only.
        "fingerprint": record.get("fingerprint") or (fingerprint_of(record["order"]) if record.get("order") else None),
    }


class ProjectorCheckpoint:
    """Where the local feed poller stands, and when it last caught up (``dataAsOf``)."""

    ID = "projector"

    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def load(self) -> dict[str, Any]:
        return self._store.read(SYSTEM, self.ID, self.ID) or {"lsn": 0, "caughtUpAt": None}

    def save(self, lsn: int, caught_up: bool) -> None:
        state = self.load()
        doc = {"id": self.ID, "pk": self.ID, "lsn": lsn,
               "caughtUpAt": iso(self._clock.now()) if caught_up else state.get("caughtUpAt")}
        self._store.upsert(SYSTEM, doc)
