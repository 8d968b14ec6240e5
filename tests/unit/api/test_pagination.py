"""One pagination style (issue 13, part 5), held over every list route: create N
items, page through with limit k (following each ``next`` link as given), and
get each item exactly once, in the same order as one big page, the same order on
a second walk, with full pages until the last and ``next: null`` at the end.
Every GET route that answers a list of ``items`` must be in ``LIST_ROUTES``
(found by calling every GET route of the app), and every cursor this API did
not give out for that route is a 400 problem."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.api.introspect import api_routes
from shared.app.auth import Role
from shared.app.corrections import AdjustmentRequest
from shared.expiry.policy import ExpiryPolicy
from shared.platform import Platform
from shared.spend.conversions import Programme
from shared.spend.partners import PartnerConfig
from shared.spend.redemptions import RedeemRequest
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import TenantKeys, add_customer, auth, drain

N = 5
RULE = 'rule "base" then earn floor(order.total * {n}) points'
REASON = {"code": "campaign", "text": "paging test"}

# path -> which key reads it
LIST_ROUTES = {
    "/v1/audit": "admin",
    "/v1/customers": "admin",
    "/v1/customers/c1/ledger": "admin",
    "/v1/customers/c1/expiries": "admin",
    "/v1/customers/c1/redemptions": "admin",
    "/v1/customers/c1/vouchers": "admin",
    "/v1/customers/c1/tier/history": "admin",
    "/v1/exports/runs": "admin",
    "/v1/webhooks/event-types": "admin",
    "/v1/webhooks/endpoints": "admin",
    "/v1/webhooks/endpoints/{endpointId}/attempts": "admin",
    "/v1/webhooks/endpoints/{endpointId}/deliveries": "admin",
    "/v1/platform/approvals": "platform",
    "/v1/platform/partners": "platform",
    "/v1/platform/operators": "platform",
    "/v1/api-keys": "admin",
    "/v1/redemption-reviews": "admin",
    "/v1/reviews": "admin",
    "/v1/rewards": "admin",
    "/v1/conversion-programmes": "admin",
    "/v1/rules/rulesets/main/versions": "admin",
    "/v1/rules/activations": "admin",
    "/v1/agent-policies/pol/versions": "admin",
    "/v1/agent-terms": "admin",
    "/v1/agent-trail": "admin",
    "/v1/imports": "admin",
}


@pytest.fixture
def world(client: TestClient, platform: Platform, tenant: TenantKeys, clock: Any, operators: list) -> dict[str, Any]:
    """At least N items in every list of the tenant (and of the platform)."""
    root = operators[0].api_key
    from tests.operators import add_operators
    add_operators(platform, N, names=("cy", "dee", "eli", "fay", "gus"))  # N operators and more
    admin = auth(tenant.admin)
    platform.tenants.save(platform.tenants.get("acme").model_copy(
        update={"expiry_policy": ExpiryPolicy(kind="rolling", months=1)}))
    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    platform.spend.partners.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    endpoints = []
    for n in range(N):
        made = client.post("/v1/webhooks/endpoints", headers=admin,
                           json={"url": f"http://127.0.0.1:9/hook{n}", "eventTypes": ["transaction.committed"]})
        assert made.status_code == 201, made.text
        endpoints.append(made.json()["id"])
    from tests.unit.agents.conftest import POLICY, set_policy
    set_policy(platform, "acme", POLICY)
    agent = platform.keys.verify(platform.keys.issue("acme", Role.AGENT, None, label="pager").secret_key)
    for n in range(N):
        platform.agents.policies.save("acme", "pol", POLICY, "paging", "admin")
        platform.agents.knowledge.save_terms("acme", f"doc{n}", "Terms", f"# terms {n}", "paging", "admin")
        platform.agents.call(agent, "get_balance", {"customerId": "c1"})
        made = client.post("/v1/imports", headers=admin, json={"kind": "orders", "format": "ndjson"})
        assert made.status_code == 201, made.text
    for n in range(N):
        add_customer(platform, "acme", f"p{n}")
        platform.keys.issue("acme", Role.ANALYST, None, f"extra {n}")
        # a ledger entry (and an expiry lot on its own day) each, and a webhook message each
        platform.corrections.adjust("acme", "c1", AdjustmentRequest(points=100, reasonCode="goodwill", reason="r",
                                                                    idempotencyKey=f"fund-{n}"), "test")
        platform.audit.record("acme", "test.paged", None, target=f"item:{n}")
        platform.reviews.submit("acme", "redemption", "c1", f"e-{n}", ["paging"])
        platform.tiers.history.append({"tenantId": "acme", "customerId": "c1", "changeSeq": n + 1,
                                       "fromTier": None, "toTier": f"t{n}", "at": clock.now().isoformat()})
        platform.spend.partners.save(f"partner{n}", PartnerConfig(baseUrl="http://127.0.0.1:9/p"), "test")
        platform.spend.conversions.save_programme("acme", f"prog{n}",
                                                  Programme(partnerId=f"partner{n}", name="P", rate=Decimal("0.5")))
        assert client.post("/v1/rewards", headers=admin, json={"rewardId": f"rw{n}", "name": "R",
                                                               "pointsCost": 10}).status_code == 201
        assert client.post("/v1/rules/versions", headers=admin, json={
            "ruleSetId": "main", "source": RULE.format(n=n + 1), "reason": REASON}).status_code == 201
        assert client.post("/v1/rules/activate", headers=admin, json={
            "target": {"ruleSetId": "main", "version": n + 1}, "reason": REASON}).status_code == 200
        assert client.post("/v1/platform/approvals", headers=auth(root), json={
            "action": "platform-admin.grant", "params": {"operatorId": operators[1].operator_id, "label": f"k{n}"},
            "reason": "paging"}).status_code == 202
        platform.exports.run("acme")
        drain(platform)
        platform.webhook_worker.run_once()  # a failed attempt at least (nothing listens on port 9)
        clock.advance(timedelta(days=1))
    drain(platform)
    for n in range(N):
        platform.spend.redemptions.redeem("acme", "c1", RedeemRequest(idempotencyKey=f"red-{n}", points=1), "test")
    assert client.post("/v1/rewards", headers=admin, json={"rewardId": "vouch", "name": "V", "pointsCost": 1,
                                                           "type": "voucher", "voucher": {"productSku": "X"}}
                       ).status_code == 201
    for n in range(N):
        platform.vouchers.exchange("acme", "c1", RedeemRequest(idempotencyKey=f"vc-{n}", rewardId="vouch"), "test")
    return {"endpointId": endpoints[0], "keys": {"admin": admin, "platform": auth(root)}}


def path_of(template: str, world: dict[str, Any]) -> str:
    return template.replace("{endpointId}", world["endpointId"])


def walk(client: TestClient, link: str, headers: dict[str, str], k: int) -> list[Any]:
    seen: list[Any] = []
    for _ in range(1000):
        page = client.get(link, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= k
        seen += body["items"]
        if body["next"] is None:
            return seen
        assert len(body["items"]) == k, "a page before the last is full"
        link = body["next"]
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("template", sorted(LIST_ROUTES))
def test_paging_gives_each_item_once_in_a_stable_order(client: TestClient, world: dict[str, Any],
                                                       template: str) -> None:
    path, headers = path_of(template, world), world["keys"][LIST_ROUTES[template]]
    whole = client.get(path, params={"limit": 200}, headers=headers)
    assert whole.status_code == 200, whole.text
    everything = whole.json()["items"]
    assert len(everything) >= N and whole.json()["next"] is None
    for k in (1, 2, 3):
        paged = walk(client, f"{path}?limit={k}", headers, k)
        assert paged == everything, k
        assert len({json.dumps(i, sort_keys=True) for i in paged}) == len(paged), "an item came twice"
    assert walk(client, f"{path}?limit=2", headers, 2) == everything, "a second walk gave another order"


@pytest.mark.parametrize("template", sorted(LIST_ROUTES))
def test_a_cursor_not_given_out_for_this_list_is_a_400(client: TestClient, world: dict[str, Any],
                                                       template: str) -> None:
    path, headers = path_of(template, world), world["keys"][LIST_ROUTES[template]]
    first = client.get(path, params={"limit": 1}, headers=headers).json()
    good = first["next"].split("cursor=")[1]
    body, _, checksum = good.partition(".")
    other = "/v1/rewards" if template != "/v1/rewards" else "/v1/customers"
    foreign = client.get(other, params={"limit": 1}, headers=world["keys"]["admin"]).json()["next"]
    for bad in ("garbage", body, f"{body}.000000000000", f"{body[:-2]}AA.{checksum}", "e30.x",
                foreign.split("cursor=")[1]):
        answer = client.get(path, params={"cursor": bad}, headers=headers)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["type"].endswith("/bad-cursor") and answer.json()["errors"][0]["field"] == "query.cursor"


def test_every_list_route_pages(client: TestClient, world: dict[str, Any]) -> None:
    """Call every GET route of the app; any that answers a list of items must page."""
    ids = {"customerId": "c1", "endpointId": world["endpointId"], "ruleSetId": "main", "version": "1",
           "policyId": "pol"}
    lists = set()
    for path, route in api_routes(client.app.routes):  # type: ignore[attr-defined]
        if "GET" not in route.methods:
            continue
        concrete = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x1"), path)
        for headers in world["keys"].values():
            answer = client.get(concrete, headers=headers)
            body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else None
            if isinstance(body, dict) and isinstance(body.get("items"), list):
                lists.add(path_of(path.replace("{customerId}", "c1").replace("{ruleSetId}", "main")
                                  .replace("{policyId}", "pol"), world))
    assert lists == {path_of(t, world) for t in LIST_ROUTES}


# Another value of a filter each of these lists takes: a cursor of the unfiltered list is not one of it.
FILTERS = {"/v1/customers/c1/ledger": "entryType=EARN", "/v1/reviews": "kind=redemption",
           "/v1/webhooks/endpoints/{endpointId}/deliveries": "status=failed"}
# Another list of the same route: the same path with other ids.
OTHER_IDS = {"/c1/": "/c2/", "/main/": "/other/", "/pol/": "/pol2/"}


def test_a_cursor_is_refused_on_any_other_list(client: TestClient, platform: Platform, world: dict[str, Any],
                                               other_tenant: TenantKeys) -> None:
    """Each list's cursor replayed on another route, another tenant's list, another
    customer's (or rule set's, policy's) list, the same list with a filter added, and with
    its body spelled otherwise: each a 400 ``bad-cursor``, never a page of that list."""
    def refused(link: str, headers: dict[str, str], why: str) -> None:
        answer = client.get(link, headers=headers)
        assert answer.status_code == 400, (why, link, answer.status_code, answer.text[:300])
        assert answer.json()["type"].endswith("/bad-cursor"), (why, link)

    cursors = {}
    for template in sorted(LIST_ROUTES):
        path, headers = path_of(template, world), world["keys"][LIST_ROUTES[template]]
        link = client.get(path, params={"limit": 1}, headers=headers).json()["next"]
        assert link, template
        cursors[template] = link.split("cursor=")[1]
        token = cursors[template]
        body, _, mac = token.partition(".")
        # the same position, spelled otherwise: padding bits set, or one character changed
        respelled = body[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(body[-1]) ^ 1)]
        refused(f"{path}?limit=1&cursor={respelled}.{mac}", headers, "another spelling")
        if LIST_ROUTES[template] == "admin":
            # globex has its own c1; a list of a thing globex lacks (an endpoint, a rule set...) may be a 404
            if "{" in template or ("/c1/" in path and "/ledger" not in path):
                answer = client.get(f"{path}?limit=1&cursor={token}", headers=auth(other_tenant.admin))
                assert answer.status_code in (400, 404), (template, "another tenant", answer.text[:300])
            else:
                refused(f"{path}?limit=1&cursor={token}", auth(other_tenant.admin), "another tenant")
        for this, that in OTHER_IDS.items():
            if this in path:
                answer = client.get(f"{path.replace(this, that)}?limit=1&cursor={token}", headers=headers)
                assert answer.status_code in (400, 404) and answer.status_code != 200, (template, "other ids")
                if this == "/c1/" and template.endswith("/ledger"):
                    refused(f"{path.replace(this, that)}?limit=1&cursor={token}", headers, "another customer")
        if template in FILTERS:
            refused(f"{path}?limit=1&{FILTERS[template]}&cursor={token}", headers, "another filter")
    for template in sorted(LIST_ROUTES):  # every list's cursor on every other list
        path, headers = path_of(template, world), world["keys"][LIST_ROUTES[template]]
        for other, token in cursors.items():
            if other != template:
                refused(f"{path}?limit=1&cursor={token}", headers, f"the cursor of {other}")
