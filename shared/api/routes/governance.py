"""Dual control of every platform-admin act: request, then two operators approve (or one
rejects) with a WebAuthn assertion of the request's challenge (shared.governance).

Acts with a route of their own (creating a tenant, revoking a platform-admin key,
saving a partner, registering a security key) file their request there; this route
files the others."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.api.contract import op
from shared.api.contract.governance import ApprovalRequest, ApprovalRequestList, AssertionOptions
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.orders import EntityId
from shared.platform import Platform

router = APIRouter(prefix="/v1/platform/approvals", tags=["governance"])

RequestId = Annotated[str, Path(pattern=r"^req-[0-9a-f]{16}$", max_length=20)]
KEY_ID = r"^[a-z2-7]{12}$"
OPERATOR_ID = r"^op-[0-9a-f]{16}$"


class ActParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    label: str | None = Field(default=None, max_length=100,
                              description="tenant-admin.issue, platform-admin.grant: what the key is for")
    key_id: str | None = Field(default=None, alias="keyId", pattern=KEY_ID, max_length=12,
                               description="tenant-key.revoke, platform-admin.revoke")
    operator_id: str | None = Field(default=None, alias="operatorId", pattern=OPERATOR_ID, max_length=19,
                                    description="platform-admin.grant, operator.remove, credential.remove")
    credential_id: str | None = Field(default=None, alias="credentialId", max_length=400,
                                      pattern=r"^[A-Za-z0-9_-]+$", description="credential.remove")
    ttl_minutes: int | None = Field(default=None, alias="ttlMinutes", ge=5, le=7 * 24 * 60,
                                    description="dual-control.policy: how long a request waits for approvals")


# Which parameters each act filed here takes (all required), and whether it is about a tenant.
SHAPES: dict[str, tuple[tuple[str, ...], bool]] = {
    "tenant.delete": ((), True), "tenant.kek.rotate": ((), True),
    "tenant-admin.issue": (("label",), True), "tenant-key.revoke": (("keyId",), True),
    "platform-admin.grant": (("operatorId",), False), "operator.remove": (("operatorId",), False),
    "credential.remove": (("operatorId", "credentialId"), False), "dual-control.policy": (("ttlMinutes",), False),
}


# Parameters an act takes when given (platform-admin.grant: the new key's label; default the operator's name).
OPTIONAL: dict[str, set[str]] = {"platform-admin.grant": {"label"}}


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: Literal["tenant.delete", "tenant.kek.rotate", "tenant-admin.issue", "tenant-key.revoke",
                    "platform-admin.grant", "operator.remove", "credential.remove", "dual-control.policy"]
    tenant_id: EntityId | None = Field(default=None, alias="tenantId")
    reason: str = Field(min_length=1, max_length=1000)
    params: ActParams = Field(default_factory=ActParams)

    @model_validator(mode="after")
    def _shape(self) -> "NewRequest":
        needed, about_tenant = SHAPES[self.action]
        if about_tenant and not self.tenant_id:
            raise ValueError(f"{self.action} needs a tenantId")
        if not about_tenant and self.tenant_id:
            raise ValueError(f"{self.action} takes no tenantId")
        given = set(self.params.model_dump(by_alias=True, exclude_none=True)) - OPTIONAL.get(self.action, set())
        if given != set(needed):
            raise ValueError(f"{self.action} takes exactly these params: {', '.join(needed) or 'none'}")
        return self


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assertion: dict[str, Any] = Field(description="the PublicKeyCredential of navigator.credentials.get (JSON form) "
                                                  "over the request's challenge")
    reason: str | None = Field(default=None, max_length=1000)


@router.post("", status_code=202, summary="Request a dual-controlled act (platform-admin)",
             **op("governance.request", {202: ApprovalRequest}, errors=(404, 409)))
def request_act(body: NewRequest, p: Annotated[Platform, Depends(platform)],
                who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Files a dual-controlled act (capability ``platform``, audited). It runs once the requester and a
    second operator approve it with their security keys before it expires."""
    params = body.params.model_dump(by_alias=True, exclude_none=True)
    if body.tenant_id and body.action != "tenant.create" and not p.tenants.exists(body.tenant_id):
        from shared.errors import NotFound
        raise NotFound(f"tenant {body.tenant_id!r} does not exist")
    if "operatorId" in params:
        p.operators.active(params["operatorId"])
    return p.approvals.request(body.action, who, tenant_id=body.tenant_id, reason=body.reason, params=params)


@router.get("", summary="Recent requests, newest first (platform-admin)",
            **op("governance.list", ApprovalRequestList))
def list_requests(request: Request, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("platform"))], cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Recent requests, newest first, with their status, challenge and approvals (capability ``platform``)."""
    return in_memory(request, who.tenant_id, p.approvals.list(None), limit, cursor, Order(("createdAt", "id"), descending=True))


@router.get("/{requestId}/assertion-options", summary="WebAuthn options to approve or reject a request",
            **op("governance.assertionOptions", AssertionOptions, errors=(404,)))
def assertion_options(requestId: RequestId, p: Annotated[Platform, Depends(platform)],
                      who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """The ``publicKey`` options of ``navigator.credentials.get`` (JSON form) whose challenge is the request's
    (capability ``platform``): the caller's operator's security keys are allowed."""
    return p.approvals.assertion_options(requestId, who)


@router.post("/{requestId}/approve", summary="Approve with a security key; the second approval runs the act",
             **op("governance.approve", ApprovalRequest, errors=(404, 409)))
def approve(requestId: RequestId, body: Decision, response: Response,
            p: Annotated[Platform, Depends(platform)],
            who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Approves a pending request with a WebAuthn assertion of its challenge (capability ``platform``,
    audited with operator and credential). The requester and a second, different operator approve; the
    second approval runs the act and its result is in that answer. 403 for a refused assertion or the same
    operator twice."""
    response.headers["Cache-Control"] = "no-store"  # a granted key's secret is in this answer only
    return p.approvals.approve(requestId, who, body.assertion, body.reason)


@router.post("/{requestId}/reject", summary="Reject (or withdraw) a pending request with a security key",
             **op("governance.reject", ApprovalRequest, errors=(404, 409)))
def reject(requestId: RequestId, body: Decision, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Rejects a pending request, or withdraws one's own, with a WebAuthn assertion of its challenge
    (capability ``platform``, audited)."""
    return p.approvals.reject(requestId, who, body.assertion, body.reason)
