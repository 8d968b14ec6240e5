"""Dual control of platform-admin destructive acts: request, approve (another operator),
reject. Deleting a tenant, granting platform-admin and rotating a tenant's KEK run
only through an approved request."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.api.contract import op
from shared.api.contract.governance import ApprovalRequest, ApprovalRequestList
from shared.api.deps import platform
from shared.api.pagination import SCAN_LIMIT, Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.orders import EntityId
from shared.platform import Platform

router = APIRouter(prefix="/v1/platform/approvals", tags=["governance"])

RequestId = Annotated[str, Path(pattern=r"^req-[0-9a-f]{16}$", max_length=20)]


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: Literal["tenant.delete", "platform-admin.grant", "tenant.kek.rotate"]
    tenant_id: EntityId | None = Field(default=None, alias="tenantId")
    reason: str = Field(min_length=1, max_length=1000)
    label: str = Field(default="", max_length=100,
                       description="platform-admin.grant: the operator the key is for (their directory name); "
                                   "dual control tells operators apart by it")

    @model_validator(mode="after")
    def _tenant_when_needed(self) -> "NewRequest":
        if self.action != "platform-admin.grant" and not self.tenant_id:
            raise ValueError(f"{self.action} needs a tenantId")
        if self.action == "platform-admin.grant" and self.tenant_id:
            raise ValueError("platform-admin.grant takes no tenantId")
        if self.action == "platform-admin.grant" and not self.label.strip():
            raise ValueError("platform-admin.grant needs the label of the operator the key is for")
        return self


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000)


@router.post("", status_code=201, summary="Request a dual-controlled act (platform-admin)",
             **op("governance.request", {201: ApprovalRequest}, errors=(409,)))
def request_act(body: NewRequest, p: Annotated[Platform, Depends(platform)],
                who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Requests a dual-controlled act: deleting a tenant, granting platform-admin or rotating a tenant's KEK
    (capability ``platform``, audited). It runs only when another operator approves it before it
    expires."""
    params = {"label": body.label} if body.label else {}
    return p.approvals.request(body.action, who, tenant_id=body.tenant_id, reason=body.reason, params=params)


@router.get("", summary="Recent requests, newest first (platform-admin)",
            **op("governance.list", ApprovalRequestList))
def list_requests(request: Request, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("platform"))], cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Recent requests, newest first, with their status (capability ``platform``)."""
    return in_memory(request, p.approvals.list(SCAN_LIMIT), limit, cursor, Order(("createdAt", "id"), descending=True))


@router.post("/{requestId}/approve", summary="Approve another operator's request; the act runs now",
             **op("governance.approve", ApprovalRequest, errors=(404, 409)))
def approve(requestId: RequestId, body: ApprovalDecision, response: Response,
            p: Annotated[Platform, Depends(platform)],
            who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Approves another operator's pending request; the act runs now and its result is in this answer
    (capability ``platform``, audited). The requester cannot approve their own request (403)."""
    response.headers["Cache-Control"] = "no-store"  # a granted key's secret is in this answer only
    return p.approvals.approve(requestId, who, body.reason)


@router.post("/{requestId}/reject", summary="Reject (or withdraw) a pending request",
             **op("governance.reject", ApprovalRequest, errors=(404, 409)))
def reject(requestId: RequestId, body: ApprovalDecision, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Rejects a pending request, or withdraws one's own (capability ``platform``, audited)."""
    return p.approvals.reject(requestId, who, body.reason)
