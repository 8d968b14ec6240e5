"""Response models of the webhooks routes (shared/api/routes/webhooks.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link

_ENDPOINT = {"id": "ep_0f3a9c1d0b8e7a65c4d2", "url": "https://hooks.example.com/accrue",
             "eventTypes": ["points.earned", "tier.changed"], "description": "CRM sync", "status": "active",
             "disabledReason": None, "failingSince": None, "createdAt": "2026-11-23T16:11:33.802659Z",
             "updatedAt": "2026-11-23T16:11:33.802659Z", "secretVersion": 1,
             "secrets": [{"version": 1, "createdAt": "2026-11-23T16:11:33.802659Z", "expiresAt": None}]}


class EventTypes(BaseModel):
    """The event types an endpoint may subscribe to."""

    items: list[str] = Field(examples=[["points.earned", "tier.changed"]])
    next: str | None = next_link()


class SecretInfo(BaseModel):
    """One signing secret's version and validity (never the secret itself)."""

    version: int
    createdAt: str | None = None
    expiresAt: str | None = Field(default=None, description="end of the grace period of a rotated-out secret")


class Endpoint(BaseModel):
    """A webhook endpoint (never its secrets)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ENDPOINT]})

    id: str
    url: str
    eventTypes: list[str]
    description: str | None = None
    status: str = Field(description="active, or disabled (by a tenant-admin or after failing for days)")
    disabledReason: str | None = None
    failingSince: str | None = None
    createdAt: str | None = None
    updatedAt: str | None = None
    secretVersion: int | None = None
    secrets: list[SecretInfo]


class EndpointWithSecret(Endpoint):
    """The endpoint and its new signing secret: in this answer only (Cache-Control: no-store)."""

    model_config = ConfigDict(json_schema_extra={
        "examples": [dict(_ENDPOINT, secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]})

    secret: str = Field(description="whsec_...: the Standard Webhooks signing secret")


class EndpointList(BaseModel):
    """The tenant's endpoints."""

    items: list[Endpoint]
    next: str | None = next_link()


class Attempt(BaseModel):
    """One delivery attempt: the endpoint's answer or the error."""

    id: str
    endpointId: str
    messageId: str
    deliveryId: str
    eventType: str
    attempt: int
    createdAt: str
    url: str
    status: int | None = Field(default=None, description="the endpoint's HTTP status (null: no answer)")
    succeeded: bool
    latencyMs: float | None = None
    error: str | None = None
    responseExcerpt: str | None = None


class AttemptList(BaseModel):
    """Delivery attempts, newest first."""

    items: list[Attempt]
    next: str | None = next_link()


class Delivery(BaseModel):
    """A delivery task of one message to one endpoint."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "msg_ahq3jv6xk2m4n7p9r2t5w8y3zb.ep_0f3a9c1d0b8e7a65c4d2.r1", "tenantId": "sandbox",
        "endpointId": "ep_0f3a9c1d0b8e7a65c4d2", "messageId": "msg_ahq3jv6xk2m4n7p9r2t5w8y3zb",
        "eventType": "points.earned", "status": "pending", "attempts": 0,
        "nextAttemptAt": "2026-11-23T16:11:33.802659Z", "createdAt": "2026-11-23T16:11:33.802659Z",
        "updatedAt": "2026-11-23T16:11:33.802659Z", "lastStatus": None, "lastError": None}]})

    id: str
    tenantId: str
    endpointId: str
    messageId: str
    eventType: str
    status: str = Field(description="pending, succeeded, failed or cancelled")
    attempts: int
    nextAttemptAt: str | None = None
    createdAt: str
    updatedAt: str | None = None
    lastStatus: int | None = None
    lastError: str | None = None


class DeliveryList(BaseModel):
    """Delivery tasks, newest first."""

    items: list[Delivery]
    next: str | None = next_link()
