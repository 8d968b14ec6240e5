"""The GraphQL API over HTTP with a real client: authentication as REST, every query type,
per-field role checks, cross-tenant refusal, limits before execution, introspection per
tenant, batched loading (store reads counted) and the committed schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from shared.graphql import settings as graphql_settings
from shared.graphql.schema import sdl
from shared.store.sqlite import SqliteDocumentStore
from tests.conftest import add_customer, auth, drain, make_tenant, order_body
from tests.unit.graphql_api.conftest import codes

ROOT = Path(__file__).resolve().parents[3]
REASON = {"code": "campaign", "text": "spring campaign"}


def test_the_committed_schema_is_the_served_schema() -> None:
    committed = (ROOT / "docs" / "graphql" / "schema.graphql").read_text()
    assert committed == sdl(), "the schema changed: regenerate docs/graphql/schema.graphql (see docs/graphql.md)"


def test_a_request_without_a_valid_key_is_a_401_problem_like_rest(app, tenant) -> None:
    async def post(headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accrue.test") as c:
            return await c.post("/graphql/v1", json={"query": "{ viewer { tenantId } }"}, headers=headers)

    for headers in ({}, {"Authorization": "Bearer acr_aaaaaaaaaaaa_" + "x" * 43}, {"x-api-key": "nonsense"}):
        response = asyncio.run(post(headers))
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("/unauthenticated")
    assert asyncio.run(post({"x-api-key": tenant.analyst})).status_code == 200


def test_viewer_names_the_keys_tenant_and_role(graphql, tenant) -> None:
    data = graphql.data(tenant.analyst, "{ viewer { tenantId role } }")
    assert data["viewer"] == {"tenantId": "acme", "role": "analyst"}


def test_customers_filter_by_tier_tag_and_join_date_and_page_by_cursor(graphql, platform, tenant) -> None:
    from datetime import date

    from shared.app.customers import CustomerProfile
    for n in range(10):
        platform.customers.register("acme", CustomerProfile(customerId=f"k{n:02d}", joinDate=date(2025, 1 + n, 1),
                                                            tags=("vip",) if n % 2 else ()))
    first = graphql.data(tenant.analyst, '{ customers(first: 4, tag: "vip") { edges { cursor node { id tags } } '
                                         'pageInfo { hasNextPage endCursor } } }')["customers"]
    assert [e["node"]["id"] for e in first["edges"]] == ["k01", "k03", "k05", "k07"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = graphql.data(tenant.analyst, 'query($after: String) { customers(first: 4, tag: "vip", after: $after) '
                                        '{ nodes { id } pageInfo { hasNextPage } } }',
                        {"after": first["pageInfo"]["endCursor"]})["customers"]
    assert [n["id"] for n in rest["nodes"]] == ["k09"] and rest["pageInfo"]["hasNextPage"] is False
    joined = graphql.data(tenant.analyst, '{ customers(joinedFrom: "2025-03-01", joinedTo: "2025-05-01") '
                                          '{ nodes { id joinDate } } }')["customers"]["nodes"]
    assert [n["id"] for n in joined] == ["k02", "k03", "k04"]
    none = graphql.data(tenant.analyst, '{ customers(tier: "gold") { nodes { id } } }')["customers"]["nodes"]
    assert none == []


def test_a_customer_with_balance_entries_orders_tier_redemptions_and_expiries(graphql, client, platform,
                                                                              tenant) -> None:
    for n in (1, 2):
        response = client.post("/v1/orders", json=order_body("c1", f"o{n}", "12.00"), headers=auth(tenant.merchant))
        assert response.status_code == 202, response.text
    drain(platform)
    query = '''{ customer(id: "c1") { id joinDate erased pointsBalance dataAsOf
        balance { available pending lifetimeEarned ordersCredited dataAsOf }
        entries(first: 10, entryTypes: ["EARN"]) { seq transactionId entryType signedAmount status createdAt }
        transactions(first: 5) { id createdAt dataAsOf entries { entryType signedAmount referenceOrderId } }
        tierStatus tierHistory { changeSeq } redemptions expiries } }'''
    answer = graphql.run(tenant.merchant, query)
    assert not answer["errors"], answer["errors"]
    customer = answer["data"]["customer"]
    assert customer["balance"]["available"] == 240 == customer["pointsBalance"]
    assert customer["balance"]["ordersCredited"] == 2 and customer["balance"]["dataAsOf"]
    assert [e["signedAmount"] for e in customer["entries"]] == [120, 120]
    assert customer["entries"][0]["seq"] > customer["entries"][1]["seq"]  # newest first, as REST
    assert [[e["referenceOrderId"] for e in t["entries"]] for t in customer["transactions"]] == [["o2"], ["o1"]]
    assert customer["transactions"][0]["id"] == customer["entries"][0]["transactionId"]
    assert customer["tierStatus"]["customerId"] == "c1" and customer["tierHistory"] == []
    assert customer["redemptions"] == [] and customer["expiries"]["items"] == []
    assert "dataAsOf" in answer["extensions"]
    orders = graphql.data(tenant.analyst, '{ orders(ids: ["o1", "o2"]) { orderId status points dataAsOf } }')
    assert [(o["orderId"], o["status"], o["points"]) for o in orders["orders"]] == [("o1", "credited", 120),
                                                                                    ("o2", "credited", 120)]
    unknown = graphql.run(tenant.analyst, '{ orders(ids: ["nope"]) { orderId } }')
    assert codes(unknown) == ["not-found"]
    assert graphql.data(tenant.analyst, '{ customer(id: "nobody") { id } }') == {"customer": None}


def test_rule_sets_and_an_experiment_with_significance(graphql, client, platform, tenant) -> None:
    admin = auth(tenant.admin)
    for source in ('rule "base" then earn floor(order.total) points',
                   'rule "base" then earn floor(order.total * 2) points'):
        assert client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": source, "reason": REASON},
                           headers=admin).status_code == 201
    assert client.post("/v1/rules/activate", json={"target": {"ruleSetId": "main", "version": 1}, "reason": REASON},
                       headers=admin).status_code == 200
    started = client.post("/v1/rules/experiments", json={
        "name": "double", "control": {"ruleSetId": "main", "version": 1},
        "treatment": {"ruleSetId": "main", "version": 2}, "treatmentShare": "0.5", "reason": REASON}, headers=admin)
    assert started.status_code == 201, started.text
    experiment_id = started.json()["experimentId"]
    for n in range(40):
        add_customer(platform, "acme", f"x{n}")
        for k in range(1 + n % 2):
            client.post("/v1/orders", json=order_body(f"x{n}", f"x{n}-{k}", f"{10 + n % 7}.00"),
                        headers=auth(tenant.merchant))
    drain(platform)
    data = graphql.data(tenant.analyst, '''query($id: String!) {
        ruleSetVersions(ruleSetId: "main") { version cost rules author }
        ruleSetVersion(ruleSetId: "main", version: 2) { source }
        activeRuleSet ruleSetActivations { ruleSetId version by }
        experiment(id: $id) { name status treatmentShare control }
        experimentResults(id: $id) { scanned truncated
          arms { arm orders customers pointsIssued pointsPerOrder repeatCustomers conversion }
          pointsPerOrderDifference { estimate low high method significant confidence }
          conversionDifference { estimate low high method significant } } }''', {"id": experiment_id})
    assert [v["version"] for v in data["ruleSetVersions"]] == [2, 1]
    assert "order.total * 2" in data["ruleSetVersion"]["source"]
    assert data["activeRuleSet"]["experiment"]["experimentId"] == experiment_id
    assert data["experiment"]["status"] == "running"
    results = data["experimentResults"]
    rest = client.get(f"/v1/rules/experiments/{experiment_id}/results", headers=auth(tenant.analyst)).json()
    assert [(a["orders"], a["pointsIssued"], a["customers"]) for a in results["arms"]] == \
        [(a["orders"], a["pointsIssued"], a["customers"]) for a in rest["arms"]]
    assert sum(a["orders"] for a in results["arms"]) == 60
    difference = results["pointsPerOrderDifference"]
    assert difference["method"] == "welch-t" and difference["confidence"] == 0.95
    assert difference["low"] <= difference["estimate"] <= difference["high"]
    assert difference["significant"] is True  # B earns double: a difference no noise here hides
    assert results["conversionDifference"]["method"] == "newcombe-hybrid-score"


def test_webhooks_and_exports_are_for_tenant_admins(graphql, tenant) -> None:
    data = graphql.data(tenant.admin, "{ webhookEndpoints { id url deliveries } exportRuns }")
    assert data == {"webhookEndpoints": [], "exportRuns": []}
    for key in (tenant.analyst, tenant.merchant):
        assert codes(graphql.run(key, "{ webhookEndpoints { id } }")) == ["forbidden"]
        assert codes(graphql.run(key, "{ exportRuns }")) == ["forbidden"]


def test_personal_data_only_for_keys_that_may_read_it(graphql, platform, tenant) -> None:
    from datetime import date

    from shared.app.customers import CustomerProfile
    platform.customers.register("acme", CustomerProfile(customerId="p1", joinDate=date(2025, 1, 1),
                                                        email="ada@example.com"))
    query = '{ customer(id: "p1") { id personalData } }'
    assert graphql.data(tenant.merchant, query)["customer"]["personalData"]["email"] == "ada@example.com"
    refused = graphql.run(tenant.analyst, query)
    assert codes(refused) == ["forbidden"] and refused["data"]["customer"]["id"] == "p1"
    assert refused["data"]["customer"]["personalData"] is None
    assert codes(graphql.run(tenant.merchant, '{ ruleSetVersions(ruleSetId: "main") { version } }')) == ["forbidden"]


def test_another_tenant_is_refused_and_never_seen(graphql, tenant, other_tenant) -> None:
    for query in ('{ customers(tenantId: "globex") { nodes { id } } }',
                  '{ customer(tenantId: "globex", id: "c1") { id } }',
                  '{ orders(tenantId: "globex", ids: ["o1"]) { orderId } }'):
        answer = graphql.run(tenant.admin, query)
        assert codes(answer) == ["tenant-mismatch"], answer
    own = graphql.data(tenant.admin, '{ customers(tenantId: "acme") { nodes { id } } }')["customers"]["nodes"]
    assert [n["id"] for n in own] == ["c1", "c2", "c3"]
    theirs = graphql.data(other_tenant.admin, "{ customers { nodes { id } } }")["customers"]["nodes"]
    assert [n["id"] for n in theirs] == ["c1"]


def test_depth_cost_and_page_size_are_refused_before_any_read(graphql, platform, tenant, monkeypatch) -> None:
    graphql.data(tenant.analyst, "{ viewer { tenantId } }")  # warm the key cache
    reads = count_reads(monkeypatch)
    too_costly = graphql.run(tenant.analyst, "{ customers(first: 200) { nodes { entries(first: 200) { id } } } }")
    assert codes(too_costly) == ["query-refused"]
    assert too_costly["errors"][0]["extensions"]["reason"] == "cost"
    too_big = graphql.run(tenant.analyst, "{ customers(first: 1000) { nodes { id } } }")
    assert too_big["errors"][0]["extensions"]["reason"] == "page-size"
    data_reads = [r for r in reads if r[1] not in ("api_keys", "tenants", "system")]
    assert data_reads == [], data_reads
    graphql_settings.save(platform.store, "acme", max_depth=2)
    too_deep = graphql.run(tenant.analyst, '{ customer(id: "c1") { balance { available } } }')
    extensions = too_deep["errors"][0]["extensions"]
    assert (extensions["reason"], extensions["depth"], extensions["maxDepth"]) == ("depth", 3, 2)
    assert graphql.data(tenant.analyst, '{ customer(id: "c1") { id } }')["customer"]["id"] == "c1"


def test_introspection_is_on_for_sandbox_tenants_only(graphql, platform, tenant) -> None:
    query = "{ __schema { queryType { name } } }"
    assert codes(graphql.run(tenant.analyst, query)) == ["query-refused"]
    sandbox = make_tenant(platform, "sandbox")
    assert graphql.data(sandbox.analyst, query)["__schema"]["queryType"]["name"] == "Query"
    graphql_settings.save(platform.store, "acme", introspection=True)
    assert graphql.data(tenant.analyst, query)["__schema"]["queryType"]["name"] == "Query"


def count_reads(monkeypatch) -> list[tuple[str, str]]:
    """Every store call from now on, as (method, container)."""
    calls: list[tuple[str, str]] = []
    for name in ("read", "read_many", "query"):
        original = getattr(SqliteDocumentStore, name)

        def counting(self, container, *args, __original=original, __name=name, **kwargs):
            calls.append((__name, container))
            return __original(self, container, *args, **kwargs)

        monkeypatch.setattr(SqliteDocumentStore, name, counting)
    return calls


@pytest.mark.parametrize("customers", [10, 100])
def test_a_page_of_customers_costs_the_same_reads_whatever_its_size(graphql, platform, tenant, monkeypatch,
                                                                    customers) -> None:
    for n in range(customers):
        add_customer(platform, "acme", f"n{n:03d}")
    graphql.data(tenant.analyst, "{ viewer { tenantId } }")  # warm the key cache
    reads = count_reads(monkeypatch)
    data = graphql.data(tenant.analyst, '''query($first: Int!) { customers(first: $first) {
        nodes { id tier pointsBalance balance { available pending dataAsOf } } } }''', {"first": customers})
    assert len(data["customers"]["nodes"]) == customers
    # The page query, one read_many of balances, the checkpoint, the tenant's GraphQL settings (and
    # the rate-limit counter's own reads): a constant, never one read per customer.
    per_container: dict[str, int] = {}
    for _, container in reads:
        per_container[container] = per_container.get(container, 0) + 1
    assert per_container.get("customers", 0) == 1, reads
    assert per_container.get("balances", 0) == 1, reads
    assert len(reads) <= 8, reads


def test_the_graphiql_page_is_served_locally_and_holds_no_data(app, tenant) -> None:
    async def get(headers: dict[str, str], query: str = "") -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accrue.test") as c:
            return await c.get("/graphql/v1" + query, headers=headers)

    page = asyncio.run(get({"Accept": "text/html"}))
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert "acme" not in page.text
    # A query by GET is a query: it needs a key like any other.
    assert asyncio.run(get({}, "?query=%7Bviewer%7BtenantId%7D%7D")).status_code == 401
    answer = asyncio.run(get(auth(tenant.analyst), "?query=%7Bviewer%7BtenantId%7D%7D"))
    assert answer.json()["data"] == {"viewer": {"tenantId": "acme"}}


def test_a_tenant_admin_changes_the_tenants_graphql_settings_audited(graphql, platform, tenant) -> None:
    mutation = "mutation($d: Int, $i: Boolean) { updateGraphqlSettings(maxDepth: $d, introspection: $i) " \
               "{ maxDepth maxCost introspection } }"
    assert codes(graphql.run(tenant.analyst, mutation, {"d": 5})) == ["forbidden"]
    assert codes(graphql.run(tenant.admin, mutation, {"d": 500})) == ["query-refused"]
    changed = graphql.data(tenant.admin, mutation, {"d": 5, "i": True})["updateGraphqlSettings"]
    assert changed == {"maxDepth": 5, "maxCost": 20_000, "introspection": True}
    assert graphql.data(tenant.analyst, "{ __type(name: \"Customer\") { name } }")["__type"]["name"] == "Customer"
    [record] = [r for r in platform.audit.records("acme", limit=100) if r["action"] == "graphql.settings.changed"]
    assert record["after"]["maxDepth"] == 5 and record["before"]["introspection"] is False
