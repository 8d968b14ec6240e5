"""The MCP tool server through the real ASGI app with the official MCP client: tools and
resources, every tool, the guardrails (hard limits, soft limits escalated to a person,
budgets, permitted categories, consent, personal fields), quotes (replayed, expired,
altered), tenants kept apart, policy rollback, the transport mode, and a scripted
deterministic agent resolving a support case, read back from the decision trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio

from shared.agents.policy import TOOL_NAMES
from shared.app.auth import Role
from shared.store.layout import LEDGER, SYSTEM, customer_pk
from shared.store.port import Filter, Query
from tests.conftest import auth, make_tenant
from tests.unit.agents.conftest import POLICY, World, set_policy
from tests.unit.agents.mcp_client import call, session


def run(client, key: str, script) -> Any:
    async def main() -> Any:
        async with session(key, app=client.app) as mcp:
            return await script(mcp)
    return anyio.run(main)


def balance(platform, customer_id: str = "ann") -> int:
    return platform.ledger.head("acme", customer_id).balance


def ledger_entries(platform, key_fragment: str, customer_id: str = "ann") -> list[dict]:
    docs = platform.store.query(LEDGER, Query(pk=customer_pk("acme", customer_id),
                                              filters=(Filter("docType", "=", "entry"),), limit=1000))
    return [d for d in docs if key_fragment in (d.get("idempotencyKey") or "")]


# --- discovery ------------------------------------------------------------------------


def test_lists_every_tool_with_typed_schemas_and_the_resources(client, platform, world: World) -> None:
    saved = client.put("/v1/agent-terms/programme-terms", headers=auth(world.tenant.admin),
                       json={"title": "Programme terms", "markdown": "# Terms\n\nPoints expire after a year.\n",
                             "reason": "launch"})
    assert saved.status_code == 201 and saved.json()["version"] == 1
    client.put("/v1/agent-terms/programme-terms", headers=auth(world.tenant.admin),
               json={"title": "Programme terms", "markdown": "# Terms\n\nPoints expire after two years.\n",
                     "reason": "longer expiry"})

    async def script(mcp):
        tools = (await mcp.list_tools()).tools
        resources = (await mcp.list_resources()).resources
        read = {uri: (await mcp.read_resource(uri)).contents[0].text
                for uri in ("accrue://catalogue", "accrue://earning-rules", "accrue://terms/programme-terms")}
        return tools, resources, read

    tools, resources, read = run(client, world.agent, script)
    assert sorted(t.name for t in tools) == sorted(TOOL_NAMES)
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.input_schema["type"] == "object" and tool.output_schema["required"] == ["decision", "policy"]
        assert tool.annotations.read_only_hint == (tool.name not in ("execute_quote", "open_case"))
    assert tools[0].input_schema["properties"].keys() >= {"customerId", "email"}
    assert {str(r.uri) for r in resources} == {"accrue://catalogue", "accrue://earning-rules",
                                               "accrue://terms/programme-terms"}
    assert '"coffee"' in read["accrue://catalogue"] and '"category": "drinks"' in read["accrue://catalogue"]
    assert "**Big basket double**: when order.total >= 50 then multiply earned by 2" in read["accrue://earning-rules"]
    assert "two years" in read["accrue://terms/programme-terms"] and "version 2" in read["accrue://terms/programme-terms"]


def test_the_transport_is_stateless_json(client, world: World) -> None:
    """One JSON body per POST, no server-sent events, no session id: what Functions can serve."""
    response = client.post("/mcp", headers={**auth(world.agent), "Accept": "application/json, text/event-stream",
                                            "Content-Type": "application/json"},
                           json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "mcp-session-id" not in response.headers
    assert len(response.json()["result"]["tools"]) == len(TOOL_NAMES)


def test_only_agent_keys_reach_the_server(client, world: World) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    missing = client.post("/mcp", json=body, headers=headers)
    assert missing.status_code == 401 and missing.headers["content-type"].startswith("application/problem+json")
    merchant = client.post("/mcp", json=body, headers={**headers, **auth(world.tenant.merchant)})
    assert merchant.status_code == 403 and "agent keys only" in merchant.json()["detail"]
    bad = client.post("/mcp", json=body, headers={**headers, **auth("acr_aaaaaaaaaaaa_" + "x" * 43)})
    assert bad.status_code == 401


# --- the scripted agent: a support case end to end ------------------------------------------


def test_a_scripted_agent_resolves_a_support_case_and_the_trail_tells_it(client, platform, world: World) -> None:
    """The customer asks why order o-ann-1 earned fewer points than expected (they hoped for the
    double), then redeems a coffee. A deterministic script plays the agent."""

    async def agent(mcp) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        found = await call(mcp, "find_customer", email="ann@example.com")
        customer = found["result"]["customerId"]
        seen["status"] = await call(mcp, "get_order_status", orderId="o-ann-1")
        seen["explain"] = await call(mcp, "explain_order_points", orderId="o-ann-1")
        seen["balance"] = await call(mcp, "get_balance", customerId=customer)
        seen["transactions"] = await call(mcp, "list_transactions", customerId=customer, limit=5)
        seen["eligible"] = await call(mcp, "list_eligible_rewards", customerId=customer)
        choice = seen["eligible"]["result"]["eligible"][0]["rewardId"]
        quote = await call(mcp, "quote_redemption", customerId=customer, rewardId=choice,
                           consentReference="chat-42:msg-7")
        seen["quote"] = quote
        seen["executed"] = await call(mcp, "execute_quote", quoteId=quote["result"]["quoteId"],
                                      contentHash=quote["result"]["contentHash"])
        seen["case"] = await call(mcp, "open_case", customerId=customer, topic="points-dispute",
                                  summary="Customer expected double points on o-ann-1; explained the 50 EUR threshold.")
        seen["checked"] = await call(mcp, "check_case", caseId=seen["case"]["result"]["caseId"])
        seen["customer"] = customer
        return seen

    seen = run(client, world.agent, agent)
    assert seen["customer"] == "ann"
    assert seen["status"]["result"]["status"] == "credited" and seen["status"]["result"]["points"] == 200
    explanation = seen["explain"]["result"]["explanation"]
    assert any("“Base earn” applied" in line for line in explanation)
    assert any("“Big basket double” did not apply: order.total >= 50 was not true" in line for line in explanation)
    assert explanation[-1] == "In total the order earned 200 points from 1 applied rule(s)."
    assert seen["explain"]["result"]["ruleSetVersion"] == 1
    assert seen["balance"]["result"]["available"] == 200 and seen["balance"]["result"]["dataAsOf"]
    assert seen["transactions"]["result"]["entries"][0]["entryType"] == "EARN"
    eligible = seen["eligible"]["result"]
    assert [r["rewardId"] for r in eligible["eligible"]] == ["coffee"]
    reasons = {r["rewardId"]: [x["code"] for x in r["reasons"]] for r in eligible["notEligible"]}
    assert reasons == {"cake": ["not-enough-points"], "mug": ["category-not-permitted"]}
    assert seen["quote"]["result"]["wouldHappen"] == {"pointsSpent": 100, "reward": "Coffee", "availableAfter": 100}
    assert seen["executed"]["result"]["status"] == "executed" and seen["executed"]["result"]["replayed"] is False
    assert balance(platform) == 100
    assert seen["checked"]["result"]["status"] == "open" and seen["checked"]["result"]["kind"] == "agent-case"

    # The decision trail, read back over the API by a tenant-admin.
    page = client.get("/v1/agent-trail", headers=auth(world.tenant.admin), params={"agentKeyId": world.agent_id})
    assert page.status_code == 200, page.text
    calls = page.json()["items"]
    assert [c["tool"] for c in calls] == ["find_customer", "get_order_status", "explain_order_points", "get_balance",
                                          "list_transactions", "list_eligible_rewards", "quote_redemption",
                                          "execute_quote", "open_case", "check_case"]
    assert all(c["decision"] == "allowed" and c["policyId"] == "default" and c["policyVersion"] == 1 for c in calls)
    assert calls[0]["arguments"] == {"email": "[redacted]"}
    assert "ann@example.com" not in page.text and "Ann Example" not in page.text
    assert calls[8]["arguments"]["summary"].endswith("characters]")  # free text kept as its length only
    executed = calls[7]
    assert executed["consentReference"] == "chat-42:msg-7" and executed["quoteId"] == seen["quote"]["result"]["quoteId"]
    assert executed["customerId"] == "ann" and executed["result"]["status"] == "executed"
    # Paged: follow next.
    first = client.get("/v1/agent-trail", headers=auth(world.tenant.admin), params={"limit": 4}).json()
    second = client.get(first["next"], headers=auth(world.tenant.admin)).json()
    assert [c["callId"] for c in first["items"] + second["items"]] == [c["callId"] for c in calls[:8]]


# --- guardrails -----------------------------------------------------------------------------


def test_personal_fields_are_hidden_unless_the_policy_allows_them(client, platform, world: World) -> None:
    hidden = run(client, world.agent, lambda mcp: call(mcp, "find_customer", customerId="ann"))
    assert "personalData" not in hidden["result"] and "email" in hidden["result"]["personalFieldsHidden"]
    set_policy(platform, "acme", {**POLICY, "personalFields": ["email"]})
    shown = run(client, world.agent, lambda mcp: call(mcp, "find_customer", customerId="ann"))
    assert shown["result"]["personalData"] == {"email": "ann@example.com"}  # the name stays hidden
    assert shown["policy"]["version"] == 2
    trail = platform.agents.trail.list("acme")
    assert "ann@example.com" not in repr(trail)


def test_a_hard_limit_refuses_and_writes_nothing(client, platform, world: World) -> None:
    before = balance(platform)
    answer = run(client, world.agent, lambda mcp: call(mcp, "quote_goodwill", customerId="ann", points=1500,
                                                       note="parcel lost", consentReference="chat-1"))
    assert answer["decision"] == "refused" and answer["reasons"][0]["code"] == "points-per-action"
    assert answer["result"] is None and balance(platform) == before
    assert platform.agents.trail.list("acme")[-1]["decision"] == "refused"


def test_consent_and_category_are_enforced(client, platform, world: World) -> None:
    async def script(mcp):
        return (await call(mcp, "quote_redemption", customerId="ann", rewardId="coffee"),
                await call(mcp, "quote_redemption", customerId="ann", rewardId="mug", consentReference="c-1"))
    no_consent, wrong_category = run(client, world.agent, script)
    assert no_consent["reasons"][0]["code"] == "consent-required"
    assert wrong_category["reasons"][0]["code"] == "category-not-permitted"


def _quote(mcp, points: int):
    return call(mcp, "quote_goodwill", customerId="ann", points=points, note="late", consentReference="chat-9")


def test_a_soft_limit_escalates_a_person_approves_and_it_executes_exactly_once(client, platform,
                                                                               world: World) -> None:
    async def ask(mcp):
        quote = await _quote(mcp, 500)
        first = await call(mcp, "execute_quote", quoteId=quote["result"]["quoteId"],
                           contentHash=quote["result"]["contentHash"])
        again = await call(mcp, "execute_quote", quoteId=quote["result"]["quoteId"],
                           contentHash=quote["result"]["contentHash"])
        return quote, first, again

    quote, first, again = run(client, world.agent, ask)
    assert quote["decision"] == "allowed" and quote["result"]["onExecute"] == "escalated-on-execute"
    assert first["decision"] == "escalated" and first["reasons"][0]["code"] == "points-per-action"
    case_id = first["result"]["caseId"]
    assert again["decision"] == "escalated" and again["result"]["caseId"] == case_id
    assert balance(platform) == 200  # nothing happened yet

    review = client.get(f"/v1/reviews/{case_id}", headers=auth(world.tenant.admin)).json()
    assert review["kind"] == "agent-action" and review["details"]["content"]["points"] == 500
    approved = client.post(f"/v1/reviews/{case_id}/approve", headers=auth(world.tenant.admin),
                           json={"note": "fine, loyal customer"})
    assert approved.status_code == 200, approved.text
    assert balance(platform) == 700
    twice = client.post(f"/v1/reviews/{case_id}/approve", headers=auth(world.tenant.admin), json={})
    assert twice.status_code == 409

    async def after(mcp):
        return (await call(mcp, "check_case", caseId=case_id),
                await call(mcp, "execute_quote", quoteId=quote["result"]["quoteId"],
                           contentHash=quote["result"]["contentHash"]))
    checked, replay = run(client, world.agent, after)
    assert checked["result"]["status"] == "approved" and checked["result"]["outcome"]["points"] == 500
    assert replay["result"]["status"] == "executed" and replay["result"]["replayed"] is True
    assert balance(platform) == 700 and len(ledger_entries(platform, quote["result"]["quoteId"])) == 1
    decisions = [(c["tool"], c["decision"]) for c in platform.agents.trail.list("acme")]
    assert ("execute_quote", "escalated") in decisions and ("execute_quote", "approved") in decisions


def test_approvals_and_executions_racing_on_one_escalated_quote_execute_it_once(client, platform,
                                                                                world: World) -> None:
    quote = run(client, world.agent, lambda mcp: _quote(mcp, 400))["result"]
    principal = platform.keys.verify(world.agent)
    escalated = platform.agents.call(principal, "execute_quote", {"quoteId": quote["quoteId"],
                                                                  "contentHash": quote["contentHash"]})
    case_id = escalated.result["caseId"]
    admin = platform.keys.verify(world.tenant.admin)
    outcomes: list[str] = []

    def approve() -> None:
        try:
            platform.reviews.approve("acme", case_id, admin, "ok")
            outcomes.append("approved")
        except Exception as error:  # noqa: BLE001 - the losers' typed errors are counted
            outcomes.append(type(error).__name__)

    def execute() -> None:
        answer = platform.agents.call(principal, "execute_quote", {"quoteId": quote["quoteId"],
                                                                   "contentHash": quote["contentHash"]})
        outcomes.append(f"agent:{answer.decision}")

    from tests.conftest import run_in_threads
    run_in_threads(lambda i: approve() if i % 2 else execute(), [(i,) for i in range(20)], timeout=60)
    assert outcomes.count("approved") == 1, outcomes
    assert len(outcomes) == 20
    assert balance(platform) == 600 and len(ledger_entries(platform, quote["quoteId"])) == 1


def test_the_agent_budget_runs_out_and_racing_executions_never_pass_it(client, platform, world: World) -> None:
    set_policy(platform, "acme", {**POLICY, "softLimits": {}, "hardLimits": {"agentDailyBudget": 1000},
                                  "requireConsent": False})
    principal = platform.keys.verify(world.agent)
    quotes = [platform.agents.call(principal, "quote_goodwill", {"customerId": "ann", "points": 100,
                                                                 "note": "sorry"}).result for _ in range(20)]
    answers: list[Any] = []
    from tests.conftest import run_in_threads
    run_in_threads(lambda q: answers.append(platform.agents.call(
        principal, "execute_quote", {"quoteId": q["quoteId"], "contentHash": q["contentHash"]})),
        [(q,) for q in quotes], timeout=60)
    executed = [a for a in answers if a.decision == "allowed"]
    refused = [a for a in answers if a.decision == "refused"]
    assert len(executed) == 10 and len(refused) == 10
    assert {a.reasons[0].code for a in refused} == {"agent-budget-exhausted"}
    assert balance(platform) == 200 + 1000
    quote = platform.agents.call(principal, "quote_goodwill", {"customerId": "ann", "points": 1, "note": "x"})
    assert quote.decision == "refused" and quote.reasons[0].code == "agent-budget-exhausted"
    counter = platform.store.query(SYSTEM, Query(pk="agent-counters:acme", filters=(), limit=100))
    totals = {d["subject"]: d["points"] for d in counter if "quoteId" not in d}  # not the quotes' markers
    assert totals[f"agent:{world.agent_id}"] == 1000
    # The counter holds its total only, whatever the number of quotes it counted.
    assert all("quotes" not in d for d in counter)


def test_one_quote_executed_twenty_times_at_once_writes_once(client, platform, world: World) -> None:
    principal = platform.keys.verify(world.agent)
    quote = platform.agents.call(principal, "quote_redemption", {"customerId": "ann", "rewardId": "coffee",
                                                                 "consentReference": "chat-3"}).result
    answers: list[Any] = []
    from tests.conftest import run_in_threads
    run_in_threads(lambda: answers.append(platform.agents.call(
        principal, "execute_quote", {"quoteId": quote["quoteId"], "contentHash": quote["contentHash"]})),
        [() for _ in range(20)], timeout=60)
    assert [a.decision for a in answers] == ["allowed"] * 20
    assert sum(1 for a in answers if not a.result["replayed"]) >= 1
    assert balance(platform) == 100 and len(ledger_entries(platform, quote["quoteId"])) == 1


# --- quotes ------------------------------------------------------------------------------


def test_a_quote_replayed_expired_or_altered(client, platform, clock, world: World) -> None:
    async def script(mcp):
        ok = (await call(mcp, "quote_redemption", customerId="ann", rewardId="coffee", consentReference="c"))["result"]
        late = (await call(mcp, "quote_redemption", customerId="ann", rewardId="coffee", consentReference="c"))["result"]
        first = await call(mcp, "execute_quote", quoteId=ok["quoteId"], contentHash=ok["contentHash"])
        replay = await call(mcp, "execute_quote", quoteId=ok["quoteId"], contentHash=ok["contentHash"])
        altered = await call(mcp, "execute_quote", quoteId=late["quoteId"], contentHash="0" * 64)
        return ok, late, first, replay, altered

    ok, late, first, replay, altered = run(client, world.agent, script)
    assert first["result"]["replayed"] is False and replay["result"]["replayed"] is True
    assert replay["result"]["outcome"] == first["result"]["outcome"]
    assert altered["reasons"][0]["code"] == "quote-altered"
    assert balance(platform) == 100

    # Tampered with where it is stored: the content no longer hashes to the quote's hash.
    doc = platform.store.read(SYSTEM, "agent-quotes:acme", late["quoteId"])
    platform.store.upsert(SYSTEM, {**{k: v for k, v in doc.items() if not k.startswith("_")},
                                   "content": {**doc["content"], "points": 1}})
    tampered = run(client, world.agent, lambda mcp: call(mcp, "execute_quote", quoteId=late["quoteId"],
                                                         contentHash=late["contentHash"]))
    assert tampered["reasons"][0]["code"] == "quote-altered"

    fresh = run(client, world.agent, lambda mcp: call(mcp, "quote_redemption", customerId="ann",
                                                      rewardId="coffee", consentReference="c"))["result"]
    clock.advance(timedelta(minutes=11))
    expired = run(client, world.agent, lambda mcp: call(mcp, "execute_quote", quoteId=fresh["quoteId"],
                                                        contentHash=fresh["contentHash"]))
    assert expired["decision"] == "refused" and expired["reasons"][0]["code"] == "quote-expired"
    assert balance(platform) == 100  # only the first quote ever executed


# --- tenants and policies -----------------------------------------------------------------


def test_another_tenants_agent_sees_and_executes_nothing_of_this_tenant(client, platform, world: World) -> None:
    make_tenant(platform, "globex")
    set_policy(platform, "globex", {**POLICY, "personalFields": ["email", "name"]})
    foreign = platform.keys.issue("globex", Role.AGENT, None).secret_key
    quote = run(client, world.agent, lambda mcp: call(mcp, "quote_redemption", customerId="ann",
                                                      rewardId="coffee", consentReference="c"))["result"]
    case = run(client, world.agent, lambda mcp: call(mcp, "open_case", customerId="ann", topic="other",
                                                     summary="x"))["result"]

    async def script(mcp):
        return [await call(mcp, "find_customer", customerId="ann"),
                await call(mcp, "find_customer", email="ann@example.com"),
                await call(mcp, "get_balance", customerId="ann"),
                await call(mcp, "explain_order_points", orderId="o-ann-1"),
                await call(mcp, "execute_quote", quoteId=quote["quoteId"], contentHash=quote["contentHash"]),
                await call(mcp, "check_case", caseId=case["caseId"])]

    answers = run(client, foreign, script)
    assert [a["reasons"][0]["code"] for a in answers] == ["not-found"] * 6
    assert balance(platform) == 200
    assert platform.agents.trail.list("globex") and all(
        c["agentKeyId"] != world.agent_id for c in platform.agents.trail.list("globex"))


def test_a_policy_rollback_changes_decisions_at_once(client, platform, world: World) -> None:
    admin = auth(world.tenant.admin)
    narrower = {**POLICY, "tools": ["find_customer", "get_balance"]}
    saved = client.post("/v1/agent-policies/default/versions", headers=admin,
                        json={"policy": narrower, "reason": "read-only during the audit"})
    assert saved.status_code == 201 and saved.json()["version"] == 2
    assert client.post("/v1/agent-policies/default/activate", headers=admin,
                       json={"version": 2, "reason": "audit"}).status_code == 200
    refused = run(client, world.agent, lambda mcp: _quote(mcp, 10))
    assert refused["reasons"][0]["code"] == "tool-not-permitted" and refused["policy"]["version"] == 2
    rolled = client.post("/v1/agent-policies/default/rollback", headers=admin, json={"reason": "audit over"})
    assert rolled.status_code == 200 and rolled.json()["version"] == 1 and rolled.json()["action"] == "rollback"
    allowed = run(client, world.agent, lambda mcp: _quote(mcp, 10))
    assert allowed["decision"] == "allowed" and allowed["policy"]["version"] == 1
    assert client.post("/v1/agent-policies/default/rollback", headers=admin,
                       json={"reason": "again"}).status_code == 409
    actions = [r["action"] for r in platform.audit.records("acme", limit=1000)]
    assert {"agent-policy.saved", "agent-policy.activated", "agent-policy.rolled-back"} <= set(actions)


def test_a_key_bound_to_another_policy_and_a_policy_never_activated(client, platform, world: World) -> None:
    admin = auth(world.tenant.admin)
    bound = client.put(f"/v1/agent-keys/{world.agent_id}/policy", headers=admin, json={"policyId": "redemptions"})
    assert bound.status_code == 200, bound.text
    refused = run(client, world.agent, lambda mcp: call(mcp, "get_balance", customerId="ann"))
    assert refused["reasons"][0]["code"] == "no-active-policy" and refused["policy"]["policyId"] == "redemptions"
    merchant_id = next(k["keyId"] for k in platform.keys.list("acme") if k["role"] == "merchant")
    assert client.put(f"/v1/agent-keys/{merchant_id}/policy", headers=admin,
                      json={"policyId": "x"}).status_code == 422


def test_invalid_policies_are_refused_with_each_problem(client, world: World) -> None:
    admin = auth(world.tenant.admin)
    bad = {"tools": ["teleport"], "softLimits": {"pointsPerAction": 500}, "hardLimits": {"pointsPerAction": 100}}
    checked = client.post("/v1/agent-policies/validate", headers=admin, json={"policy": bad}).json()
    assert checked["ok"] is False and {p["field"] for p in checked["problems"]} == {"tools"}
    soft_above_hard = {"softLimits": {"pointsPerAction": 500}, "hardLimits": {"pointsPerAction": 100}}
    checked = client.post("/v1/agent-policies/validate", headers=admin, json={"policy": soft_above_hard}).json()
    assert checked["problems"] == [{"field": "softLimits.pointsPerAction",
                                    "message": "a soft limit above the hard limit would never escalate"}]
    refused = client.post("/v1/agent-policies/default/versions", headers=admin,
                          json={"policy": bad, "reason": "try"})
    assert refused.status_code == 422
    draft = client.put("/v1/agent-policies/default/draft", headers=admin, json={"policy": bad})
    assert draft.status_code == 200 and draft.json()["problems"]
    from_draft = client.post("/v1/agent-policies/default/versions", headers=admin, json={"reason": "from draft"})
    assert from_draft.status_code == 422  # the draft is still invalid
    assert [v["version"] for v in client.get("/v1/agent-policies/default/versions",
                                             headers=admin).json()["items"]] == [1]


def test_invalid_arguments_and_unknown_tools_are_refused_and_recorded(client, platform, world: World) -> None:
    async def script(mcp):
        return (await call(mcp, "find_customer", customerId="ann", email="ann@example.com"),
                await call(mcp, "get_balance", customerId="bad id!"))
    both, bad_id = run(client, world.agent, script)
    assert both["reasons"][0]["code"] == "invalid-arguments"
    assert bad_id["reasons"][0]["code"] == "invalid-arguments"
    trail = platform.agents.trail.list("acme")
    # Arguments no tool accepted keep their shape only: no value, no customer id from them.
    assert trail[0]["arguments"] == {"customerId": "[3 characters]", "email": "[15 characters]"}
    assert trail[0]["decision"] == "refused" and trail[0]["customerId"] is None
    assert trail[1]["arguments"] == {"customerId": "[7 characters]"} and "bad id!" not in str(trail)


def test_a_refused_calls_arguments_never_reach_the_trail_whatever_their_names(client, platform,
                                                                             world: World) -> None:
    """The trail is never erased: an argument no tool validated (a name no redaction list
    knows, an email typed as a customer id, an unknown tool's) keeps its shape only."""
    async def script(mcp):
        return (await call(mcp, "find_customer", emailAddress="ann@example.com", phoneNumber="+33611223344"),
                await call(mcp, "get_balance", customerId="ann@example.com"),
                await call(mcp, "no_such_tool", customerId="ann", notes={"text": "Ann, 12 rue A"}),
                await call(mcp, "get_balance", **{"bob@example.org": True,
                                                  "deep": [[[[[{"Bob's secret": "x"}]]]]]}))
    answers = run(client, world.agent, script)
    assert [a["decision"] for a in answers] == ["refused"] * 4
    listed = platform.agents.trail.list("acme")
    trail = str(listed)
    for secret in ("ann@example.com", "+33611223344", "12 rue A", "bob@example.org", "Bob's secret"):
        assert secret not in trail
    assert listed[-1]["arguments"] == {"[name of 15 characters]": "[bool]", "deep": [[["[list]"]]]}


def test_an_execution_that_died_after_counting_is_finished_by_its_retry_at_the_limit(client, platform,
                                                                                   world: World) -> None:
    """The quote is counted against the day's limits, then the process dies before the ledger
    append. The retry of the same execution is checked against the other quotes only: at a
    budget the quote exactly fills, it executes once (it used to be refused as over the budget
    by its own count, and its points stayed counted and never moved)."""
    from tests.conftest import Died, crashing

    set_policy(platform, "acme", {**POLICY, "softLimits": {}, "hardLimits": {"agentDailyBudget": 100},
                                  "requireConsent": False})
    principal = platform.keys.verify(world.agent)
    quote = platform.agents.call(principal, "quote_goodwill", {"customerId": "ann", "points": 100,
                                                               "note": "sorry"}).result
    execute = {"quoteId": quote["quoteId"], "contentHash": quote["contentHash"]}
    before = balance(platform)
    real = platform.corrections.adjust
    platform.corrections.adjust = crashing("after counting, before the append", Died)
    try:
        try:
            platform.agents.call(principal, "execute_quote", execute)
        except Died:
            pass
    finally:
        platform.corrections.adjust = real
    assert balance(platform) == before
    retried = platform.agents.call(principal, "execute_quote", execute)
    assert retried.decision == "allowed", retried.reasons
    assert balance(platform) == before + 100 and len(ledger_entries(platform, quote["quoteId"])) == 1
    counter = platform.store.query(SYSTEM, Query(pk="agent-counters:acme", filters=(), limit=10))
    assert {d["subject"]: d["points"] for d in counter}[f"agent:{world.agent_id}"] == 100


def test_erasure_replaces_what_agents_wrote_about_the_customer_in_words(client, platform, world: World) -> None:
    """A case's summary quotes the customer; after the erasure the case stays (what was
    decided, by whom) and its summary is gone, another customer's case untouched."""
    summary = "Ann Smith, 12 rue A, says her points vanished"
    case = run(client, world.agent, lambda mcp: call(mcp, "open_case", customerId="ann", topic="other",
                                                     summary=summary))["result"]
    assert platform.reviews.get("acme", case["caseId"])["details"]["summary"] == summary
    platform.erasures.erase("acme", "ann", None, "asked")
    kept = platform.reviews.get("acme", case["caseId"])
    assert kept["details"]["summary"] == "[erased]" and kept["customerId"] == "ann"
    assert "12 rue A" not in str(platform.reviews.list("acme", customer_id="ann"))
    platform.erasures.erase("acme", "ann", None, "asked")  # again: nothing left to change
    assert platform.reviews.get("acme", case["caseId"])["details"]["summary"] == "[erased]"
