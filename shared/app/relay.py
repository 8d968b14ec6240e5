"""The order relay: publishes claimed orders whose publish was not confirmed.

The intake claims an order (shared/app/claims.py), publishes it, then confirms
by removing the claim's ``publishDue``. A crash, a bus outage or a lost answer
between the claim and the confirmation leaves the claim with ``publishDue``
set: durable, but perhaps never on the bus. ``OrderRelay.run_once`` (the
``order-relay`` timer job, shared/jobs.py) finds the claims whose ``publishDue``
has passed, publishes them, and confirms each (ETag-guarded, so it never
overwrites the projector's final status).

Why a sweeper and not an outbox relayed from the change feed: ``orderstatus``
has no change feed (and cosmosdb-server's never advances, so it could not be
tested here), while the timer jobs already run in both worlds. The cost is a
bound rather than near-immediacy: a stranded claim is published within
``RELAY_GRACE`` (30 s, so the intake's own publish is not raced in normal
operation) plus one job period (local: 5 s; Azure: 15 s), as long as the bus
takes it.

Safe to run twice and to race the original publish: a second message of an
order carries the same idempotency key and fingerprint, so ingestion replays
the ledger marker and credits nothing twice. Messages of one customer may
arrive out of order when relayed; each order is still credited once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.app.claims import CLAIM_DOC, PUBLISH_DUE, published
from shared.bus.port import BusMessage, OrderBus
from shared.clock import Clock, iso
from shared.errors import PreconditionFailed
from shared.schemas.registry import EventSchemaViolation
from shared.store.layout import ORDER_STATUS, customer_pk
from shared.store.port import DocumentStore, Filter, PartitionBatch, Query, Upsert
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.relay")

BATCH = 500


@dataclass
class RelayReport:
    published: int = 0
    confirmed: int = 0


class OrderRelay:
    def __init__(self, store: DocumentStore, bus: OrderBus, clock: Clock) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock

    def run_once(self, limit: int = BATCH) -> RelayReport:
        """Publish up to ``limit`` overdue claims (oldest due first). A bus failure
        raises: nothing is confirmed and the next run tries again."""
        report = RelayReport()
        due = self._store.query(ORDER_STATUS, Query(
            pk=None, filters=(Filter(PUBLISH_DUE, "<=", iso(self._clock.now())),), order_by=PUBLISH_DUE, limit=limit))
        claims = [c for c in due if c.get("docType") == CLAIM_DOC and c.get("order") is not None]
        assert len(claims) == len(due), "only order claims carry publishDue"
        if not claims:
            return report
        messages = [BusMessage(customer_pk(c["tenantId"], c["customerId"]), {
            "type": "order.received", "version": 1, "tenantId": c["tenantId"],
            "acceptedAt": c["acceptedAt"], "order": c["order"]}) for c in claims]
        try:
            self._bus.publish(messages)
        except EventSchemaViolation as violation:
            # The valid ones are published, the others kept in the poison store
            # (replay republishes them): none is left for the relay.
            log.error("relay: a claimed order failed its event schema: %s", violation.message,
                      extra=fields(source="relay", error=violation.code))
        report.published = len(messages)
        log.warning("relay: published %d claimed order(s) whose publish was not confirmed", len(messages),
                    extra=fields(source="relay", count=len(messages)))
        marks = [PartitionBatch(c["pk"], [Upsert(published(c), if_match=c["_etag"])]) for c in claims]
        self._store.batches(ORDER_STATUS, marks)
        for batch in marks:
            if batch.error is None:
                report.confirmed += 1
            elif not isinstance(batch.error, PreconditionFailed):  # moved on meanwhile: nothing to confirm
                # Published but not confirmed: the next run publishes it again, which is harmless.
                log.warning("relay: could not confirm a claim: %s", batch.error.message,
                            extra=fields(source="relay", claim=batch.pk, error=batch.error.code))
        return report
