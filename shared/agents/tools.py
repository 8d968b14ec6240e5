"""The agent tools: what an autonomous support or redemption agent may do, each
call decided by the agent key's guardrail policy and written to the decision trail.

Plain Python over the platform's services (no MCP here: shared/api/mcp.py is the
protocol adapter). ``AgentTools.call(principal, tool, arguments)`` validates the
arguments against the tool's input model, resolves the key's policy (the version
active now: an activation or a rollback changes the next decision), refuses a
tool the policy does not allow, runs the tool, and records the call. Every answer
has one envelope (``ToolAnswer``): ``decision`` (allowed, refused, escalated),
machine-readable ``reasons`` (``{"code", "detail"}``) an agent can relay, the
``policy`` that decided, and the tool's typed ``result``.

Actions (``quote_*`` then ``execute_quote``) follow the quote rules of
shared/agents/quotes.py. Hard limits refuse; soft limits escalate: the executed
quote becomes a review item (kind ``agent-action``, shared/reviews/queue.py) and
an ``agent.escalated`` webhook, and a person's approval executes the quote's
content with the quote's own idempotency key, so it happens exactly once whoever
races (approvals, agent retries). Every error a tool meets is answered as a
refusal naming the error's code; nothing is half-written (each action is one
idempotent ledger append, and the counters count a quote once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from shared.agents.knowledge import Knowledge
from shared.agents.limits import DailyCounters, day_of
from shared.agents.policy import GuardrailPolicies, GuardrailPolicy, Limits
from shared.agents.quotes import QuoteRefused, Quotes, idempotency_key
from shared.agents.trail import DecisionTrail, name_of
from shared.agents.words import explain_trace
from shared.app.auth import Principal
from shared.app.corrections import AdjustmentReasonCode, AdjustmentRequest
from shared.audit.log import Actor
from shared.clock import iso
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.errors import AccrueError, NotFound
from shared.ledger.entries import order_record_id
from shared.spend.redemptions import RedeemRequest
from shared.store.layout import BALANCES, customer_pk

DEFAULT_POLICY_ID = "default"
REVIEW_KIND = "agent-action"
CASE_KIND = "agent-case"
AGENT_ESCALATED = "agent.escalated"

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
Consent = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x20-\x7e]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FindCustomerIn(_In):
    customer_id: Id | None = Field(default=None, alias="customerId", description="the merchant's customer id")
    email: Annotated[str, StringConstraints(min_length=3, max_length=320)] | None = Field(
        default=None, description="the customer's email; found through a blind index, never stored in the trail")

    @model_validator(mode="after")
    def _one(self) -> "FindCustomerIn":
        if (self.customer_id is None) == (self.email is None):
            raise ValueError("give exactly one of customerId or email")
        return self


class CustomerIn(_In):
    customer_id: Id = Field(alias="customerId", description="the customer id (find_customer gives it)")


class TransactionsIn(CustomerIn):
    limit: int = Field(default=20, ge=1, le=50, description="how many of the newest entries")


class OrderIn(_In):
    order_id: Id = Field(alias="orderId", description="the merchant's order id")


class QuoteRedemptionIn(CustomerIn):
    reward_id: Id = Field(alias="rewardId", description="the reward to redeem (list_eligible_rewards)")
    consent_reference: Consent | None = Field(
        default=None, alias="consentReference",
        description="where the customer agreed to this (e.g. the chat message id); required by most policies")


class QuoteGoodwillIn(CustomerIn):
    points: int = Field(ge=1, le=10**9, description="points to give as goodwill")
    reason_code: Literal["goodwill", "service-recovery"] = Field(default="goodwill", alias="reasonCode")
    note: Annotated[str, StringConstraints(min_length=1, max_length=300)] = Field(
        description="why, for the people who review it (no personal data)")
    consent_reference: Consent | None = Field(default=None, alias="consentReference")


class ExecuteQuoteIn(_In):
    quote_id: Annotated[str, StringConstraints(pattern=r"^aq-[0-9a-f]{24}$")] = Field(alias="quoteId")
    content_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        alias="contentHash", description="the contentHash the quote came with: binds the execution to that content")


class OpenCaseIn(CustomerIn):
    topic: Literal["points-dispute", "redemption-problem", "account", "other"] = Field(
        description="what the case is about")
    summary: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="what the person should know (kept on the case, not in the trail)")


class CheckCaseIn(_In):
    case_id: Annotated[str, StringConstraints(pattern=r"^rv-[0-9a-f]{24}$")] = Field(
        alias="caseId", description="the caseId open_case (or an escalation) returned")


class Reason(BaseModel):
    code: str
    detail: str


class PolicyRef(BaseModel):
    policy_id: str | None = Field(default=None, alias="policyId")
    version: int | None = None


class ToolAnswer(BaseModel):
    """Every tool's answer: the decision, why, under which policy, and the result."""

    model_config = ConfigDict(populate_by_name=True)

    decision: Literal["allowed", "refused", "escalated"]
    reasons: list[Reason] = Field(default_factory=list)
    policy: PolicyRef
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    input: type[_In]
    run: Callable[["Call", Any], dict[str, Any]]
    writes: bool = False


@dataclass
class Call:
    principal: Principal
    policy_id: str
    version: int
    policy: GuardrailPolicy
    consent: str | None = None
    quote_id: str | None = None
    customer_id: str | None = None
    decision: str = "allowed"
    reasons: list[dict[str, str]] | None = None

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id


class Refused(AccrueError):
    """A guardrail said no; ``reason`` is the code relayed to the agent."""

    code = "agent-refused"
    status = 403

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class AgentTools:
    def __init__(self, platform: Any) -> None:
        self.p = platform
        self.policies = GuardrailPolicies(platform.store, platform.clock)
        self.quotes = Quotes(platform.store, platform.clock)
        self.counters = DailyCounters(platform.store)
        self.trail = DecisionTrail(platform.store, platform.clock)
        self.knowledge = Knowledge(platform.store, platform.clock)
        self.tools: dict[str, Tool] = {t.name: t for t in self._catalogue()}
        platform.reviews.register(REVIEW_KIND, approve=self._approve, reject=self._reject)
        platform.reviews.register(CASE_KIND, approve=self._close_case, reject=self._close_case)

    # --- the door ------------------------------------------------------------------------

    def call(self, principal: Principal, name: str, arguments: dict[str, Any] | None) -> ToolAnswer:
        principal.require("agent")
        arguments = dict(arguments or {})
        policy_id = self.policies.bound_policy(principal.tenant_id, principal.key_id) or DEFAULT_POLICY_ID
        active = self.policies.active(principal.tenant_id, policy_id)
        version = active[0] if active else None
        ref = PolicyRef(policyId=policy_id, version=version)
        tool = self.tools.get(name)

        def answer(decision: str, reasons: list[dict[str, str]], result: dict[str, Any] | None,
                   call: Call | None = None) -> ToolAnswer:
            # A call exists once the tool's model accepted the arguments: before that, the
            # trail keeps their shape only (``shape``), and no customer id from them.
            self.trail.record(principal.tenant_id, agent_key_id=principal.key_id, tool=name, arguments=arguments,
                              policy_id=policy_id, policy_version=version, decision=decision, reasons=reasons,
                              result=result, consent_reference=call.consent if call else None,
                              quote_id=call.quote_id if call else None,
                              customer_id=(call.customer_id or arguments.get("customerId")) if call else None,
                              validated=call is not None)
            return ToolAnswer(decision=decision, reasons=[Reason(**r) for r in reasons], policy=ref, result=result)

        if tool is None:
            return answer("refused", [_r("unknown-tool", f"there is no tool {name!r}")], None)
        if active is None:
            return answer("refused", [_r("no-active-policy", f"guardrail policy {policy_id!r} has no active "
                                                           "version: ask a tenant-admin to activate one")], None)
        policy = active[1]
        if not policy.allows_tool(name):
            return answer("refused", [_r("tool-not-permitted", f"policy {policy_id} v{version} does not let this "
                                                             f"agent call {name}")], None)
        try:
            data = tool.input.model_validate(arguments)
        except ValidationError as error:
            # Names by ``name_of``: an extra argument's name may be a value (the reason is kept
            # in the trail, which is never erased).
            detail = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in error.errors())
            return answer("refused", [_r("invalid-arguments", detail)], None)
        call = Call(principal, policy_id, version, policy)
        try:
            result = tool.run(call, data)
        except Refused as refused:
            return answer("refused", [_r(refused.reason, refused.message)], None, call)
        except QuoteRefused as refused:
            return answer("refused", [_r(refused.reason, refused.message)], None, call)
        except AccrueError as error:
            return answer("refused", [_r(error.code, error.message)], None, call)
        return answer(call.decision, call.reasons or [], result, call)

    # --- the tools -------------------------------------------------------------------

    def _catalogue(self) -> list[Tool]:
        return [
            Tool("find_customer", "Find a customer",
                 "Find a customer by their id, or by their email address (looked up through a blind index). Use "
                 "this first to get the customerId every other customer tool needs. Personal fields (email, name, "
                 "phone...) are returned only if this agent's policy allows them.", FindCustomerIn,
                 self._find_customer),
            Tool("get_balance", "Points balance",
                 "The customer's points now: available to spend, pending (held earns), reserved (redemptions "
                 "not yet confirmed) and lifetime earned, with dataAsOf (how fresh the figures are).", CustomerIn,
                 self._balance),
            Tool("list_transactions", "Recent points transactions",
                 "The customer's newest ledger entries (earns, redemptions, adjustments, expiries...), newest "
                 "first, with the running balance after each.", TransactionsIn, self._transactions),
            Tool("explain_order_points", "Explain an order's points",
                 "Why an order earned the points it did: the rule set version that evaluated it and, rule by rule, "
                 "whether it applied and why (in words). Use it when a customer asks why an order earned fewer "
                 "points than expected.", OrderIn, self._explain),
            Tool("get_order_status", "Order status",
                 "Whether an order is queued, credited, held for review or rejected (and why), and its points.",
                 OrderIn, self._order_status),
            Tool("list_eligible_rewards", "Rewards the customer can redeem",
                 "Every reward of the catalogue, split into those the customer can redeem now and those they "
                 "cannot, each with machine-readable reasons (balance, points on hold, per-customer limit, stock, "
                 "validity window, category not permitted to this agent).", CustomerIn, self._eligible),
            Tool("quote_redemption", "Quote a redemption",
                 "A dry run of redeeming a reward for the customer: exactly what would happen (points, balance "
                 "after) and whether it would be allowed, refused or escalated to a person. Nothing changes. "
                 "Returns quoteId and contentHash for execute_quote. Ask the customer first and pass where "
                 "they agreed as consentReference.", QuoteRedemptionIn, self._quote_redemption),
            Tool("quote_goodwill", "Quote a goodwill adjustment",
                 "A dry run of giving the customer goodwill points (service recovery). Nothing changes. Returns "
                 "quoteId and contentHash for execute_quote.", QuoteGoodwillIn, self._quote_goodwill),
            Tool("execute_quote", "Execute a quote",
                 "Carry out a quote exactly as quoted. Idempotent: executing it again returns the first outcome. "
                 "A quote expires after 10 minutes and is bound to its content. Above a soft limit the action is "
                 "escalated: it waits for a person's approval (check_case with the returned caseId).",
                 ExecuteQuoteIn, self._execute, writes=True),
            Tool("open_case", "Open a case for a person",
                 "Hand the conversation to a person: opens a case in the review queue with your summary. Use it "
                 "when the customer's problem needs a decision you may not take.", OpenCaseIn, self._open_case,
                 writes=True),
            Tool("check_case", "Check a case",
                 "The status of a case or an escalated action: open, approved (executed), rejected, and the "
                 "person's note.", CheckCaseIn, self._check_case),
        ]

    def _customer(self, call: Call, customer_id: str) -> dict[str, Any]:
        call.customer_id = customer_id
        return self.p.customers.get(call.tenant_id, customer_id)  # NotFound in another tenant

    def _living(self, call: Call, customer_id: str) -> dict[str, Any]:
        """The customer, for a tool that writes words about them (a case's summary, a goodwill
        note): refused once they are erased, since the erasure's scrub has already run."""
        doc = self._customer(call, customer_id)
        if doc.get("erasedAt"):
            raise Refused("customer-erased", f"customer {customer_id!r} was erased: nothing new is written "
                                             "about them")
        return doc

    def _forget_if_erased_meanwhile(self, tenant_id: str, customer_id: str) -> None:
        """After writing words about a customer: an erasure that ran between ``_living`` and the
        write scrubbed before the words existed, so scrub again. (The erasure marks the profile
        before it scrubs: a write it missed always sees the mark here.)"""
        doc = self.p.customers.get(tenant_id, customer_id)
        if doc.get("erasedAt"):
            self.forget_customer(tenant_id, customer_id)

    def _find_customer(self, call: Call, data: FindCustomerIn) -> dict[str, Any]:
        customer_id = data.customer_id
        if data.email is not None:
            customer_id = self.p.vault.find_by_email(call.tenant_id, data.email)
            if customer_id is None:
                raise NotFound("no customer of this tenant has this email")
        doc = self._customer(call, customer_id)
        view = {"customerId": customer_id, "joinDate": doc.get("joinDate"), "tier": doc.get("tier"),
                "tags": doc.get("tags") or [], "erased": bool(doc.get("erasedAt"))}
        allowed = call.policy.personal_fields
        if allowed and doc.get("personal"):
            opened = self.p.vault.open(doc)
            view["personalData"] = {k: v for k, v in opened.items() if k in allowed and v is not None}
        view["personalFieldsHidden"] = [f for f in ("email", "name", "phone", "birthDate", "postalAddress")
                                        if f not in allowed]
        return view

    def _balance(self, call: Call, data: CustomerIn) -> dict[str, Any]:
        self._customer(call, data.customer_id)
        doc = self.p.store.read(BALANCES, customer_pk(call.tenant_id, data.customer_id), "balance") or {}
        checkpoint = self.p.checkpoint.load().get("caughtUpAt")
        fresh = max(filter(None, (doc.get("lastEntryAt"), checkpoint)), default=None)
        return {"customerId": data.customer_id, "available": doc.get("available", 0),
                "pending": doc.get("pending", 0), "reserved": doc.get("reserved", 0),
                "lifetimeEarned": doc.get("lifetimeEarned", 0), "dataAsOf": fresh}

    def _transactions(self, call: Call, data: TransactionsIn) -> dict[str, Any]:
        self._customer(call, data.customer_id)
        entries = self.p.ledger.entries(call.tenant_id, data.customer_id, limit=data.limit)
        keep = ("entryType", "status", "signedAmount", "runningBalance", "referenceOrderId", "createdAt")
        out = []
        for entry in entries:
            view = {k: entry.get(k) for k in keep if entry.get(k) is not None}
            attributes = entry.get("attributes") or {}
            for key in ("rewardId", "redemptionId", "reasonCode", "rule"):
                if attributes.get(key) is not None:
                    view[key] = attributes[key]
            out.append(view)
        return {"customerId": data.customer_id, "entries": out}

    def _order(self, call: Call, order_id: str) -> dict[str, Any]:
        return self.p.intake.status(call.tenant_id, order_id)  # NotFound for another tenant's order

    def _order_status(self, call: Call, data: OrderIn) -> dict[str, Any]:
        status = self._order(call, data.order_id)
        call.customer_id = status.get("customerId")
        return status

    def _explain(self, call: Call, data: OrderIn) -> dict[str, Any]:
        status = self._order(call, data.order_id)
        call.customer_id = customer_id = status["customerId"]
        record = self.p.ledger.record(call.tenant_id, customer_id, order_record_id(data.order_id))
        if record is None:
            return {"orderId": data.order_id, "status": status["status"], "points": None,
                    "explanation": [f"The order is {status['status']}: it has not been evaluated yet."], "rules": []}
        if record.get("status") == "rejected":
            reason = record.get("reason") or {}
            return {"orderId": data.order_id, "status": "rejected", "points": 0, "rules": [],
                    "explanation": [f"The order was rejected ({reason.get('code', 'rejected')}): it earned nothing."]}
        trace = list(record.get("trace") or [])
        points = int(record.get("points") or 0)
        amount = (record.get("order") or {}).get("amount")
        return {"orderId": data.order_id, "status": record.get("status"), "points": points,
                "orderAmount": amount, "currency": (record.get("order") or {}).get("currency"),
                "ruleSetId": record.get("ruleSetId"), "ruleSetVersion": record.get("ruleSetVersion"),
                "explanation": explain_trace(trace, points),
                "rules": [{"rule": t.get("rule"), "status": t.get("status"), "matched": t.get("matched")}
                          for t in trace if "rule" in t]}

    def _eligible(self, call: Call, data: CustomerIn) -> dict[str, Any]:
        self._customer(call, data.customer_id)
        head = self.p.ledger.head(call.tenant_id, data.customer_id)
        now = self.p.clock.now()
        eligible, not_eligible = [], []
        for reward in self.p.spend.catalogue.list(call.tenant_id, None, 200):
            reasons = self._reward_reasons(call, data.customer_id, reward, head, now)
            item = {"rewardId": reward["rewardId"], "name": reward["name"], "pointsCost": reward["pointsCost"],
                    "category": reward.get("category")}
            (not_eligible if reasons else eligible).append({**item, "reasons": reasons} if reasons else item)
        return {"customerId": data.customer_id, "available": head.balance, "eligible": eligible,
                "notEligible": not_eligible}

    def _reward_reasons(self, call: Call, customer_id: str, reward: dict[str, Any], head: Any,
                        now: Any) -> list[dict[str, str]]:
        reasons = []
        cost = reward["pointsCost"]
        if head.balance < cost:
            reasons.append(_r("not-enough-points", f"needs {cost} points; {head.balance} are available"))
            if head.balance + head.pending >= cost:
                reasons.append(_r("points-on-hold", f"{head.pending} points are on hold (pending review): once "
                                                    "released they would cover it"))
        if reward.get("remaining") == 0:
            reasons.append(_r("out-of-stock", "no units are left"))
        if reward.get("validFrom") and iso(now) < reward["validFrom"]:
            reasons.append(_r("not-yet-available", f"redeemable from {reward['validFrom']}"))
        if reward.get("validUntil") and iso(now) >= reward["validUntil"]:
            reasons.append(_r("no-longer-available", f"was redeemable until {reward['validUntil']}"))
        limit = reward.get("perCustomerLimit")
        if limit is not None and self.p.spend.redemptions.redeemed_units(call.tenant_id, customer_id,
                                                                          reward["rewardId"]) >= limit:
            reasons.append(_r("redemption-limit-reached", f"at most {limit} per customer"))
        categories = call.policy.reward_categories
        if categories is not None and reward.get("category") not in categories:
            reasons.append(_r("category-not-permitted", f"this agent may redeem only {categories}; this reward is "
                                                        f"{reward.get('category')!r}"))
        return reasons

    # --- quotes and actions ---------------------------------------------------------

    def _consent(self, call: Call, consent: str | None) -> None:
        call.consent = consent
        if call.policy.require_consent and not consent:
            raise Refused("consent-required", "this action needs the customer's recorded consent: ask them, then "
                                              "quote again with consentReference")

    def _limits(self, call: Call, customer_id: str, points: int, quote_id: str | None) -> list[dict[str, str]]:
        """Refuse above a hard limit; return the soft limits passed (escalation reasons)."""
        day = day_of(self.p.clock.now())
        used = {"customer": self.counters.total(call.tenant_id, day, f"customer:{customer_id}", quote_id),
                "agent": self.counters.total(call.tenant_id, day, f"agent:{call.principal.key_id}", quote_id)}

        def over(limits: Limits) -> list[dict[str, str]]:
            found = []
            if limits.points_per_action is not None and points > limits.points_per_action:
                found.append(_r("points-per-action", f"{points} points is above {limits.points_per_action} per "
                                                     "action"))
            if limits.points_per_customer_per_day is not None and \
                    used["customer"] + points > limits.points_per_customer_per_day:
                found.append(_r("customer-daily-limit", f"the customer already had {used['customer']} points by "
                                                        f"agents today; the limit is "
                                                        f"{limits.points_per_customer_per_day}"))
            if limits.agent_daily_budget is not None and used["agent"] + points > limits.agent_daily_budget:
                found.append(_r("agent-budget-exhausted", f"this agent moved {used['agent']} points today; its "
                                                          f"daily budget is {limits.agent_daily_budget}"))
            return found

        hard = over(call.policy.hard_limits)
        if hard:
            raise Refused(hard[0]["code"], "; ".join(r["detail"] for r in hard))
        return over(call.policy.soft_limits)

    def _quote(self, call: Call, content: dict[str, Any], preview: dict[str, Any]) -> dict[str, Any]:
        soft = self._limits(call, content["customerId"], content["points"], None)
        quote = self.quotes.issue(call.tenant_id, {**content, "agentKeyId": call.principal.key_id,
                                                   "policyId": call.policy_id, "policyVersion": call.version})
        call.quote_id = quote["quoteId"]
        outcome = "escalated-on-execute" if soft else "executes"
        if soft:
            call.reasons = [_r("would-escalate", "executing this quote will send it to a person for approval"),
                            *soft]
        return {**quote, "wouldHappen": preview, "onExecute": outcome}

    def _quote_redemption(self, call: Call, data: QuoteRedemptionIn) -> dict[str, Any]:
        self._customer(call, data.customer_id)
        self._consent(call, data.consent_reference)
        reward = self.p.spend.catalogue.get(call.tenant_id, data.reward_id)
        head = self.p.ledger.head(call.tenant_id, data.customer_id)
        reasons = self._reward_reasons(call, data.customer_id, reward, head, self.p.clock.now())
        if reasons:
            raise Refused(reasons[0]["code"], reasons[0]["detail"])
        content = {"action": "redemption", "customerId": data.customer_id, "rewardId": data.reward_id,
                   "points": reward["pointsCost"], "category": reward.get("category"),
                   "consentReference": data.consent_reference}
        preview = {"pointsSpent": reward["pointsCost"], "reward": reward["name"],
                   "availableAfter": head.balance - reward["pointsCost"]}
        return self._quote(call, content, preview)

    def _quote_goodwill(self, call: Call, data: QuoteGoodwillIn) -> dict[str, Any]:
        self._living(call, data.customer_id)
        self._consent(call, data.consent_reference)
        head = self.p.ledger.head(call.tenant_id, data.customer_id)
        content = {"action": "goodwill", "customerId": data.customer_id, "points": data.points,
                   "reasonCode": data.reason_code, "note": data.note, "consentReference": data.consent_reference}
        return self._quote(call, content, {"pointsGiven": data.points, "availableAfter": head.balance + data.points})

    def _execute(self, call: Call, data: ExecuteQuoteIn) -> dict[str, Any]:
        content = self.quotes.load(call.tenant_id, data.quote_id, data.content_hash)
        call.quote_id, call.customer_id = data.quote_id, content["customerId"]
        call.consent = content.get("consentReference")
        done = self._done(call.tenant_id, data.quote_id, content)
        if done is not None:
            return {"quoteId": data.quote_id, "status": "executed", "replayed": True, "outcome": done}
        review = self._review_of(call.tenant_id, data.quote_id, content)
        if review is not None:  # escalated before: the person decides, not a retry
            call.decision = "escalated"
            call.reasons = [_r("awaiting-approval", f"case {review['reviewId']} is {review['status']}")]
            return {"quoteId": data.quote_id, "status": review["status"], "caseId": review["reviewId"]}
        if self.quotes.expired(content):
            raise QuoteRefused("quote-expired", f"quote {data.quote_id} expired at {content['expiresAt']}; ask for "
                                                "a new quote")
        if content["agentKeyId"] != call.principal.key_id:
            raise QuoteRefused("quote-of-another-agent", "a quote executes only for the agent key that asked for it")
        self._consent(call, content.get("consentReference"))
        if content["action"] == "goodwill":  # its note would go to a review item or the ledger
            self._living(call, content["customerId"])
        if content["action"] == "redemption":
            categories = call.policy.reward_categories
            if categories is not None and content.get("category") not in categories:
                raise Refused("category-not-permitted", f"this agent may redeem only {categories}")
        soft = self._limits(call, content["customerId"], content["points"], data.quote_id)
        if soft:
            review = self._escalate(call, data.quote_id, content, soft)
            call.decision, call.reasons = "escalated", soft
            return {"quoteId": data.quote_id, "status": "escalated", "caseId": review["reviewId"]}
        outcome = self._perform(call.tenant_id, data.quote_id, content, call.principal.key_id,
                                hard=call.policy.hard_limits)
        return {"quoteId": data.quote_id, "status": "executed", "replayed": False, "outcome": outcome}

    def _done(self, tenant_id: str, quote_id: str, content: dict[str, Any]) -> dict[str, Any] | None:
        prefix = "redeem" if content["action"] == "redemption" else "adjust"
        marker = self.p.ledger.marker(tenant_id, content["customerId"], f"{prefix}:{idempotency_key(quote_id)}")
        return None if marker is None else dict(marker.get("outcome") or {"transactionId": marker.get("transactionId")})

    def _review_of(self, tenant_id: str, quote_id: str, content: dict[str, Any]) -> dict[str, Any] | None:
        from shared.reviews.queue import review_id
        try:
            return self.p.reviews.get(tenant_id, review_id(REVIEW_KIND, content["customerId"], quote_id))
        except NotFound:
            return None

    def _perform(self, tenant_id: str, quote_id: str, content: dict[str, Any], actor: str,
                 hard: Limits | None) -> dict[str, Any]:
        """Count the quote against the day's counters (refused above a hard limit; ``hard``
        None: a person approved it), then make the one idempotent ledger append."""
        day = day_of(self.p.clock.now())
        points = content["points"]
        subjects = [(f"agent:{content['agentKeyId']}", hard.agent_daily_budget if hard else None,
                     "agent-budget-exhausted"),
                    (f"customer:{content['customerId']}", hard.points_per_customer_per_day if hard else None,
                     "customer-daily-limit")]
        counted = []
        try:
            for subject, limit, code in subjects:
                if not self.counters.add(tenant_id, day, subject, quote_id, points, limit).ok:
                    raise Refused(code, f"the daily limit of {limit} points would be passed (counted concurrently)")
                counted.append(subject)
            key = idempotency_key(quote_id)
            if content["action"] == "redemption":
                result = self.p.spend.redemptions.redeem(tenant_id, content["customerId"], RedeemRequest(
                    idempotencyKey=key, rewardId=content["rewardId"], mode="direct"), actor)
                return dict(result.body)
            outcome = self.p.corrections.adjust(tenant_id, content["customerId"], AdjustmentRequest(
                points=points, reasonCode=AdjustmentReasonCode(content["reasonCode"]),
                reason=f"agent goodwill (quote {quote_id}): {content['note']}", idempotencyKey=key), actor)
            return {**outcome.outcome, "transactionId": outcome.transaction_id}
        except AccrueError:
            if self._done(tenant_id, quote_id, content) is None:
                for subject in counted:  # nothing was written: the points are free again
                    self.counters.remove(tenant_id, day, subject, quote_id)
            raise

    # --- escalation -------------------------------------------------------------------

    def _escalate(self, call: Call, quote_id: str, content: dict[str, Any],
                  reasons: list[dict[str, str]]) -> dict[str, Any]:
        details = {"quoteId": quote_id, "content": {k: v for k, v in content.items() if k != "note"},
                   "note": content.get("note"), "policyId": call.policy_id, "policyVersion": call.version}
        review = self.p.reviews.submit(call.tenant_id, REVIEW_KIND, content["customerId"], quote_id,
                                       [dict(r) for r in reasons], details)
        if details["note"]:
            self._forget_if_erased_meanwhile(call.tenant_id, content["customerId"])
        self.p.webhooks.publish(call.tenant_id, AGENT_ESCALATED, {
            "caseId": review["reviewId"], "quoteId": quote_id, "customerId": content["customerId"],
            "agentKeyId": content["agentKeyId"], "action": content["action"], "points": content["points"],
            "reasons": [r["code"] for r in reasons]}, source_id=f"agent-escalation:{quote_id}")
        return review

    def _approve(self, review: dict[str, Any], who: Actor, note: str | None) -> dict[str, Any]:
        details = review["details"]
        content = dict(details["content"], note=details.get("note"))
        quote_id = details["quoteId"]
        outcome = self._perform(review["tenantId"], quote_id, content, content["agentKeyId"], hard=None)
        self.trail.record(review["tenantId"], agent_key_id=content["agentKeyId"], tool="execute_quote",
                          arguments={"quoteId": quote_id}, policy_id=details.get("policyId"),
                          policy_version=details.get("policyVersion"), decision="approved",
                          reasons=[_r("approved-by-person", f"approved by {who.key_id}")], result=outcome,
                          consent_reference=content.get("consentReference"), quote_id=quote_id,
                          customer_id=content["customerId"], decided_by=who.key_id)
        return {"quoteId": quote_id, "outcome": outcome}

    def _reject(self, review: dict[str, Any], who: Actor, note: str | None) -> dict[str, Any]:
        details = review["details"]
        self.trail.record(review["tenantId"], agent_key_id=details["content"]["agentKeyId"], tool="execute_quote",
                          arguments={"quoteId": details["quoteId"]}, policy_id=details.get("policyId"),
                          policy_version=details.get("policyVersion"), decision="rejected",
                          reasons=[_r("rejected-by-person", f"rejected by {who.key_id}")], result=None,
                          quote_id=details["quoteId"], customer_id=review["customerId"], decided_by=who.key_id)
        return {"quoteId": details["quoteId"], "executed": False}

    def forget_customer(self, tenant_id: str, customer_id: str) -> None:
        """Erasure: what an agent wrote about the customer in words (a case's summary, the
        note of a goodwill quote awaiting a person) is replaced in their review items. Left:
        a quote's own copy expires with the quote (30 days), and an executed goodwill's note
        is in its adjustment's reason in the ledger, which is never rewritten."""
        self.p.reviews.erase_text(tenant_id, customer_id, (CASE_KIND, REVIEW_KIND), ("summary", "note"))

    # --- cases ------------------------------------------------------------------------

    def _open_case(self, call: Call, data: OpenCaseIn) -> dict[str, Any]:
        self._living(call, data.customer_id)
        import uuid
        case_ref = f"case-{uuid.uuid4().hex[:16]}"
        review = self.p.reviews.submit(call.tenant_id, CASE_KIND, data.customer_id, case_ref,
                                       [_r(data.topic, "opened by an agent")],
                                       {"topic": data.topic, "summary": data.summary,
                                        "agentKeyId": call.principal.key_id})
        self._forget_if_erased_meanwhile(call.tenant_id, data.customer_id)
        return {"caseId": review["reviewId"], "status": review["status"]}

    def _check_case(self, call: Call, data: CheckCaseIn) -> dict[str, Any]:
        review = self.p.reviews.get(call.tenant_id, data.case_id)
        if review["kind"] not in (CASE_KIND, REVIEW_KIND):
            raise NotFound(f"case {data.case_id!r} does not exist")
        call.customer_id = review["customerId"]
        view = {"caseId": review["reviewId"], "kind": review["kind"], "status": review["status"],
                "openedAt": review["createdAt"], "decidedAt": review.get("decidedAt"), "note": review.get("note")}
        if review["kind"] == REVIEW_KIND and review["status"] == "approved":
            view["outcome"] = (review.get("result") or {}).get("outcome")
        return {k: v for k, v in view.items() if v is not None}

    def _close_case(self, review: dict[str, Any], who: Actor, note: str | None) -> dict[str, Any]:
        return {"closedBy": who.key_id}

    # --- descriptions for the protocol adapter -------------------------------------------

    def input_schema(self, name: str) -> dict[str, Any]:
        return self.tools[name].input.model_json_schema(by_alias=True)


def output_schema() -> dict[str, Any]:
    return ToolAnswer.model_json_schema(by_alias=True)


def _r(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail}


def _location(loc: tuple[Any, ...]) -> str:
    """Where a refused argument is, its names by ``name_of`` (list positions as they are)."""
    return ".".join(str(p) if isinstance(p, int) else name_of(p) for p in loc) or "arguments"
