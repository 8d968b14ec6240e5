"""Response models of dual control (shared/api/routes/governance.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link


class Operator(BaseModel):
    """A platform-admin key and the operator who holds it (the key's label)."""

    keyId: str
    role: str | None = None
    operator: str | None = None


class ApprovalRequest(BaseModel):
    """A request for a dual-controlled act and where it stands."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "req-3f2a9c1d0b8e7a65", "action": "tenant.delete", "tenantId": "acme", "params": {},
        "reason": "contract ended (ticket 4411)",
        "requestedBy": {"keyId": "k2p7vq3mxa4d", "role": "platform-admin", "operator": "ana"},
        "createdAt": "2026-11-23T16:11:33.802659Z", "expiresAt": "2026-11-24T16:11:33.802659Z",
        "status": "pending"}]})

    id: str
    action: Literal["tenant.delete", "platform-admin.grant", "tenant.kek.rotate"]
    tenantId: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str
    requestedBy: Operator
    createdAt: str
    expiresAt: str
    status: Literal["pending", "executing", "executed", "failed", "rejected", "expired"]
    approvedBy: Operator | None = None
    approvedAt: str | None = None
    approvalReason: str | None = None
    executedAt: str | None = None
    rejectedBy: Operator | None = None
    rejectedAt: str | None = None
    rejectionReason: str | None = None
    error: str | None = Field(default=None, description="why the approved act failed")
    result: dict[str, Any] | None = Field(
        default=None, description="what the act did (approve only; a granted key's secret is in this answer only)")


class ApprovalRequestList(BaseModel):
    """Recent requests, newest first."""

    items: list[ApprovalRequest]
    next: str | None = next_link()
