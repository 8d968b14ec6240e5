"""The poison store: messages and changes that could not be processed, kept for
inspection and replay instead of being dropped.

Used by ingestion for malformed bus messages and for batches that failed every
retry, and by the projection trigger for change batches that failed every
retry. Entries live in the document store's ``poison`` container (partitioned
by tenant, ``_unknown`` when the tenant cannot be read from the message).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from shared.clock import Clock, iso
from shared.errors import DocumentExists
from shared.store.layout import POISON
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry import metrics

UNKNOWN_TENANT = "_unknown"


class PoisonStore:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def put(self, source: str, body: Any, reason: str, tenant_id: str | None = None) -> str:
        """Keep ``body`` for replay; its id. Once per message: the id is a digest of the source
        and the body, so a batch re-run (in-process retries, the host's retries, Event Hubs
        redelivering after a recycle) finds the item there and adds nothing, where random ids
        made one bad message into one item per re-run (an outside review: without bound while
        Cosmos DB throttled). The first reason stays."""
        tenant = tenant_id or _tenant_of(body) or UNKNOWN_TENANT
        stored = _storable(body)
        digest = hashlib.sha256(json.dumps([source, stored], sort_keys=True, default=str).encode()).hexdigest()
        poison_id = "poison-" + digest[:32]
        try:
            self._store.create(POISON, {
                "id": poison_id,
                "pk": tenant,
                "docType": "poison",
                "tenantId": tenant,
                "source": source,
                "body": stored,
                "reason": reason[:2000],
                "createdAt": iso(self._clock.now()),
            })
        except DocumentExists:
            return poison_id  # this very message, kept already
        metrics.poisoned(source)
        return poison_id

    def list(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return self._store.query(POISON, Query(pk=tenant_id, order_by="createdAt", limit=limit))

    def list_all(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._store.query(POISON, Query(pk=None, filters=(Filter("docType", "=", "poison"),),
                                               order_by="createdAt", limit=limit))

    def remove(self, tenant_id: str, poison_id: str) -> None:
        self._store.delete(POISON, tenant_id, poison_id)


def _storable(body: Any) -> Any:
    """What a broken message can be stored as: JSON as is, raw bytes as base64."""
    if isinstance(body, (bytes, bytearray)):
        return {"encoding": "base64", "data": base64.b64encode(bytes(body)).decode()}
    try:
        json.dumps(body)
    except (TypeError, ValueError):
        return {"encoding": "repr", "data": repr(body)[:100_000]}
    return body


def _tenant_of(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("tenantId"), str) and 0 < len(body["tenantId"]) <= 64:
        return body["tenantId"]
    return None
