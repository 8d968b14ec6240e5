"""The caller's tenant settings (read: any key; change: tenant-admin), and tenant
creation by a platform-admin."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shared.api.contract import op
from shared.api.contract.access import NewTenantCreated
from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.inputs import DecimalText
from shared.domain.orders import EntityId
from shared.domain.tenants import TenantSettings
from shared.domain.wallets import WalletSettings
from shared.errors import FieldProblem, ValidationFailed
from shared.expiry.policy import ExpiryPolicy
from shared.ratelimit.policy import RateLimits
from shared.platform import Platform

router = APIRouter(tags=["tenants"])

# Points per currency unit: at most 1000, at most four decimals (the rule language's precision).
PointsPerUnit = DecimalText(4, 4, "points per currency unit, e.g. \"10\" or \"2.5\"", ge=0, le=1000)


class TenantChanges(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    time_zone: str | None = Field(default=None, alias="timeZone", max_length=64)
    points_per_unit: PointsPerUnit | None = Field(default=None, alias="pointsPerUnit")
    evaluator: Literal["closure", "wasm"] | None = None
    # Applies to points earned from now on; lots already written keep their stamped expiry.
    expiry_policy: ExpiryPolicy | None = Field(default=None, alias="expiryPolicy")
    # Applies to orders ingested from now on; points already pending keep their maturesAt.
    pending_days: StrictInt | None = Field(default=None, alias="pendingDays", ge=0, le=365)
    # Wallets are added, reordered or re-configured, never removed (their points stay on the ledger).
    wallets: WalletSettings | None = None
    rate_limits: RateLimits | None = Field(default=None, alias="rateLimits")


class NewTenant(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tenant_id: EntityId = Field(alias="tenantId")
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(default="EUR", min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")
    time_zone: str = Field(default="UTC", alias="timeZone", max_length=64)
    points_per_unit: PointsPerUnit = Field(default=Decimal(1), alias="pointsPerUnit")
    expiry_policy: ExpiryPolicy | None = Field(default=None, alias="expiryPolicy")
    pending_days: StrictInt = Field(default=0, alias="pendingDays", ge=0, le=365)
    wallets: WalletSettings | None = None
    rate_limits: RateLimits | None = Field(default=None, alias="rateLimits")
    # A sandbox: sample customers, orders, an active rule set, a reward catalogue and the
    # partner simulator (shared.app.sample_data); marked on the tenant for good.
    sandbox: bool = False


def _view(settings: TenantSettings) -> dict:
    return settings.model_dump(mode="json", by_alias=True)


@router.get("/v1/tenant", summary="The caller's tenant settings",
            **op("tenants.get", TenantSettings, errors=(404,)))
def read_tenant(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """The caller's tenant settings: name, currency, time zone, the interim points rate, evaluator and expiry
    policy (capability ``read``)."""
    return _view(p.tenants.get(who.tenant_id))


@router.patch("/v1/tenant", summary="Change the tenant's settings (tenant-admin)",
              **op("tenants.update", TenantSettings, errors=(404, 412)))
def change_tenant(body: TenantChanges, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Changes the given settings of the caller's tenant; omitted ones keep their value (capability ``admin``,
    audited)."""
    # Merged onto the stored settings under an ETag (shared/store/replace.py): a concurrent
    # PATCH of another field is kept, and before/after are exactly this change.
    if body.wallets is not None:
        kept = p.tenants.get(who.tenant_id).wallets
        missing = sorted(set(kept.names) - set(body.wallets.names)) if kept is not None else []
        if missing:
            raise ValidationFailed("wallets cannot be removed", [FieldProblem(
                "wallets", f"the wallet(s) {', '.join(missing)} must stay (their points are on the ledger)")])
    before, after = p.tenants.change(who.tenant_id, body.model_dump(mode="json", by_alias=True, exclude_none=True))
    current, saved = _view(before), _view(after)
    changed = {k for k in saved if saved[k] != current.get(k)}
    if changed:
        p.audit.record(who.tenant_id, "tenant.settings.changed", who, target=f"tenant:{who.tenant_id}",
                       before={k: current.get(k) for k in sorted(changed)},
                       after={k: saved[k] for k in sorted(changed)})
    return saved


@router.post("/v1/tenants", status_code=201, summary="Create a tenant and its first tenant-admin key (platform-admin)",
             **op("tenants.create", {201: NewTenantCreated}, errors=(409,)))
def create_tenant(body: NewTenant, response: Response, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Creates a tenant: its key-encryption key first, then the tenant, its first tenant-admin key and
    the audit records (capability ``platform``); with ``sandbox: true`` also sample customers, orders,
    an active rule set and a reward catalogue served by the partner simulator. All or nothing and
    idempotent (``shared.app.provisioning``): repeating the same request (after an error or a lost
    answer) completes it or answers with the first answer, admin key included, for 24 hours. 409 when
    the id exists, belonged to a deleted tenant, or is being provisioned by a different request."""
    settings = TenantSettings.model_validate(body.model_dump(by_alias=True))
    done = p.provisioning.provision(settings, who)
    response.headers["Cache-Control"] = "no-store"
    return done.answer()
