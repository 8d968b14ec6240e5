"""Agents' administration over HTTP (tenant-admin, capability ``admin``; issue 21):
guardrail policies (draft, validate, save a version with a reason, activate, roll
back), which policy binds an agent key, the tenant's terms documents agents read,
and the decision trail of every tool call. The agents themselves speak MCP at
/mcp (shared/api/mcp.py); the policy language is in docs/mcp.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import op
from shared.api.contract.agents import (ActivePolicy, AgentBinding, AgentCallList, PolicyDraft, PolicyValidation,
                                        PolicyVersion, PolicyVersionList, TermsList, TermsVersion)
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory, keyset, position
from shared.api.security import requires
from shared.app.auth import Principal, Role
from shared.agents.knowledge import MAX_TERMS_BYTES
from shared.agents.policy import validate_policy
from shared.errors import FieldProblem, ValidationFailed
from shared.platform import Platform

router = APIRouter(tags=["agents"])

PolicyId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$", max_length=50, description="the policy's id")]
DocId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$", max_length=50, description="the document's id")]
KeyId = Annotated[str, Path(pattern=r"^[a-z2-7]{12}$", max_length=12, description="the agent key's id")]
Reason = Annotated[str, Field(min_length=1, max_length=500, description="why (kept with the version and audited)")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyBody(_Body):
    policy: dict[str, Any] = Field(description="the policy language: docs/mcp.md")


class SaveVersion(_Body):
    policy: dict[str, Any] | None = Field(default=None, description="the policy; omitted: the draft's")
    reason: Reason


class Activate(_Body):
    version: int = Field(ge=1, le=10**6)
    reason: Reason


class Rollback(_Body):
    reason: Reason
    fromVersion: int | None = Field(None, ge=1, le=1_000_000, description=(
        "The version you saw active and are rolling back from. Given, a repeat of this rollback (a retry, "
        "a second click) is answered with the state the first left and steps back no further; another "
        "active version is a 409. Without it, the rollback steps back from whatever is active."))


class Bind(_Body):
    policyId: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$", max_length=50)


class TermsBody(_Body):
    title: str = Field(min_length=1, max_length=200)
    markdown: str = Field(min_length=1, max_length=MAX_TERMS_BYTES)
    reason: Reason


@router.put("/v1/agent-policies/{policyId}/draft", summary="Write a guardrail policy's draft (tenant-admin)",
            **op("agents.saveDraft", PolicyDraft))
def save_draft(policyId: PolicyId, body: PolicyBody, p: Annotated[Platform, Depends(platform)],  # noqa: N803
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Keeps the draft as written, even invalid, with the problems found (capability ``admin``)."""
    return p.agents.policies.save_draft(who.tenant_id, policyId, body.policy, who.key_id)


@router.get("/v1/agent-policies/{policyId}/draft", summary="Read a guardrail policy's draft (tenant-admin)",
            **op("agents.getDraft", PolicyDraft, errors=(404,)))
def get_draft(policyId: PolicyId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
              who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """The draft and its problems (capability ``admin``); 404 when there is none."""
    return p.agents.policies.draft(who.tenant_id, policyId)


@router.post("/v1/agent-policies/validate", summary="Check a guardrail policy without saving it (tenant-admin)",
             **op("agents.validatePolicy", PolicyValidation))
def validate(body: PolicyBody, who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Whether the policy is valid and, if not, each problem by field (capability ``admin``). Writes nothing."""
    policy, problems = validate_policy(body.policy)
    return {"ok": policy is not None, "problems": problems}


@router.post("/v1/agent-policies/{policyId}/versions", status_code=201,
             summary="Save the next immutable version of a guardrail policy, with a reason (tenant-admin)",
             **op("agents.saveVersion", {201: PolicyVersion}, errors=(404, 409)))
def save_version(policyId: PolicyId, body: SaveVersion, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Validates (422 naming each problem) and stores the next version; it is not active until activated
    (capability ``admin``, audited)."""
    saved = p.agents.policies.save(who.tenant_id, policyId, body.policy, body.reason, who.key_id)
    p.audit.record(who.tenant_id, "agent-policy.saved", who, target=f"agent-policy:{policyId}",
                   after={"version": saved["version"]}, reason=body.reason)
    return saved


@router.get("/v1/agent-policies/{policyId}/versions", summary="A guardrail policy's versions, newest first",
            **op("agents.listVersions", PolicyVersionList))
def list_versions(request: Request, policyId: PolicyId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                  who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 100) -> dict:
    """Every saved version, newest first (capability ``admin``); follow ``next``."""
    found = p.agents.policies.versions(who.tenant_id, policyId, None)
    return in_memory(request, who.tenant_id, found, limit, cursor, Order(("version",), descending=True))


@router.get("/v1/agent-policies/{policyId}", summary="Which version of a guardrail policy is active",
            **op("agents.getActive", ActivePolicy, errors=(404,)))
def get_active(policyId: PolicyId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """The active version, who activated it and why (capability ``admin``); 404 if never activated."""
    return p.agents.policies.pointer(who.tenant_id, policyId)


@router.post("/v1/agent-policies/{policyId}/activate",
             summary="Make a version the one that decides agents' calls, at once (tenant-admin)",
             **op("agents.activate", ActivePolicy, errors=(404, 409)))
def activate(policyId: PolicyId, body: Activate, p: Annotated[Platform, Depends(platform)],  # noqa: N803
             who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """The next tool call of every agent bound to this policy is decided by this version (capability ``admin``,
    audited once per change). Activating the active version changes nothing and answers the activation in place;
    concurrent activations are applied one after the other."""
    active, changed = p.agents.policies.activate_once(who.tenant_id, policyId, body.version, body.reason,
                                                      who.key_id)
    if changed:
        p.audit.record(who.tenant_id, "agent-policy.activated", who, target=f"agent-policy:{policyId}",
                       before={"version": active.get("previousVersion")}, after={"version": body.version},
                       reason=body.reason)
    return active


@router.post("/v1/agent-policies/{policyId}/rollback",
             summary="Go back to the version active before this one, at once (tenant-admin)",
             **op("agents.rollback", ActivePolicy, errors=(404, 409)))
def rollback(policyId: PolicyId, body: Rollback, p: Annotated[Platform, Depends(platform)],  # noqa: N803
             who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Activates the previously active version (capability ``admin``, audited); 409 when there is none.
    With ``fromVersion``, a repeat is answered with the state the first left (audited once)."""
    active, changed = p.agents.policies.rollback_once(who.tenant_id, policyId, body.reason, who.key_id,
                                                      body.fromVersion)
    if changed:
        p.audit.record(who.tenant_id, "agent-policy.rolled-back", who, target=f"agent-policy:{policyId}",
                       before={"version": active.get("previousVersion")}, after={"version": active["version"]},
                       reason=body.reason)
    return active


@router.put("/v1/agent-keys/{keyId}/policy", summary="Bind an agent key to a guardrail policy (tenant-admin)",
            **op("agents.bindKey", AgentBinding, errors=(404,)))
def bind_key(keyId: KeyId, body: Bind, p: Annotated[Platform, Depends(platform)],  # noqa: N803
             who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """The key's tool calls are decided by this policy's active version (capability ``admin``, audited). A key
    without a binding uses the policy ``default``. 404 for a key of another tenant; 422 for a non-agent key."""
    key = p.keys.get(who.tenant_id, keyId)
    if key["role"] != Role.AGENT.value:
        raise ValidationFailed("only agent keys are bound to guardrail policies",
                               [FieldProblem("keyId", f"this is a {key['role']} key")])
    bound = p.agents.policies.bind(who.tenant_id, keyId, body.policyId, who.key_id)
    if bound.changed:  # binding it to the policy it is bound to records nothing
        p.audit.record(who.tenant_id, "agent-key.bound", who, target=f"apikey:{keyId}",
                       before={"policyId": bound.before["policyId"]} if bound.before else None,
                       after={"policyId": body.policyId})
    return bound.after


@router.put("/v1/agent-terms/{docId}", status_code=201,
            summary="Upload a new version of a terms document agents read (tenant-admin)",
            **op("agents.saveTerms", {201: TermsVersion}, errors=(409,)))
def save_terms(docId: DocId, body: TermsBody, p: Annotated[Platform, Depends(platform)],  # noqa: N803
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Stores the markdown as the document's next version; agents read the newest (MCP resource
    ``accrue://terms/<docId>``) (capability ``admin``, audited)."""
    if len(body.markdown.encode()) > MAX_TERMS_BYTES:
        raise ValidationFailed("the document is too long", [FieldProblem("markdown", f"at most {MAX_TERMS_BYTES} "
                                                                                     "bytes")])
    saved = p.agents.knowledge.save_terms(who.tenant_id, docId, body.title, body.markdown, body.reason, who.key_id)
    p.audit.record(who.tenant_id, "agent-terms.saved", who, target=f"agent-terms:{docId}",
                   after={"version": saved["version"]}, reason=body.reason)
    return saved


@router.get("/v1/agent-terms", summary="The terms documents agents read, newest version of each",
            **op("agents.listTerms", TermsList))
def list_terms(request: Request, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 100) -> dict:
    """Each document's newest version, without the text (capability ``admin``); follow ``next``."""
    return in_memory(request, who.tenant_id, p.agents.knowledge.list_terms(who.tenant_id), limit, cursor, Order(("docId",)))


@router.get("/v1/agent-trail", summary="The decision trail: every agent tool call, oldest first (tenant-admin)",
            **op("agents.trail", AgentCallList))
def trail(request: Request, p: Annotated[Platform, Depends(platform)],
          who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
          agentKeyId: Annotated[str | None, Query(pattern=r"^[a-z2-7]{12}$", max_length=12)] = None,  # noqa: N803
          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Each call's agent key, tool, arguments (no personal data), policy and version, decision with reasons,
    result and consent reference (capability ``admin``); follow ``next``."""
    after = position(request, who.tenant_id, cursor, str)
    calls = p.agents.trail.list(who.tenant_id, after=str(after[0]) if after else None, agent_key_id=agentKeyId,
                                limit=limit + 1)
    return keyset(request, who.tenant_id, calls, limit, lambda call: [call["position"]],
                  lambda call: {k: v for k, v in call.items() if k != "position"})
