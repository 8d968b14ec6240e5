"""Webhook endpoints of the caller's tenant (tenant-admin): register (secret shown
once), list, read, update, disable/enable, delete, rotate the secret, read the
delivery log, replay a message. See docs/webhooks.md."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.api.contract import op
from shared.api.contract.webhooks import (AttemptList, Delivery, DeliveryList, Endpoint, EndpointList,
                                           EndpointWithSecret, EventTypes)
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.platform import Platform
from shared.webhooks.events import EVENT_TYPES
from shared.webhooks.service import endpoint_view

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

EndpointId = Annotated[str, Path(pattern=r"^ep_[0-9a-f]{20}$", max_length=23)]
MessageId = Annotated[str, Path(pattern=r"^msg_[a-z2-7]{26}$", max_length=30)]
EventType = Annotated[str, StringConstraints(max_length=64)]   # one of EVENT_TYPES (checked by the service)


class NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    eventTypes: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    description: str = Field(default="", max_length=500)


class EndpointChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2048)
    eventTypes: list[EventType] | None = Field(default=None, min_length=1, max_length=len(EVENT_TYPES))
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    graceSeconds: int = Field(default=24 * 3600, ge=0, le=7 * 24 * 3600)


@router.get("/event-types", summary="The event types an endpoint may subscribe to",
            **op("webhooks.eventTypes", EventTypes))
def event_types(request: Request, who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The event types an endpoint may subscribe to (capability ``admin``)."""
    return in_memory(request, who.tenant_id, list(EVENT_TYPES), limit, cursor, Order(()))


@router.post("/endpoints", status_code=201, summary="Register an endpoint; its secret is in this answer only",
             **op("webhooks.createEndpoint", {201: EndpointWithSecret}, errors=(409,)))
def register(body: NewEndpoint, response: Response, p: Annotated[Platform, Depends(platform)],
             who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Registers an HTTPS endpoint for the given event types (capability ``admin``, audited). The URL must
    resolve to a public address. The signing secret is in this answer only."""
    view, secret = p.webhooks.register(who.tenant_id, body.url, body.eventTypes, body.description)
    p.audit.record(who.tenant_id, "webhook.endpoint.created", who, target=f"webhook:{view['id']}",
                   after={"url": view["url"], "eventTypes": view["eventTypes"]})
    response.headers["Cache-Control"] = "no-store"
    return dict(view, secret=secret)


@router.get("/endpoints", summary="List the tenant's endpoints (never their secrets)",
            **op("webhooks.listEndpoints", EndpointList))
def list_endpoints(request: Request, p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The tenant's endpoints, never their secrets (capability ``admin``)."""
    return in_memory(request, who.tenant_id, [endpoint_view(d) for d in p.webhooks.list(who.tenant_id)], limit, cursor,
                     Order(("createdAt", "id")))


@router.get("/endpoints/{endpointId}", summary="One endpoint",
            **op("webhooks.getEndpoint", Endpoint, errors=(404,)))
def get_endpoint(endpointId: EndpointId, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """One endpoint, never its secrets (capability ``admin``)."""
    return endpoint_view(p.webhooks.get(who.tenant_id, endpointId))


@router.patch("/endpoints/{endpointId}", summary="Change URL, event types, description, or enable/disable",
              **op("webhooks.updateEndpoint", Endpoint, errors=(404, 409)))
def update_endpoint(endpointId: EndpointId, body: EndpointChange, p: Annotated[Platform, Depends(platform)],
                    who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Changes the URL, event types or description, or disables and enables the endpoint (capability ``admin``,
    audited)."""
    saved = p.webhooks.change(who.tenant_id, endpointId, url=body.url, event_types=body.eventTypes,
                              description=body.description, enabled=body.enabled)
    if saved.changed:  # a change that leaves the endpoint as it is records nothing
        asked = body.model_dump(exclude_none=True)

        def fields(view: dict) -> dict:  # the asked fields, as they were and as they are
            return {k: view["status"] != "disabled" if k == "enabled" else view.get(k) for k in asked}

        p.audit.record(who.tenant_id, "webhook.endpoint.updated", who, target=f"webhook:{endpointId}",
                       before=fields(saved.before), after=fields(saved.after))
    return saved.after


@router.delete("/endpoints/{endpointId}", status_code=204, summary="Delete an endpoint (its secret is destroyed)",
               **op("webhooks.deleteEndpoint", None, errors=(404,)))
def delete_endpoint(endpointId: EndpointId, p: Annotated[Platform, Depends(platform)],
                    who: Annotated[Principal, Depends(requires("admin"))]) -> Response:
    """Deletes the endpoint and destroys its secrets; pending deliveries are cancelled (capability ``admin``,
    audited)."""
    p.webhooks.delete(who.tenant_id, endpointId)
    p.audit.record(who.tenant_id, "webhook.endpoint.deleted", who, target=f"webhook:{endpointId}")
    return Response(status_code=204)


@router.post("/endpoints/{endpointId}/rotate-secret",
             summary="New secret (in this answer only); the old one keeps signing during the grace period",
             **op("webhooks.rotateSecret", EndpointWithSecret, errors=(404,)))
def rotate(endpointId: EndpointId, body: Rotation, response: Response, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Issues a new signing secret (in this answer only); the old one keeps signing alongside it for the grace
    period (capability ``admin``, audited)."""
    view, secret = p.webhooks.rotate_secret(who.tenant_id, endpointId, timedelta(seconds=body.graceSeconds))
    p.audit.record(who.tenant_id, "webhook.secret.rotated", who, target=f"webhook:{endpointId}",
                   after={"secretVersion": view["secretVersion"], "graceSeconds": body.graceSeconds})
    response.headers["Cache-Control"] = "no-store"
    return dict(view, secret=secret)


@router.get("/endpoints/{endpointId}/attempts", summary="The delivery log: every attempt, newest first",
            **op("webhooks.attempts", AttemptList, errors=(404,)))
def attempts(request: Request, endpointId: EndpointId, p: Annotated[Platform, Depends(platform)],
             who: Annotated[Principal, Depends(requires("admin"))],
             messageId: Annotated[str | None, Query(pattern=r"^msg_[a-z2-7]{26}$", max_length=30)] = None,
             cursor: Cursor = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """The delivery log: every attempt to this endpoint, newest first, optionally of one message (capability
    ``admin``)."""
    p.webhooks.get(who.tenant_id, endpointId)
    return in_memory(request, who.tenant_id, p.webhooks.attempts(who.tenant_id, endpointId, messageId, None), limit, cursor,
                     Order(("createdAt", "id"), descending=True))


@router.get("/endpoints/{endpointId}/deliveries", summary="Delivery tasks (pending, succeeded, failed)",
            **op("webhooks.deliveries", DeliveryList, errors=(404,)))
def deliveries(request: Request, endpointId: EndpointId, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))],
               status: Annotated[str | None, Query(pattern=r"^(pending|succeeded|failed|cancelled)$", max_length=9)] = None,
               cursor: Cursor = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    """The delivery tasks of this endpoint (pending, succeeded, failed, cancelled), newest first (capability
    ``admin``)."""
    return in_memory(request, who.tenant_id, p.webhooks.deliveries(who.tenant_id, endpointId, status, None), limit, cursor,
                     Order(("createdAt", "id"), descending=True))


@router.post("/endpoints/{endpointId}/messages/{messageId}/replay", status_code=202,
             summary="Send a message to this endpoint again (same webhook-id)",
             **op("webhooks.replay", {202: Delivery}, errors=(404, 409)))
def replay(endpointId: EndpointId, messageId: MessageId, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Queues the message for this endpoint again, with the same webhook-id so receivers can deduplicate
    (capability ``admin``, audited). 409 when the endpoint is disabled."""
    delivery = p.webhooks.replay(who.tenant_id, endpointId, messageId)
    p.audit.record(who.tenant_id, "webhook.message.replayed", who, target=f"webhook:{endpointId}",
                   after={"messageId": messageId})
    return delivery
