"""Response models of health, API keys and tenants (shared/api/routes/health.py,
keys.py, tenants.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link

from shared.domain.tenants import TenantSettings


class Health(BaseModel):
    """The platform is up and its store answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "region": "local", "store": "sqlite", "bus": "local"}]})

    status: Literal["ok"]
    region: str
    store: str
    bus: str


class ApiKey(BaseModel):
    """An API key's public record (never its secret)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "keyId": "gtxq3vbymos3", "tenantId": "sandbox", "role": "merchant", "label": "till 3",
        "createdAt": "2026-11-23T16:11:33.802659Z", "createdBy": "e5fe4gprsorz", "revokedAt": None}]})

    keyId: str
    tenantId: str
    role: str = Field(examples=["merchant"])
    label: str | None = None
    createdAt: str | None = None
    createdBy: str | None = None
    revokedAt: str | None = Field(default=None, description="when it was revoked; null while it is valid")
    operatorId: str | None = Field(default=None, description="platform-admin keys: the operator it is bound to")


class ApiKeyList(BaseModel):
    """The tenant's keys, oldest first (never their secrets)."""

    items: list[ApiKey]
    next: str | None = next_link()


class IssuedKey(BaseModel):
    """A new key: ``apiKey`` is its secret, shown in this answer only (Cache-Control: no-store)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "keyId": "gtxq3vbymos3", "apiKey": "acr_gtxq3vbymos3_Qm9...", "role": "merchant", "tenantId": "sandbox"}]})

    keyId: str
    apiKey: str = Field(description="acr_<keyId>_<secret>: store it now, it is never shown again")
    role: Literal["merchant", "analyst", "tenant-admin", "agent"]
    tenantId: str


class FirstAdminKey(BaseModel):
    """The new tenant's first tenant-admin key (its secret is in this answer only)."""

    keyId: str
    apiKey: str


class NewTenantCreated(BaseModel):
    """The tenant's settings and its first tenant-admin key."""

    tenant: TenantSettings
    adminKey: FirstAdminKey
