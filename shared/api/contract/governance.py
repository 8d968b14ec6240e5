"""Response models of dual control (shared/api/routes/governance.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link


ACTION = Literal["tenant.create", "tenant.delete", "tenant.kek.rotate", "tenant-admin.issue", "tenant-key.revoke",
                 "platform-admin.grant", "platform-admin.revoke", "operator.register", "operator.remove",
                 "credential.add", "credential.remove", "partner.save", "dual-control.policy"]


class Operator(BaseModel):
    """A platform-admin key and the operator who holds it."""

    keyId: str
    role: str | None = None
    operatorId: str | None = None
    operator: str | None = Field(default=None, description="the operator's display name")
    credentialId: str | None = None


class Approval(BaseModel):
    """One operator's approval: their WebAuthn assertion of the request's challenge."""

    operatorId: str
    credentialId: str
    keyId: str
    at: str
    reason: str | None = None


class Credential(BaseModel):
    """A registered security key (WebAuthn credential) of an operator."""

    credentialId: str
    aaguid: str = Field(description="the authenticator model")
    createdAt: str


class PlatformOperator(BaseModel):
    """A platform operator: an identity with security keys; platform-admin keys are bound to it."""

    operatorId: str
    name: str
    createdAt: str
    removedAt: str | None = None
    credentials: list[Credential]
    awaitingBootstrapKey: bool = Field(description="the bootstrap operator, before its first security key")


class OperatorList(BaseModel):
    """The region's operators, oldest first."""

    items: list[PlatformOperator]
    next: str | None = next_link()


class RegistrationOptions(BaseModel):
    """Options for navigator.credentials.create (JSON form) and the pending registration's id."""

    challengeId: str
    operatorId: str = Field(description="whose key it will be (a newcomer's id is chosen now)")
    publicKey: dict[str, Any]


class Registered(BaseModel):
    """A verified registration: the bootstrap operator's key is registered at once; any
    other is an approval request (operator.register or credential.add)."""

    operator: PlatformOperator | None = None
    request: "ApprovalRequest | None" = None


class ApprovalRequest(BaseModel):
    """A request for a dual-controlled act and where it stands."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "req-3f2a9c1d0b8e7a65", "action": "tenant.delete", "tenantId": "acme", "params": {},
        "reason": "contract ended (ticket 4411)",
        "requestedBy": {"keyId": "k2p7vq3mxa4d", "role": "platform-admin", "operatorId": "op-1f0e2d3c4b5a6978",
                        "operator": "ana"},
        "createdAt": "2026-11-23T16:11:33.802659Z", "expiresAt": "2026-11-24T16:11:33.802659Z",
        "status": "pending"}]})

    id: str
    action: ACTION
    tenantId: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str
    requestedBy: Operator
    createdAt: str
    expiresAt: str
    status: Literal["pending", "executing", "executed", "failed", "rejected", "expired", "interrupted"] = Field(
        description="``interrupted``: still executing an hour after its second approval, so its executor "
                    "stopped before recording an outcome (``error`` says what to do)")
    challenge: str | None = Field(default=None, description="what an approval signs: SHA-256 of the request's "
                                                            "canonical content (websafe base64)")
    approvals: list[Approval] = Field(default_factory=list)
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


Registered.model_rebuild()


class AssertionOptions(BaseModel):
    """``publicKey`` options of navigator.credentials.get (JSON form: websafe base64)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "challenge": "q0Xn2Yl0bY2bDk1rWq5oQkq8cP3yM0m5gqfJ3Yx4bE0", "rpId": "localhost",
        "allowCredentials": [{"type": "public-key", "id": "P-oT6M48GGVUxIefurx1oWTlrsIpAw3WYkwCF87Tg8g"}],
        "userVerification": "required"}]})

    challenge: str
    rpId: str | None = None
    allowCredentials: list[dict[str, Any]] = Field(default_factory=list)
    userVerification: str | None = None
