"""The MCP tool server on the live local platform (uvicorn in a subprocess), spoken to over
loopback HTTP with the official MCP client (``ClientSession`` over streamable HTTP): a tenant-
admin issues an agent key and activates its guardrail policy over REST, the agent lists tools
and resources and calls every tool, a soft limit escalates an action that a person approves
through the review queue and that then executed exactly once, and the decision trail is read
back over the API."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from shared.agents.policy import TOOL_NAMES
from tests.e2e.conftest import LocalPlatform
from tests.unit.agents.mcp_client import call, session

pytestmark = pytest.mark.slow

POLICY = {"description": "e2e support agent", "tools": ["*"], "personalFields": [],
          "hardLimits": {"pointsPerAction": 5000, "agentDailyBudget": 20000},
          "softLimits": {"pointsPerAction": 1000}, "rewardCategories": None, "requireConsent": True}


def test_an_agent_over_mcp_on_the_local_platform(local_platform: LocalPlatform) -> None:
    admin = {"Authorization": f"Bearer {local_platform.keys['tenant-admin']}"}
    http = httpx.Client(base_url=local_platform.url, headers=admin, timeout=30)
    issued = http.post("/v1/api-keys", json={"role": "agent", "label": "support bot"})
    assert issued.status_code == 201, issued.text
    agent_key, agent_id = issued.json()["apiKey"], issued.json()["keyId"]
    assert http.post("/v1/agent-policies/default/versions",
                     json={"policy": POLICY, "reason": "launch"}).status_code == 201
    assert http.post("/v1/agent-policies/default/activate", json={"version": 1, "reason": "launch"}).status_code == 200
    assert http.put("/v1/agent-terms/terms", json={"title": "Terms", "markdown": "# Terms\n\nBe kind.\n",
                                                    "reason": "launch"}).status_code == 201
    for _ in range(12):  # the sample orders are queued at start: wait until the first is credited
        order = http.get("/v1/orders/sample-0001?wait=10").json()
        if order["status"] != "queued":
            break
    assert order["status"] == "credited", order
    customer = order["customerId"]

    async def script() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with session(agent_key, base_url=local_platform.url) as mcp:
            seen["tools"] = sorted(t.name for t in (await mcp.list_tools()).tools)
            seen["resources"] = sorted(str(r.uri) for r in (await mcp.list_resources()).resources)
            seen["terms"] = (await mcp.read_resource("accrue://terms/terms")).contents[0].text
            seen["find"] = await call(mcp, "find_customer", customerId=customer)
            seen["balance"] = await call(mcp, "get_balance", customerId=customer)
            seen["transactions"] = await call(mcp, "list_transactions", customerId=customer)
            seen["status"] = await call(mcp, "get_order_status", orderId="sample-0001")
            seen["explain"] = await call(mcp, "explain_order_points", orderId="sample-0001")
            seen["eligible"] = await call(mcp, "list_eligible_rewards", customerId=customer)
            seen["redeem_quote"] = await call(mcp, "quote_redemption", customerId=customer, rewardId="pastry",
                                              consentReference="chat-e2e-1")
            quote = await call(mcp, "quote_goodwill", customerId=customer, points=1500, note="lost parcel",
                               consentReference="chat-e2e-2")
            seen["escalated"] = await call(mcp, "execute_quote", quoteId=quote["result"]["quoteId"],
                                           contentHash=quote["result"]["contentHash"])
            seen["quote"] = quote["result"]
            seen["case"] = await call(mcp, "open_case", customerId=customer, topic="other", summary="e2e")
        return seen

    seen = anyio.run(script)
    assert seen["tools"] == sorted(TOOL_NAMES)
    assert seen["resources"] == ["accrue://catalogue", "accrue://earning-rules", "accrue://terms/terms"]
    assert "Be kind." in seen["terms"]
    assert seen["find"]["result"]["customerId"] == customer and "personalData" not in seen["find"]["result"]
    assert seen["status"]["result"]["status"] == "credited"
    assert seen["explain"]["result"]["explanation"][-1].startswith("In total the order earned")
    assert seen["redeem_quote"]["decision"] in ("allowed", "refused")  # depends on the sample's balance
    assert seen["escalated"]["decision"] == "escalated"
    case_id = seen["escalated"]["result"]["caseId"]
    before = http.get(f"/v1/customers/{customer}/balance?asOf=2100-01-01T00:00:00Z").json()["available"]

    approved = http.post(f"/v1/reviews/{case_id}/approve", json={"note": "ok"})
    assert approved.status_code == 200, approved.text
    assert http.post(f"/v1/reviews/{case_id}/approve", json={}).status_code == 409

    async def replay() -> dict[str, Any]:
        async with session(agent_key, base_url=local_platform.url) as mcp:
            return await call(mcp, "execute_quote", quoteId=seen["quote"]["quoteId"],
                              contentHash=seen["quote"]["contentHash"])

    again = anyio.run(replay)
    assert again["result"]["status"] == "executed" and again["result"]["replayed"] is True
    after = http.get(f"/v1/customers/{customer}/balance?asOf=2100-01-01T00:00:00Z").json()["available"]
    assert after == before + 1500  # once, whatever was retried

    trail = http.get("/v1/agent-trail", params={"agentKeyId": agent_id, "limit": 500}).json()["items"]
    decisions = [(c["tool"], c["decision"]) for c in trail]
    assert ("execute_quote", "escalated") in decisions and ("execute_quote", "approved") in decisions
    assert {c["tool"] for c in trail} >= set(TOOL_NAMES) - {"check_case"}
    # Other roles are refused at the door.
    merchant = httpx.post(local_platform.url + "/mcp", headers={"Authorization": f"Bearer "
                                                                                 f"{local_platform.keys['merchant']}"},
                          json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert merchant.status_code == 403
