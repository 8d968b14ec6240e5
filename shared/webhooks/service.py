"""Webhook endpoints, the outbox and the delivery log of a tenant.

Endpoints (``webhookendpoints``, partition = tenant): URL (stored in RFC 3986
form, ``shared.webhooks.urls``, and checked by ``shared.webhooks.ssrf`` at
registration and at every delivery), wanted event
types, description, status (``active`` | ``disabled`` with a reason), and the
sealed secrets (``shared.webhooks.signing``). The secret is returned once, by
``register`` and ``rotate_secret``; it is never stored in the clear, never
logged and never listed.

Outbox: ``publish`` (and ``project``, the change-feed subscriber) writes one
message (``webhookmessages``, id derived from the event's source so a
redelivered change writes nothing new) and one delivery task per subscribed
active endpoint (``webhookdeliveries``, id ``<messageId>.<endpointId>``). The
delivery worker (``shared.webhooks.delivery``) sends them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets as _secrets
from datetime import datetime, timedelta
from typing import Any, Iterable

from shared.app.tenant_changes import TenantCache
from shared.audit.log import AuditLog
from shared.clock import Clock, iso, parse_iso
from shared.errors import BatchFailed, Conflict, DocumentExists, NotFound, PreconditionFailed, StoreError, ValidationFailed
from shared.keys.port import KeyProvider
from shared.ledger.chain import sorted_ascii_json
from shared.schemas.registry import REGISTRY
from shared.store.contention import attempts
from shared.store.layout import (
    DEFAULT_TTL,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
    WEBHOOK_MESSAGES,
    attempt_pks,
    delivery_pk,
    message_pk,
)
from shared.store.port import Create, Delete, DocumentStore, Filter, Query, Upsert
from shared.store.replace import Change
from shared.store.pages import read_all
from shared.webhooks.events import (ENDPOINT_DISABLED, EVENT_TYPES, RULESET_ACTIVATED,
                                    TIER_CHANGED, Event, events_from_ledger, schema_name, subscribes)
from shared.webhooks.outbox import OutboxMarker
from shared.webhooks.signing import SecretCache, format_secret, new_secret, seal_secret
from shared.webhooks.ssrf import Resolver, TestAllowance, check_url
from shared.webhooks.urls import normalise_url
from shared.telemetry.logs import fields

# A message's body text (sorted keys, no spaces, ASCII): one encoder for every message.
_BODY = json.JSONEncoder(sort_keys=True, separators=(",", ":"))

log = logging.getLogger("accrue.webhooks")

MAX_ENDPOINTS_PER_TENANT = 50
MAX_DESCRIPTION = 500
DEFAULT_GRACE = timedelta(hours=24)
MAX_GRACE = timedelta(days=7)
# The current secret and the one it replaced (during its grace): never more signatures than this.
MAX_LIVE_SECRETS = 2
ENDPOINT_CACHE_SECONDS = 5.0
# Why the delivery worker disables an endpoint: it answered 410 Gone; it failed for five days.
DISABLE_REASONS = ("gone", "failing")


ENDPOINT_DOC = "webhookEndpoint"
# One per registered endpoint, id ``slot-NN``: what holds the per-tenant cap under concurrency.
SLOT_DOC = "webhookSlot"


def _slot_id(slot: int) -> str:
    return f"slot-{slot:02d}"


def _slot_doc(tenant_id: str, slot: int, endpoint: dict[str, Any]) -> dict[str, Any]:
    # status "slot": never "active" or "disabled", so the delivery worker's and the status
    # page's cross-tenant queries (which select by status) never see a slot. createdAt: the
    # partition is read ordered by it, and Cosmos DB's ORDER BY leaves out documents without it.
    return {"id": _slot_id(slot), "pk": tenant_id, "docType": SLOT_DOC, "tenantId": tenant_id,
            "status": "slot", "slot": slot, "endpointId": endpoint["id"], "createdAt": endpoint["createdAt"]}


def message_id(tenant_id: str, source_id: str) -> str:
    digest = hashlib.sha256(f"{tenant_id}\x00{source_id}".encode()).digest()[:16]
    return "msg_" + base64.b32encode(digest).decode().rstrip("=").lower()


def endpoint_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What tenant-admins see of an endpoint: never a secret, sealed or not."""
    view = {k: doc.get(k) for k in ("id", "url", "eventTypes", "description", "status", "disabledReason",
                                    "disabledAt", "failingSince", "createdAt", "updatedAt", "secretVersion")}
    view["secrets"] = [{"version": s["version"], "createdAt": s.get("createdAt"), "expiresAt": s.get("expiresAt")}
                       for s in doc.get("secrets", [])]
    return view


class WebhookService:
    def __init__(self, store: DocumentStore, clock: Clock, keys: KeyProvider, *, resolver: Resolver | None = None,
                 allowance: TestAllowance | None = None, audit: AuditLog | None = None) -> None:
        self._store = store
        self._clock = clock
        self._keys = keys
        self.audit = audit  # where automatic disables are recorded (the tenant's audit log)
        self.resolver = resolver
        self.allowance = allowance
        self.secrets = SecretCache()
        # The tenant's active endpoints (every ledger change asks).
        self.cache: TenantCache[list[dict[str, Any]]] = TenantCache(ENDPOINT_CACHE_SECONDS)
        # When the earliest delivery may be due: the idle delivery timer's one point read.
        self.outbox = OutboxMarker(store, clock)

    # --- endpoints -------------------------------------------------------------------

    def _check_types(self, event_types: Iterable[str]) -> list[str]:
        wanted = sorted(set(event_types))
        unknown = [t for t in wanted if t not in EVENT_TYPES]
        if not wanted or unknown:
            raise ValidationFailed(f"event types must be a non-empty subset of {', '.join(EVENT_TYPES)}"
                                   + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        return wanted

    def _check_url(self, url: str) -> str:
        """The URL as it is stored and sent: normalised (RFC 3986), then checked by the SSRF guard."""
        normalised = normalise_url(url)
        check_url(normalised, self.resolver, self.allowance)
        return normalised

    def register(self, tenant_id: str, url: str, event_types: Iterable[str], description: str = "") -> tuple[dict, str]:
        """A new endpoint and its secret (``whsec_...``), which is shown only here."""
        types = self._check_types(event_types)
        url = self._check_url(url)
        if len(description) > MAX_DESCRIPTION:
            raise ValidationFailed(f"description: at most {MAX_DESCRIPTION} characters")
        endpoint_id = "ep_" + _secrets.token_hex(10)
        raw = new_secret()
        now = iso(self._clock.now())
        doc = {
            "id": endpoint_id, "pk": tenant_id, "docType": ENDPOINT_DOC, "tenantId": tenant_id,
            "url": url, "eventTypes": types, "description": description, "status": "active",
            "disabledReason": None, "failingSince": None, "secretVersion": 1,
            "secrets": [dict(seal_secret(self._keys, tenant_id, endpoint_id, 1, raw), createdAt=now, expiresAt=None)],
            "createdAt": now, "updatedAt": now,
        }
        self._create_in_a_free_slot(tenant_id, doc)
        self.cache.invalidate(tenant_id)
        return endpoint_view(doc), format_secret(raw)

    def _create_in_a_free_slot(self, tenant_id: str, doc: dict[str, Any]) -> None:
        """Create the endpoint together with one of the tenant's ``MAX_ENDPOINTS_PER_TENANT``
        slot documents, in one partition batch.

        Counting the endpoints and then creating one lets concurrent registrations all see 49
        and all succeed; a slot is a document id, so two writers cannot both create it and the
        cap holds under any concurrency. Endpoints created before slots existed are given one
        first (``_slot_legacy``), so they count too."""
        for _ in range(MAX_ENDPOINTS_PER_TENANT + 5):
            docs = self._partition(tenant_id)
            endpoints = [d for d in docs if d.get("docType") == ENDPOINT_DOC]
            if len(endpoints) >= MAX_ENDPOINTS_PER_TENANT:
                raise Conflict(f"a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} endpoints")
            taken = {d["slot"] for d in docs if d.get("docType") == SLOT_DOC}
            if any("slot" not in e for e in endpoints):
                self._slot_legacy(tenant_id, endpoints, taken)
                continue
            free = [n for n in range(MAX_ENDPOINTS_PER_TENANT) if n not in taken]
            assert free, "fewer endpoints than the cap but every slot taken: a slot outlived its endpoint"
            slot = _secrets.choice(free)  # spread concurrent writers over the free slots
            try:
                self._store.batch(WEBHOOK_ENDPOINTS, tenant_id, [
                    Create(_slot_doc(tenant_id, slot, doc)), Create(dict(doc, slot=slot))])
                return
            except (BatchFailed, DocumentExists):
                continue  # another registration took that slot: look again
        raise Conflict("the tenant's webhook endpoints kept changing; try again")

    def _slot_legacy(self, tenant_id: str, endpoints: list[dict[str, Any]], taken: set[int]) -> None:
        for endpoint in endpoints:
            if "slot" in endpoint:
                continue
            free = [n for n in range(MAX_ENDPOINTS_PER_TENANT) if n not in taken]
            if not free:
                return
            try:
                self._store.batch(WEBHOOK_ENDPOINTS, tenant_id, [
                    Create(_slot_doc(tenant_id, free[0], endpoint)),
                    Upsert(dict(endpoint, slot=free[0]), if_match=endpoint["_etag"])])
            except (BatchFailed, DocumentExists, PreconditionFailed):
                return  # raced with another writer: the caller reads the partition again
            taken.add(free[0])

    def _partition(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._store.query(WEBHOOK_ENDPOINTS, Query(pk=tenant_id, order_by="createdAt", limit=1000))

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        return [d for d in self._partition(tenant_id) if d.get("docType") == ENDPOINT_DOC]

    def get(self, tenant_id: str, endpoint_id: str) -> dict[str, Any]:
        doc = self._store.read(WEBHOOK_ENDPOINTS, tenant_id, endpoint_id)
        if doc is None or doc.get("docType") != ENDPOINT_DOC:
            raise NotFound(f"webhook endpoint {endpoint_id!r} does not exist")
        return doc

    def _change(self, tenant_id: str, endpoint_id: str, change) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        for _ in attempts():
            doc = self.get(tenant_id, endpoint_id)
            updated = change(dict(doc))
            if updated is None:
                return doc
            updated["updatedAt"] = iso(self._clock.now())
            try:
                saved = self._store.upsert(WEBHOOK_ENDPOINTS, updated, if_match=doc["_etag"])
            except PreconditionFailed:
                continue
            self.cache.invalidate(tenant_id)
            return saved
        raise Conflict(f"webhook endpoint {endpoint_id!r} kept changing; try again")

    def update(self, tenant_id: str, endpoint_id: str, *, url: str | None = None,
               event_types: Iterable[str] | None = None, description: str | None = None,
               enabled: bool | None = None) -> dict[str, Any]:
        return self.change(tenant_id, endpoint_id, url=url, event_types=event_types, description=description,
                           enabled=enabled).after

    def change(self, tenant_id: str, endpoint_id: str, *, url: str | None = None,
               event_types: Iterable[str] | None = None, description: str | None = None,
               enabled: bool | None = None) -> Change:
        """``update`` as (before, after) views: a change that leaves the endpoint as it is writes
        nothing (``changed`` False), and a lost ETag race applies it again on what won."""
        types = self._check_types(event_types) if event_types is not None else None
        if url is not None:
            url = self._check_url(url)
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise ValidationFailed(f"description: at most {MAX_DESCRIPTION} characters")

        read: dict[str, Any] = {}

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            read.update(before=dict(doc))
            if url is not None:
                doc["url"] = url
            if types is not None:
                doc["eventTypes"] = types
            if description is not None:
                doc["description"] = description
            if enabled is True:
                doc.update(status="active", disabledReason=None, failingSince=None, disabledAt=None,
                           disabledAnnounce=None)
            elif enabled is False and doc["status"] != "disabled":
                doc.update(status="disabled", disabledReason="disabled by a tenant-admin")
            return None if doc == read["before"] else doc

        saved = self._change(tenant_id, endpoint_id, change)
        if enabled is True:
            self.outbox.note_due()  # deliveries left pending while it was disabled are due again
        before = read["before"]
        return Change(endpoint_view(before), endpoint_view(saved), saved.get("_etag") != before.get("_etag"))

    def disable(self, tenant_id: str, endpoint_id: str, reason: str) -> None:
        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc["status"] == "disabled":
                return None
            return dict(doc, status="disabled", disabledReason=reason)

        self._change(tenant_id, endpoint_id, change)

    # --- automatic disabling (the delivery worker) ---------------------------------

    def disabled_fields(self, reason: str, detail: str) -> dict[str, Any]:
        """The fields an automatic disable sets; ``disabledAnnounce`` stays ``pending`` until
        ``announce_disabled`` has recorded and announced it (a sweep retries if it never did)."""
        assert reason in DISABLE_REASONS, reason
        return {"status": "disabled", "disabledReason": detail, "disabledCode": reason,
                "disabledAt": iso(self._clock.now()), "disabledAnnounce": "pending"}

    def auto_disable(self, tenant_id: str, endpoint_id: str, reason: str, detail: str) -> bool:
        """Disable an active endpoint for ``reason`` (``gone`` | ``failing``), record it in the
        tenant's audit log and announce it to the other endpoints; True if this call disabled it
        (two workers seeing the same 410: one disables and announces, the other does nothing)."""
        fields = self.disabled_fields(reason, detail)
        changed: list[dict[str, Any]] = []

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc["status"] != "active":
                return None
            return dict(doc, **fields)

        try:
            doc = self._change(tenant_id, endpoint_id, lambda d: _keep(changed, change(d)))
        except NotFound:
            return False  # deleted meanwhile: nothing to disable, nobody to tell
        if not changed or doc.get("disabledAnnounce") != "pending":
            return False
        self.announce_or_leave(doc)
        return True

    def announce_or_leave(self, doc: dict[str, Any]) -> None:
        """``announce_disabled`` right after disabling; if it fails, the ``pending`` mark stays and
        the worker's sweep announces later: the disable itself (already saved) stands either way."""
        try:
            self.announce_disabled(doc)
        except Exception:  # noqa: BLE001 - the sweep retries; the caller's delivery bookkeeping goes on
            log.exception("webhook endpoint disabled, but not yet announced (the sweep will)",
                          extra=fields(tenant=doc.get("tenantId"), endpoint_id=doc["id"]))

    def announce_disabled(self, doc: dict[str, Any]) -> None:
        """Audit record and ``endpoint.disabled`` event for an automatically disabled endpoint,
        then clear its ``pending`` mark. At least once: the event is idempotent (its id comes from
        the endpoint and the moment it was disabled); the audit record is written again only if a
        run stopped between it and the mark."""
        tenant_id, endpoint_id = doc["tenantId"], doc["id"]
        assert doc["status"] == "disabled" and doc.get("disabledAt"), "only a disabled endpoint is announced"
        reason = doc.get("disabledCode") or "failing"
        self.cache.invalidate(tenant_id)  # the disabled endpoint is no longer among the receivers
        self.publish(tenant_id, ENDPOINT_DISABLED,
                     {"endpointId": endpoint_id, "reason": reason, "detail": doc.get("disabledReason") or "",
                      "disabledAt": doc["disabledAt"], "failingSince": doc.get("failingSince")},
                     source_id=f"endpoint.disabled:{endpoint_id}:{doc['disabledAt']}", occurred_at=doc["disabledAt"])
        if self.audit is not None:
            self.audit.record(tenant_id, "webhook.endpoint.disabled", None, target=f"webhook:{endpoint_id}",
                              before={"status": "active"}, after={"status": "disabled", "reason": reason},
                              reason=doc.get("disabledReason"))

        def clear(current: dict[str, Any]) -> dict[str, Any] | None:
            if current.get("disabledAnnounce") != "pending" or current.get("disabledAt") != doc["disabledAt"]:
                return None  # re-enabled, or announced by another worker meanwhile
            return dict(current, disabledAnnounce=None)

        try:
            self._change(tenant_id, endpoint_id, clear)
        except NotFound:
            pass  # deleted meanwhile: announced all the same

    def unannounced_disables(self, older_than: timedelta) -> list[dict[str, Any]]:
        """Endpoints disabled automatically more than ``older_than`` ago and never announced
        (a worker stopped in between): the delivery worker's sweep announces them."""
        cutoff = iso(self._clock.now() - older_than)
        return self._store.query(WEBHOOK_ENDPOINTS, Query(pk=None, filters=(
            Filter("disabledAnnounce", "=", "pending"), Filter("disabledAt", "<=", cutoff)), limit=100))

    def delete(self, tenant_id: str, endpoint_id: str) -> None:
        """Delete the endpoint (and its cap slot) once: a delete that loses to a concurrent
        one reads it again and answers NotFound, as any later delete does."""
        for _ in attempts():
            doc = self.get(tenant_id, endpoint_id)  # NotFound once it is gone
            operations = [Delete(endpoint_id, doc["_etag"])]
            if "slot" in doc:  # the endpoint and its slot go together: the slot is free again
                operations.append(Delete(_slot_id(doc["slot"])))
            try:
                self._store.batch(WEBHOOK_ENDPOINTS, tenant_id, operations)
            except StoreError:
                continue  # deleted or changed meanwhile: read again and decide again
            self.secrets.forget(tenant_id, endpoint_id)
            self.cache.invalidate(tenant_id)
            return
        raise Conflict(f"webhook endpoint {endpoint_id!r} kept changing while it was being deleted; try again")

    def rotate_secret(self, tenant_id: str, endpoint_id: str, grace: timedelta = DEFAULT_GRACE) -> tuple[dict, str]:
        """A new secret (returned once); the one it replaces keeps signing until ``grace`` has passed.

        Any older secret still in its grace (a rotation during a rotation) is retired now,
        its sealed copy dropped: an endpoint holds at most ``MAX_LIVE_SECRETS`` secrets, so a
        message never carries more than two signatures (the newest and its predecessor)."""
        if not timedelta(0) <= grace <= MAX_GRACE:
            raise ValidationFailed(f"the grace period must be between 0 and {MAX_GRACE.days} days")
        raw = new_secret()
        now = self._clock.now()

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            version = doc["secretVersion"] + 1
            current = max(doc["secrets"], key=lambda s: s["version"])
            expires = current.get("expiresAt")
            kept = []
            if grace > timedelta(0) and (expires is None or parse_iso(expires) > now):
                ends = iso(now + grace) if expires is None else min(expires, iso(now + grace))
                kept.append(dict(current, expiresAt=ends))
            sealed = dict(seal_secret(self._keys, tenant_id, endpoint_id, version, raw), createdAt=iso(now),
                          expiresAt=None)
            secrets = [sealed] + kept
            assert len(secrets) <= MAX_LIVE_SECRETS and secrets[0]["version"] > current["version"]
            return dict(doc, secretVersion=version, secrets=secrets)

        doc = self._change(tenant_id, endpoint_id, change)
        return endpoint_view(doc), format_secret(raw)

    def live_secrets(self, endpoint: dict[str, Any], now: datetime) -> list[bytes]:
        """The secrets a delivery is signed with now: the current one first, then its predecessor
        if still in grace. At most ``MAX_LIVE_SECRETS`` (the newest), even for an endpoint stored
        with more by a rotation before that limit existed."""
        live = [s for s in endpoint["secrets"] if s.get("expiresAt") is None or parse_iso(s["expiresAt"]) > now]
        live.sort(key=lambda s: -s["version"])
        return [self.secrets.get(self._keys, endpoint["tenantId"], endpoint["id"], s)
                for s in live[:MAX_LIVE_SECRETS]]

    # --- outbox ----------------------------------------------------------------------

    def _active_endpoints(self, tenant_id: str) -> list[dict[str, Any]]:
        return self.cache.get(tenant_id, lambda: [d for d in self.list(tenant_id) if d["status"] == "active"])

    def publish(self, tenant_id: str, event_type: str, data: dict[str, Any], source_id: str,
                occurred_at: str | None = None) -> str | None:
        """Queue an event for the tenant's endpoints that want it; idempotent per ``source_id``.

        Returns the message id (the ``webhook-id`` header), or None when no active
        endpoint subscribes to the type (nothing is stored then)."""
        return self._publish(Event(tenant_id, event_type, source_id, occurred_at or iso(self._clock.now()), data))

    def _publish(self, event: Event) -> str | None:
        if event.type not in EVENT_TYPES:
            raise ValidationFailed(f"unknown webhook event type {event.type!r}")
        endpoints = [e for e in self._active_endpoints(event.tenant_id) if subscribes(e, event.type)]
        if not endpoints:
            return None
        msg_id = message_id(event.tenant_id, event.source_id)
        payload = {"type": event.type, "timestamp": event.occurred_at, "data": event.data}
        REGISTRY.validate(payload, schema_name(event.type), 1)
        now = iso(self._clock.now())
        message = {"id": msg_id, "pk": message_pk(event.tenant_id, msg_id), "docType": "webhookMessage", "tenantId": event.tenant_id,
                   "eventType": event.type, "sourceId": event.source_id, "createdAt": now,
                   "body": sorted_ascii_json(payload, _BODY).decode(),
                   **({"traceContext": event.trace_context} if event.trace_context else {})}
        try:
            self._store.create(WEBHOOK_MESSAGES, message)
        except DocumentExists:
            pass  # a redelivered change: the message (and its tasks, below) are already there
        for endpoint in endpoints:
            self._enqueue(event.tenant_id, endpoint["id"], msg_id, event.type, f"{msg_id}.{endpoint['id']}", now)
        # After the creates (also when they existed already: a redelivered change re-notes what a
        # crash between create and note left unnoted), so the idle delivery timer looks.
        self.outbox.note_due(now)
        return msg_id

    def _enqueue(self, tenant_id: str, endpoint_id: str, msg_id: str, event_type: str, delivery_id: str,
                 now: str) -> dict[str, Any] | None:
        try:
            return self._store.create(WEBHOOK_DELIVERIES, {
                "id": delivery_id, "pk": delivery_pk(tenant_id, endpoint_id), "docType": "webhookDelivery",
                "tenantId": tenant_id, "endpointId": endpoint_id, "messageId": msg_id, "eventType": event_type,
                "status": "pending", "attempts": 0, "nextAttemptAt": now, "createdAt": now, "updatedAt": now,
                "lastStatus": None, "lastError": None,
            })
        except DocumentExists:
            return None

    def project(self, docs: Iterable[dict[str, Any]]) -> int:
        """The change-feed subscriber: ledger documents in, outbox messages out."""
        count = 0
        for event in events_from_ledger(docs):
            if self._publish(event) is not None:
                count += 1
        return count

    def rule_set_activated(self, tenant_id: str, rule_set_id: str, version: int, *, activated_at: str | None = None,
                           arm: str | None = None) -> str | None:
        """For the rules engine: call after a rule set version became active."""
        return self.publish(tenant_id, RULESET_ACTIVATED, {"ruleSetId": rule_set_id, "version": version, "arm": arm},
                            source_id=f"ruleset:{rule_set_id}:{version}:{arm or ''}:{activated_at or ''}",
                            occurred_at=activated_at)

    def tier_changed(self, tenant_id: str, customer_id: str, from_tier: str | None, to_tier: str | None, *,
                     source_id: str, changed_at: str | None = None) -> str | None:
        """For the tiers projection: ``source_id`` must be stable for one change (e.g. the entry id that caused it)."""
        return self.publish(tenant_id, TIER_CHANGED,
                            {"customerId": customer_id, "fromTier": from_tier, "toTier": to_tier},
                            source_id=f"tier:{source_id}", occurred_at=changed_at)

    # --- log and replay --------------------------------------------------------------

    def attempts(self, tenant_id: str, endpoint_id: str | None = None, message_id_: str | None = None,
                 limit: int | None = 100) -> list[dict[str, Any]]:
        """Attempts, newest first: the newest ``limit``, or every one kept (``None``: each day's
        partition read in keyset pages)."""
        filters = []
        if endpoint_id:
            filters.append(Filter("endpointId", "=", endpoint_id))
        if message_id_:
            filters.append(Filter("messageId", "=", message_id_))
        # Attempts sit in one partition per tenant and day: newest day first, until
        # ``limit`` are found or the days attempts are kept for are walked.
        today = self._clock.now().date()
        kept = DEFAULT_TTL.days[WEBHOOK_ATTEMPTS] + 1
        docs: list[dict[str, Any]] = []
        for pk in attempt_pks(tenant_id, today - timedelta(days=kept), today):
            if limit is None:
                docs += sorted(read_all(self._store, WEBHOOK_ATTEMPTS, pk, tuple(filters)),
                               key=lambda d: (d["createdAt"], d["id"]), reverse=True)
                continue
            docs += self._store.query(WEBHOOK_ATTEMPTS, Query(pk=pk, filters=tuple(filters), order_by="createdAt",
                                                              descending=True, limit=limit - len(docs)))
            if len(docs) >= limit:
                break
        return [{k: v for k, v in d.items() if k not in ("pk", "_etag", "_ts")} for d in docs]

    def deliveries(self, tenant_id: str, endpoint_id: str, status: str | None = None,
                   limit: int | None = 100) -> list[dict[str, Any]]:
        """Delivery tasks, newest first: the newest ``limit``, or every one (``None``: keyset pages)."""
        self.get(tenant_id, endpoint_id)
        filters = (Filter("status", "=", status),) if status else ()
        pk = delivery_pk(tenant_id, endpoint_id)
        docs = (sorted(read_all(self._store, WEBHOOK_DELIVERIES, pk, filters), key=lambda d: (d["createdAt"], d["id"]),
                       reverse=True) if limit is None else
                self._store.query(WEBHOOK_DELIVERIES, Query(pk=pk, filters=filters, order_by="createdAt",
                                                            descending=True, limit=limit)))
        return [{k: v for k, v in d.items() if k not in ("pk", "_etag", "_ts")} for d in docs]

    def replay(self, tenant_id: str, endpoint_id: str, msg_id: str) -> dict[str, Any]:
        """Send a message to an endpoint again (same ``webhook-id``), as a new delivery task."""
        endpoint = self.get(tenant_id, endpoint_id)
        message = self.message(tenant_id, msg_id)
        if message is None:
            raise NotFound(f"webhook message {msg_id!r} does not exist")
        if endpoint["status"] != "active":
            raise Conflict("the endpoint is disabled: enable it before replaying")
        if not subscribes(endpoint, message["eventType"]):
            # A replay sends again what the endpoint was sent, or would have been: never a type it
            # does not take (an outside review found any message replayable to any endpoint).
            raise Conflict(f"the endpoint does not subscribe to {message['eventType']}: subscribe it first")
        now = iso(self._clock.now())
        for number in range(1, 1000):
            created = self._enqueue(tenant_id, endpoint_id, msg_id, message["eventType"],
                                    f"{msg_id}.{endpoint_id}.r{number}", now)
            if created is not None:
                self.outbox.note_due(now)
                return {k: v for k, v in created.items() if k not in ("pk", "_etag", "_ts")}
        raise Conflict("too many replays of this message")

    def message(self, tenant_id: str, msg_id: str) -> dict[str, Any] | None:
        return self._store.read(WEBHOOK_MESSAGES, message_pk(tenant_id, msg_id), msg_id)


def _keep(box: list[dict[str, Any]], doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """Note in ``box`` that a ``_change`` callback changed something (it may run more than once)."""
    box.clear()
    if doc is not None:
        box.append(doc)
    return doc
