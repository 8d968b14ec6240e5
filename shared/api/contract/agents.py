"""Response models of the agents' administration routes (shared/api/routes/agents.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link

_POLICY = {"description": "support bot", "tools": ["*"], "personalFields": [],
           "hardLimits": {"pointsPerAction": 5000, "pointsPerCustomerPerDay": 10000, "agentDailyBudget": 100000},
           "softLimits": {"pointsPerAction": 1000, "pointsPerCustomerPerDay": None, "agentDailyBudget": None},
           "rewardCategories": ["drinks", "food"], "requireConsent": True}


class PolicyProblem(BaseModel):
    field: str
    message: str


class PolicyDraft(BaseModel):
    """A guardrail policy's draft, kept as written, with the problems found in it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policyId": "support", "policy": _POLICY, "problems": [], "updatedAt": "2026-11-23T16:11:33.802659Z",
        "updatedBy": "k3j5h2g7f4d1"}]})

    policyId: str
    policy: dict[str, Any]
    problems: list[PolicyProblem]
    updatedAt: str
    updatedBy: str


class PolicyValidation(BaseModel):
    """Whether a policy is valid, and what is wrong with it if not."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ok": True, "problems": []}]})

    ok: bool
    problems: list[PolicyProblem]


class PolicyVersion(BaseModel):
    """One immutable version of a guardrail policy."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policyId": "support", "version": 3, "at": "2026-11-23T16:11:33.802659Z", "author": "k3j5h2g7f4d1",
        "reason": "raise the soft limit for the holidays", "policy": _POLICY}]})

    policyId: str
    version: int
    at: str
    author: str
    reason: str
    policy: dict[str, Any] = Field(description="the policy language: docs/mcp.md")


class PolicyVersionList(BaseModel):
    """Versions, newest first."""

    items: list[PolicyVersion]
    next: str | None = next_link()


class ActivePolicy(BaseModel):
    """Which version of a guardrail policy decides agents' calls now."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policyId": "support", "version": 3, "previousVersion": 2, "history": [1, 2],
        "activatedAt": "2026-11-23T16:11:33.802659Z", "activatedBy": "k3j5h2g7f4d1", "reason": "holidays",
        "action": "activate"}]})

    policyId: str
    version: int
    previousVersion: int | None = None
    history: list[int] = Field(description="earlier active versions, oldest first (rollback walks back)")
    activatedAt: str
    activatedBy: str
    reason: str
    action: str = Field(description="activate or rollback")


class AgentBinding(BaseModel):
    """The guardrail policy an agent key is bound to."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "keyId": "k3j5h2g7f4d1", "policyId": "support", "boundAt": "2026-11-23T16:11:33.802659Z",
        "boundBy": "a1b2c3d4e5f6"}]})

    keyId: str
    policyId: str
    boundAt: str
    boundBy: str


class TermsVersion(BaseModel):
    """A version of a tenant's terms document (markdown), as agents read it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "docId": "programme-terms", "version": 2, "title": "Programme terms", "markdown": "# Terms\\n...",
        "reason": "new expiry rule", "author": "a1b2c3d4e5f6", "at": "2026-11-23T16:11:33.802659Z"}]})

    docId: str
    version: int
    title: str
    markdown: str | None = None
    reason: str
    author: str
    at: str


class TermsList(BaseModel):
    """The newest version of each terms document (without its text)."""

    items: list[TermsVersion]
    next: str | None = next_link()


class AgentCall(BaseModel):
    """One agent tool call as the decision trail keeps it (no personal data)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "callId": "ac-0f3a9c1d0b8e7a65c4d2e1f0", "tenantId": "sandbox", "at": "2026-11-23T16:11:33.802659Z",
        "agentKeyId": "k3j5h2g7f4d1", "tool": "execute_quote", "arguments": {"quoteId": "aq-0f3a9c1d0b8e7a65c4d2e1f0"},
        "policyId": "support", "policyVersion": 3, "decision": "escalated",
        "reasons": [{"code": "points-per-action", "detail": "1500 points is above 1000 per action"}],
        "result": {"status": "escalated", "caseId": "rv-0f3a9c1d0b8e7a65c4d2e1f0"},
        "consentReference": "chat-8812", "quoteId": "aq-0f3a9c1d0b8e7a65c4d2e1f0", "customerId": "alice-42",
        "decidedBy": None}]})

    callId: str
    tenantId: str
    at: str
    agentKeyId: str
    tool: str
    arguments: dict[str, Any]
    policyId: str | None = None
    policyVersion: int | None = None
    decision: str = Field(description="allowed, refused, escalated; approved or rejected by a person")
    reasons: list[dict[str, Any]]
    result: Any = None
    consentReference: str | None = None
    quoteId: str | None = None
    customerId: str | None = None
    decidedBy: str | None = None


class AgentCallList(BaseModel):
    """Tool calls, oldest first."""

    items: list[AgentCall]
    next: str | None = next_link()
