"""Guardrail policies for agent keys: the language, and its versions.

A policy says what an agent key may do on the platform's behalf (docs/mcp.md):

* ``tools``: the tools it may call (``["*"]``: all of them);
* ``personalFields``: the personal fields it may see (none by default: ids only);
* ``hardLimits``: refused outright above them (points per action, points per
  customer per day, the agent's daily budget of points);
* ``softLimits``: above them an action is escalated to a person (a review item),
  and executes only once that person approves it;
* ``rewardCategories``: the reward categories it may redeem (``None``: any);
* ``requireConsent``: whether an action needs the customer's recorded consent.

Policies are versioned the way rule sets are (shared/rules/lifecycle.py), over the
same two containers and with the same guarantees: an editable draft; ``validate``;
``save`` stores the next immutable version with its author and reason (the
``ruleversions`` container refuses anything but a create, so a saved version can
never change, and two racing saves each get their own number); ``activate`` and
``rollback`` replace one pointer document under an ETag precondition and append
to the activation log, so two racing activations cannot both win silently. The
pointer is read on every tool call (a point read), so an activation or a rollback
changes decisions at once, in every process.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from shared.clock import Clock, iso
from shared.errors import Conflict, DocumentExists, FieldProblem, NotFound, PreconditionFailed, ValidationFailed
from shared.store.contention import attempts
from shared.store.layout import RULE_VERSIONS, RULESETS
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Filter, Query
from shared.store.replace import Change, replace

TOOL_NAMES = ("find_customer", "get_balance", "list_transactions", "explain_order_points", "get_order_status",
              "list_eligible_rewards", "quote_redemption", "quote_goodwill", "execute_quote", "open_case",
              "check_case")
PERSONAL_FIELDS = ("email", "name", "phone", "birthDate", "postalAddress")
MAX_POINTS = 10**9
VERSION_DOC = "agent-policy-version"
ACTIVATION_DOC = "agent-policy-activation"


class Limits(BaseModel):
    """Points; None: no limit of that kind."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    points_per_action: StrictInt | None = Field(default=None, alias="pointsPerAction", ge=0, le=MAX_POINTS)
    points_per_customer_per_day: StrictInt | None = Field(default=None, alias="pointsPerCustomerPerDay", ge=0,
                                                          le=MAX_POINTS)
    agent_daily_budget: StrictInt | None = Field(default=None, alias="agentDailyBudget", ge=0, le=MAX_POINTS)


class GuardrailPolicy(BaseModel):
    """One guardrail policy (the body of a version)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: str = Field(default="", max_length=1000)
    tools: list[str] = Field(default_factory=lambda: ["*"], max_length=len(TOOL_NAMES) + 1,
                             description='the tools the agent may call; ["*"]: every tool')
    personal_fields: list[Literal["email", "name", "phone", "birthDate", "postalAddress"]] = Field(
        default_factory=list, alias="personalFields", description="personal fields the agent may see; none by default")
    hard_limits: Limits = Field(default_factory=Limits, alias="hardLimits", description="above these: refused")
    soft_limits: Limits = Field(default_factory=Limits, alias="softLimits",
                                description="above these: escalated to a person, executed once approved")
    reward_categories: list[str] | None = Field(default=None, alias="rewardCategories", max_length=100,
                                                description="reward categories the agent may redeem; null: any")
    require_consent: bool = Field(default=True, alias="requireConsent",
                                  description="an action needs the customer's recorded consent reference")

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str]) -> list[str]:
        unknown = sorted(set(tools) - set(TOOL_NAMES) - {"*"})
        if unknown:
            raise ValueError(f"unknown tool(s) {unknown}; known: {list(TOOL_NAMES)}")
        return tools

    def allows_tool(self, tool: str) -> bool:
        return "*" in self.tools or tool in self.tools


def validate_policy(body: dict[str, Any]) -> tuple[GuardrailPolicy | None, list[dict[str, str]]]:
    """The policy, or the problems that make it invalid (field path and message)."""
    try:
        policy = GuardrailPolicy.model_validate(body)
    except ValidationError as error:
        return None, [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
    problems = []
    for kind in ("points_per_action", "points_per_customer_per_day", "agent_daily_budget"):
        soft, hard = getattr(policy.soft_limits, kind), getattr(policy.hard_limits, kind)
        if soft is not None and hard is not None and soft > hard:
            problems.append({"field": f"softLimits.{Limits.model_fields[kind].alias}",
                             "message": "a soft limit above the hard limit would never escalate"})
    return (None, problems) if problems else (policy, [])


def _checked(body: dict[str, Any]) -> GuardrailPolicy:
    policy, problems = validate_policy(body)
    if policy is None:
        raise ValidationFailed("the guardrail policy is invalid", [FieldProblem(p["field"], p["message"])
                                                                   for p in problems])
    return policy


def _version_id(policy_id: str, version: int) -> str:
    return f"agentpolicy:{policy_id}:{version:06d}"


def _pointer_id(policy_id: str) -> str:
    return f"agentpolicy-active:{policy_id}"


class GuardrailPolicies:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    # --- drafts --------------------------------------------------------------------

    def save_draft(self, tenant_id: str, policy_id: str, body: dict[str, Any], actor: str) -> dict[str, Any]:
        """Drafts are kept as given (even invalid) with the problems found, so an editor can iterate."""
        _, problems = validate_policy(body)
        doc = {"id": f"agentpolicy-draft:{policy_id}", "pk": tenant_id, "docType": "agent-policy-draft",
               "policyId": policy_id, "policy": body, "problems": problems, "updatedAt": iso(self._clock.now()),
               "updatedBy": actor}
        self._store.upsert(RULESETS, doc)
        return _public(doc)

    def draft(self, tenant_id: str, policy_id: str) -> dict[str, Any]:
        doc = self._store.read(RULESETS, tenant_id, f"agentpolicy-draft:{policy_id}")
        if doc is None:
            raise NotFound(f"guardrail policy {policy_id!r} has no draft")
        return _public(doc)

    # --- versions ------------------------------------------------------------------

    def save(self, tenant_id: str, policy_id: str, body: dict[str, Any] | None, reason: str,
             actor: str) -> dict[str, Any]:
        """Validate and store as the next immutable version (``body`` None: the draft's)."""
        if body is None:
            body = self.draft(tenant_id, policy_id)["policy"]
        policy = _checked(body)
        for _ in attempts():
            version = self._latest(tenant_id, policy_id) + 1
            doc = {"id": _version_id(policy_id, version), "pk": tenant_id, "docType": VERSION_DOC,
                   "ruleSetId": policy_id, "policyId": policy_id, "version": version, "at": iso(self._clock.now()),
                   "author": actor, "reason": reason, "policy": policy.model_dump(mode="json", by_alias=True)}
            try:
                self._store.create(RULE_VERSIONS, doc)
            except DocumentExists:
                continue  # another save took this number: take the next
            return _public(doc)
        raise Conflict("could not allocate a policy version number; retry")

    def _latest(self, tenant_id: str, policy_id: str) -> int:
        docs = self._store.query(RULE_VERSIONS, Query(
            pk=tenant_id, filters=(Filter("docType", "=", VERSION_DOC), Filter("ruleSetId", "=", policy_id)),
            order_by="version", descending=True, limit=1))
        return int(docs[0]["version"]) if docs else 0

    def versions(self, tenant_id: str, policy_id: str, limit: int | None = 100) -> list[dict[str, Any]]:
        """Saved versions, newest first: the newest ``limit``, or every one (``None``: keyset pages)."""
        filters = (Filter("docType", "=", VERSION_DOC), Filter("ruleSetId", "=", policy_id))
        docs = (sorted(read_all(self._store, RULE_VERSIONS, tenant_id, filters), key=lambda d: d["version"],
                       reverse=True)
                if limit is None else
                self._store.query(RULE_VERSIONS, Query(pk=tenant_id, filters=filters, order_by="version",
                                                       descending=True, limit=limit)))
        return [_public(d) for d in docs]

    def version(self, tenant_id: str, policy_id: str, version: int) -> dict[str, Any]:
        doc = self._store.read(RULE_VERSIONS, tenant_id, _version_id(policy_id, version))
        if doc is None:
            raise NotFound(f"guardrail policy {policy_id!r} has no version {version}")
        return _public(doc)

    # --- activation ----------------------------------------------------------------

    def active(self, tenant_id: str, policy_id: str) -> tuple[int, GuardrailPolicy] | None:
        """The active version and its policy, or None: one point read for the pointer, one for the version."""
        pointer = self._store.read(RULESETS, tenant_id, _pointer_id(policy_id))
        if pointer is None or pointer.get("version") is None:
            return None
        version = self.version(tenant_id, policy_id, int(pointer["version"]))
        return int(pointer["version"]), GuardrailPolicy.model_validate(version["policy"])

    def pointer(self, tenant_id: str, policy_id: str) -> dict[str, Any]:
        doc = self._store.read(RULESETS, tenant_id, _pointer_id(policy_id))
        if doc is None:
            raise NotFound(f"guardrail policy {policy_id!r} was never activated")
        return _public(doc)

    def activate(self, tenant_id: str, policy_id: str, version: int, reason: str, actor: str,
                 action: Literal["activate", "rollback"] = "activate") -> dict[str, Any]:
        return self.activate_once(tenant_id, policy_id, version, reason, actor, action)[0]

    def activate_once(self, tenant_id: str, policy_id: str, version: int, reason: str, actor: str,
                      action: Literal["activate", "rollback"] = "activate") -> tuple[dict[str, Any], bool]:
        """The pointer after making ``version`` active, and whether this call changed it:
        activating the active version changes nothing (a repeat, or a concurrent identical
        request, is answered with the activation in place). Concurrent activations are
        serialised by the pointer's ETag: a loser reads it again and decides again."""
        self.version(tenant_id, policy_id, version)  # 404 for a version that does not exist
        for _ in attempts():
            current = self._store.read(RULESETS, tenant_id, _pointer_id(policy_id))
            previous = (current or {}).get("version")
            if current is not None and previous == version:
                return _public(current), False
            history = list((current or {}).get("history", []))
            if previous is not None:
                history.append(previous)
            doc = {"id": _pointer_id(policy_id), "pk": tenant_id, "docType": "agent-policy-active",
                   "policyId": policy_id, "version": version, "previousVersion": previous,
                   "history": history[-50:], "activatedAt": iso(self._clock.now()), "activatedBy": actor,
                   "reason": reason, "action": action}
            try:
                if current is None:
                    saved = self._store.create(RULESETS, doc)
                else:
                    saved = self._store.upsert(RULESETS, doc, if_match=current["_etag"])
            except (PreconditionFailed, DocumentExists):
                continue  # another activation won meanwhile: decide again on what it left
            self._store.create(RULE_VERSIONS, {
                "id": f"agentpolicy-activation:{policy_id}:{uuid.uuid4().hex}", "pk": tenant_id,
                "docType": ACTIVATION_DOC, "ruleSetId": policy_id, "version": version, "at": doc["activatedAt"],
                "by": actor, "reason": reason, "action": action, "previousVersion": previous})
            return _public(saved), True
        raise Conflict(f"guardrail policy {policy_id!r} is being activated by many requests at once; retry")

    def rollback(self, tenant_id: str, policy_id: str, reason: str, actor: str) -> dict[str, Any]:
        """Back to the version active before the current one."""
        return self.rollback_once(tenant_id, policy_id, reason, actor)[0]

    def rollback_once(self, tenant_id: str, policy_id: str, reason: str, actor: str,
                      from_version: int | None = None) -> tuple[dict[str, Any], bool]:
        """``rollback``, and whether it changed anything. A rollback steps back from a version, so
        twenty clicks of one button must not walk back twenty steps: with ``from_version`` (the
        version the caller saw active) it steps back from that version once, and a repeat, once
        it has, is answered with the state it left (False); any other active version is a 409.
        Without it, the rollback steps back from whatever is active, and a lost race is a 409
        (stepping back again on what won would be a second step the caller never saw)."""
        for _ in attempts():
            doc = self._store.read(RULESETS, tenant_id, _pointer_id(policy_id))
            if doc is None:
                raise NotFound(f"guardrail policy {policy_id!r} was never activated")
            current = _public(doc)
            if from_version is not None and current["version"] != from_version:
                if current.get("action") == "rollback" and current.get("previousVersion") == from_version:
                    return current, False  # this rollback is done: answered as it was
                raise Conflict(f"guardrail policy {policy_id!r} is at version {current['version']}, not "
                               f"{from_version}: read it again")
            history = current.get("history") or []
            if not history:
                raise Conflict(f"guardrail policy {policy_id!r} has no earlier active version to roll back to")
            target = history[-1]
            # Drop the target from the history (it becomes current) and the current one is not pushed:
            # a rollback walks back, it does not make a ping-pong.
            rolled = dict(doc, version=target, previousVersion=current["version"], history=history[:-1],
                          activatedAt=iso(self._clock.now()), activatedBy=actor, reason=reason, action="rollback")
            try:
                saved = self._store.upsert(RULESETS, {k: v for k, v in rolled.items() if not k.startswith("_")},
                                           if_match=doc["_etag"])
            except PreconditionFailed:
                if from_version is None:
                    raise Conflict(f"guardrail policy {policy_id!r} changed meanwhile; read it again") from None
                continue  # decide again on what won: done (a repeat), or a 409
            self._store.create(RULE_VERSIONS, {
                "id": f"agentpolicy-activation:{policy_id}:{uuid.uuid4().hex}", "pk": tenant_id,
                "docType": ACTIVATION_DOC, "ruleSetId": policy_id, "version": target, "at": rolled["activatedAt"],
                "by": actor, "reason": reason, "action": "rollback", "previousVersion": current["version"]})
            return _public(saved), True
        raise Conflict(f"guardrail policy {policy_id!r} kept changing; read it again")

    # --- which policy binds an agent key -------------------------------------------------

    def bind(self, tenant_id: str, key_id: str, policy_id: str, actor: str) -> Change:
        """Bind the key to the policy; binding it to the policy it is bound to changes nothing."""
        done = replace(self._store, RULESETS, tenant_id, f"agentkey:{key_id}",
                       lambda _current: {"id": f"agentkey:{key_id}", "pk": tenant_id, "docType": "agent-binding",
                                         "keyId": key_id, "policyId": policy_id, "boundAt": iso(self._clock.now()),
                                         "boundBy": actor},
                       content=lambda doc: doc.get("policyId"))
        return Change(_public(done.before) if done.before else None, _public(done.after), done.changed)

    def bound_policy(self, tenant_id: str, key_id: str) -> str | None:
        doc = self._store.read(RULESETS, tenant_id, f"agentkey:{key_id}")
        return None if doc is None else doc["policyId"]


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("id", "pk", "docType", "ruleSetId")}
