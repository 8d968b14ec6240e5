"""Live updates on Azure: Azure Web PubSub, because an HTTP function cannot hold a WebSocket.

* ``negotiate``: a short-lived client URL (``TOKEN_MINUTES``) for the key's tenant group only.
  The token makes the connection join ``tenant-<id>`` when it opens and grants no role, so
  the client cannot join another group nor send: it only receives its tenant's events.
  Served at ``POST /graphql/v1/negotiate`` (``shared.graphql.endpoint``), with the API key.
* ``publish``: a projector subscriber (so it runs in the change-feed function, never on the
  write path) that sends each event of the ledger changes to its tenant's group, as JSON
  ``{"type": "transactionCreated" | "orderDecided" | "tierChanged" | "redemptionChanged",
  "tenantId", "customerId", "data": {...}}`` with ``data`` shaped like the GraphQL type.

Delivery is at least once and best effort: the change feed may redeliver a batch (clients
dedupe by id), and a publish that fails is logged and counted, never failed up to the
projector (balances must not stop because live updates are down). Web PubSub keeps no
history, so on Azure a client that reconnects refetches with queries (no ``after`` replay).

Reached with the app's managed identity (role "Web PubSub Service Owner" on the resource,
bicep/modules/roles.bicep). Tested with the SDK's own client over a faked transport."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from shared.app.auth import Principal
from shared.app.corrections import entry_view
from shared.errors import AccrueError
from shared.graphql.feed import Event, events_of
from shared.store.layout import LEDGER
from shared.store.port import Change
from shared.telemetry.logs import fields
from shared.tiers.history import view as tier_change_view

log = logging.getLogger("accrue.graphql.webpubsub")

TOKEN_MINUTES = 10
TYPES = {"transaction": "transactionCreated", "order": "orderDecided", "tier": "tierChanged",
         "redemption": "redemptionChanged"}


class LiveUpdatesUnavailable(AccrueError):
    code = "live-updates-unavailable"
    status = 503


def tenant_group(tenant_id: str) -> str:
    return f"tenant-{tenant_id}"


def payload(event: Event) -> dict[str, Any]:
    docs = event.docs
    if event.kind == "transaction":
        data: dict[str, Any] = {"id": docs[0].get("transactionId"), "customerId": event.customer_id,
                                "createdAt": docs[0].get("createdAt"), "dataAsOf": docs[0].get("createdAt"),
                                "entries": [entry_view(d) for d in docs]}
    elif event.kind == "order":
        doc = docs[0]
        data = {k: doc.get(k) for k in ("orderId", "customerId", "status", "points", "ruleSetId", "ruleSetVersion",
                                        "arm", "reason", "acceptedAt")}
        data["decidedAt"] = doc.get("createdAt")
    elif event.kind == "tier":
        data = tier_change_view(docs[0])
    else:
        doc = docs[0]
        settled = doc.get("docType") == "settlement"
        data = {"redemptionId": doc.get("redemptionId"), "customerId": event.customer_id,
                "event": "settled" if settled else "created", "kind": doc.get("kind"), "points": doc.get("points"),
                "resolution": doc.get("resolution") if settled else None, "at": doc.get("createdAt")}
    return {"type": TYPES[event.kind], "tenantId": event.tenant_id, "customerId": event.customer_id, "data": data}


@dataclass
class LiveUpdates:
    client: Any  # azure.messaging.webpubsubservice.WebPubSubServiceClient
    failures: int = 0

    def negotiate(self, who: Principal) -> dict[str, Any]:
        from azure.core.exceptions import AzureError  # noqa: PLC0415 - only where Web PubSub is configured

        group = tenant_group(who.tenant_id)
        try:
            token = self.client.get_client_access_token(user_id=who.key_id, groups=[group], roles=[],
                                                        minutes_to_expire=TOKEN_MINUTES)
        except AzureError as error:
            raise LiveUpdatesUnavailable(f"Web PubSub did not issue a token: {error}") from error
        return {"url": token["url"], "group": group, "expiresInMinutes": TOKEN_MINUTES}

    def publish(self, docs: Iterable[dict[str, Any]]) -> int:
        """Send the events of these ledger documents; returns events sent."""
        from azure.core.exceptions import AzureError  # noqa: PLC0415

        sent = 0
        for event in events_of(Change(lsn=0, container=LEDGER, doc=d) for d in docs):
            try:
                # A JSON object: the SDK serializes it (a str would be sent as a JSON string).
                self.client.send_to_group(tenant_group(event.tenant_id), payload(event),
                                          content_type="application/json")
                sent += 1
            except AzureError:
                self.failures += 1
                log.exception("publishing a %s event of tenant %s to Web PubSub failed", event.kind,
                              event.tenant_id, extra=fields(tenant=event.tenant_id))
        return sent


def build(endpoint: str | None, hub: str, credential: Any = None, **client_options: Any) -> LiveUpdates | None:
    """The Web PubSub adapter, or None where it is not configured (the embedded default)."""
    if not endpoint:
        return None
    from azure.messaging.webpubsubservice import WebPubSubServiceClient  # noqa: PLC0415

    if credential is None:
        from azure.identity import DefaultAzureCredential  # noqa: PLC0415
        credential = DefaultAzureCredential()
    return LiveUpdates(WebPubSubServiceClient(endpoint=endpoint, hub=hub, credential=credential, **client_options))
