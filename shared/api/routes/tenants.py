"""The caller's tenant settings (read: any key; change: tenant-admin), and tenant
creation by two platform operators (a request, then their approvals)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import op
from shared.api.contract.governance import ApprovalRequest
from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.inputs import DecimalText
from shared.domain.orders import EntityId
from shared.domain.tenants import TenantSettings
from shared.errors import FieldProblem, ValidationFailed
from shared.errors import Conflict
from shared.governance.acts import TOMBSTONE_ID
from shared.app.provisioning import PK as PROVISIONING_PK
from shared.app.provisioning import record_id, request_hash
from shared.store.layout import SYSTEM, TENANTS
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
    rate_limits: RateLimits | None = Field(default=None, alias="rateLimits")


class NewTenant(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tenant_id: EntityId = Field(alias="tenantId")
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(default="EUR", min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")
    time_zone: str = Field(default="UTC", alias="timeZone", max_length=64)
    points_per_unit: PointsPerUnit = Field(default=Decimal(1), alias="pointsPerUnit")
    expiry_policy: ExpiryPolicy | None = Field(default=None, alias="expiryPolicy")
    rate_limits: RateLimits | None = Field(default=None, alias="rateLimits")
    # A sandbox: sample customers, orders, an active rule set, a reward catalogue and the
    # partner simulator (shared.app.sample_data); marked on the tenant for good.
    sandbox: bool = False


def _changes(body: TenantChanges) -> dict:
    """The settings the body names (``null`` included), by their JSON names. ``null`` clears a
    setting the tenant may leave unset; for one it must have (name, time zone ...) it is a 422."""
    changes = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    by_alias = {f.alias or name: f for name, f in TenantSettings.model_fields.items()}
    problems = [FieldProblem(key, "cannot be removed: give a value, or leave it out to keep the current one")
                for key, value in changes.items()
                if value is None and (key not in by_alias or by_alias[key].is_required()
                                      or by_alias[key].default is not None)]
    if problems:
        raise ValidationFailed(f"{', '.join(p.field for p in problems)}: a required setting cannot be null", problems)
    return changes


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
    """Changes the given settings of the caller's tenant; omitted ones keep their value, and an optional
    setting given as ``null`` (``rateLimits``, ``expiryPolicy``) goes back to the platform's default, as in
    JSON merge patch (capability ``admin``, audited)."""
    # Merged onto the stored settings under an ETag (shared/store/replace.py): a concurrent
    # PATCH of another field is kept, and before/after are exactly this change.
    before, after = p.tenants.change(who.tenant_id, _changes(body))
    current, saved = _view(before), _view(after)
    changed = {k for k in saved if saved[k] != current.get(k)}
    if changed:
        p.audit.record(who.tenant_id, "tenant.settings.changed", who, target=f"tenant:{who.tenant_id}",
                       before={k: current.get(k) for k in sorted(changed)},
                       after={k: saved[k] for k in sorted(changed)})
    return saved


@router.post("/v1/tenants", status_code=202, summary="Request a new tenant: two operators approve (platform-admin)",
             **op("tenants.create", {202: ApprovalRequest}, errors=(409,)))
def create_tenant(body: NewTenant, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Files a ``tenant.create`` request with these exact settings (capability ``platform``, audited). When the
    requester and a second operator have approved it with their security keys
    (``/v1/platform/approvals/{requestId}/approve``), the tenant is provisioned: its key-encryption key, the
    tenant, its first tenant-admin key (in the second approval's answer) and the audit records; with
    ``sandbox: true`` also sample data. All or nothing and idempotent (``shared.app.provisioning``). 409 at
    once when the id exists or belonged to a deleted tenant."""
    settings = TenantSettings.model_validate(body.model_dump(by_alias=True))
    if p.store.read(TENANTS, settings.tenant_id, TOMBSTONE_ID) is not None:
        raise Conflict(f"tenant id {settings.tenant_id!r} belonged to a deleted tenant and is never reused")
    # An existing tenant is refused at once, unless its provisioning is unfinished (a crash:
    # the approved request completes it) or answered within its record's lifetime (a lost
    # answer: the approved request replays it, shared.app.provisioning).
    record = p.store.read(SYSTEM, PROVISIONING_PK, record_id(settings.tenant_id))
    replay = bool(record and record.get("sealedSecret") and
                  record.get("requestHash") == request_hash(settings.model_dump(mode="json", by_alias=True)))
    if p.tenants.exists(settings.tenant_id) and not (record and (record.get("status") != "done" or replay)):
        raise Conflict(f"tenant {settings.tenant_id!r} already exists")
    return p.approvals.request("tenant.create", who, tenant_id=settings.tenant_id,
                               reason=f"create tenant {settings.tenant_id}",
                               params={"settings": settings.model_dump(mode="json", by_alias=True)})
