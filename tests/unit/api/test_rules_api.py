"""The rule set lifecycle over real HTTP (the ASGI app): drafts, validation, versions,
diff, activation and what ingestion then earns, rollback, simulation that writes
nothing, A/B experiments and their results, the evaluator setting, audit and the
``ruleset.activated`` webhook, hostile sources and roles."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from shared.audit.log import LOST_RECORD_GRACE
from shared.ledger.entries import order_record_id
from shared.rules.experiments import assign
from shared.store.layout import RULESETS, WEBHOOK_MESSAGES
from shared.store.port import Filter, Query
from tests.conftest import add_customer, auth, drain, make_tenant, order_body
from tests.unit.api.test_roles_walk import _fingerprint as store_fingerprint

REASON = {"code": "campaign", "text": "spring campaign"}
V1 = 'rule "base" then earn floor(order.total) points'
V2 = 'rule "base" then earn floor(order.total * 2) points'


def save(client, key: str, source: str, rule_set_id: str = "main") -> dict:
    response = client.post("/v1/rules/versions", json={"ruleSetId": rule_set_id, "source": source, "reason": REASON},
                           headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()


def activate(client, key: str, version: int, path: str = "/v1/rules/activate", rule_set_id: str = "main"):
    return client.post(path, json={"target": {"ruleSetId": rule_set_id, "version": version}, "reason": REASON},
                       headers=auth(key))


def ingest(client, platform, key: str, customer_id: str, order_id: str, amount: str = "10.00") -> None:
    response = client.post("/v1/orders", json=order_body(customer_id, order_id, amount), headers=auth(key))
    assert response.status_code == 202, response.text
    drain(platform)


def earn_entry(platform, tenant_id: str, customer_id: str, order_id: str) -> dict:
    entries = platform.ledger.entries_for_order(tenant_id, customer_id, order_id)
    assert len(entries) == 1, entries
    return entries[0]


def audit_actions(platform, tenant_id: str) -> list[str]:
    return [r["action"] for r in platform.audit.records(tenant_id, limit=1000)]


def key_id(secret_key: str) -> str:
    return secret_key.split("_")[1]


@pytest.fixture
def hooked(platform, tenant):
    """An endpoint of acme subscribed to ruleset.activated (public DNS answer faked)."""
    platform.webhooks.resolver = lambda host, port: ["93.184.216.34"]
    platform.webhooks.register("acme", "https://hooks.example.com/in", ["ruleset.activated"])

    def messages() -> list[dict]:
        docs = platform.store.query(WEBHOOK_MESSAGES, Query(pk=None, filters=(
            Filter("tenantId", "=", "acme"), Filter("eventType", "=", "ruleset.activated")), order_by="createdAt"))
        return [json.loads(d["body"])["data"] for d in docs]

    return messages


# --- drafts, validation, versions ---------------------------------------------------------


def test_drafts_versions_list_get_and_diff(client, platform, tenant) -> None:
    admin = auth(tenant.admin)
    created = client.post("/v1/rules/drafts", json={"ruleSetId": "main", "source": "rule"}, headers=admin)
    assert created.status_code == 201, created.text
    draft_id = created.json()["draftId"]
    updated = client.put(f"/v1/rules/drafts/{draft_id}", json={"source": V1}, headers=admin)
    assert updated.status_code == 200 and updated.json()["source"] == V1
    assert client.get(f"/v1/rules/drafts/{draft_id}", headers=admin).json()["source"] == V1

    first = client.post("/v1/rules/versions", json={"ruleSetId": "main", "draftId": draft_id, "reason": REASON},
                        headers=admin)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1 and first.json()["author"] == key_id(tenant.admin)
    assert first.json()["reason"] == REASON and "source" not in first.json()
    second = save(client, tenant.admin, V2)
    assert second["version"] == 2

    listed = client.get("/v1/rules/rulesets/main/versions", headers=auth(tenant.analyst))
    assert listed.status_code == 200 and [v["version"] for v in listed.json()["items"]] == [2, 1]
    got = client.get("/v1/rules/rulesets/main/versions/1", headers=auth(tenant.analyst)).json()
    assert got["source"] == V1 and got["createdAt"]
    diff = client.get("/v1/rules/rulesets/main/diff?from=1&to=2", headers=admin).json()["diff"]
    assert "-" + V1 in diff and "+" + V2 in diff
    assert audit_actions(platform, "acme").count("ruleset.version.saved") == 2


def test_validate_reports_position_caret_suggestion_and_cost_without_saving(client, platform, tenant) -> None:
    bad = client.post("/v1/rules/validate", json={"source": 'rule "a"\n  when order.totl > 1\n  then earn 1 points'},
                      headers=auth(tenant.admin))
    assert bad.status_code == 200, bad.text
    report = bad.json()
    assert report["ok"] is False and report["kind"] == "rule-type-error"
    diagnostic = report["diagnostics"][0]
    assert (diagnostic["rule"], diagnostic["line"], diagnostic["column"]) == ("a", 2, 8)
    assert diagnostic["hint"] == "did you mean order.total?"
    assert diagnostic["sourceLine"] == "  when order.totl > 1"
    assert "\n" + " " * (4 + 7) + "^\n" in diagnostic["rendered"]    # 4 of indent, then under column 8
    good = client.post("/v1/rules/validate", json={"source": V1 + '\nrule "two" then earn 5 points'},
                       headers=auth(tenant.admin)).json()
    assert good["ok"] is True and set(good["costPerRule"]) == {"base", "two"}
    assert good["cost"] == sum(good["costPerRule"].values()) and good["budget"] == 10_000
    assert client.get("/v1/rules/rulesets/main/versions", headers=auth(tenant.admin)).json()["items"] == []
    assert "ruleset.version.saved" not in audit_actions(platform, "acme")


def test_a_reason_code_and_text_are_mandatory(client, tenant) -> None:
    for reason in (None, {"code": "campaign"}, {"code": "whim", "text": "because"}, {"code": "campaign", "text": ""}):
        body = {"ruleSetId": "main", "source": V1, **({"reason": reason} if reason is not None else {})}
        response = client.post("/v1/rules/versions", json=body, headers=auth(tenant.admin))
        assert response.status_code == 422, (reason, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].startswith("reason") for e in response.json()["errors"])
    assert client.get("/v1/rules/rulesets/main/versions", headers=auth(tenant.admin)).json()["items"] == []


# --- activation, ingestion, rollback ------------------------------------------------------------


def test_ingest_earns_by_rate_until_activation_then_by_the_active_version(client, platform, tenant, hooked) -> None:
    ingest(client, platform, tenant.merchant, "c1", "o1")
    before = earn_entry(platform, "acme", "c1", "o1")
    assert before["signedAmount"] == 100 and before["ruleSetId"] == "rate:10" and before["ruleSetVersion"] is None

    save(client, tenant.admin, V1)
    response = activate(client, tenant.admin, 1)
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1 and response.json()["activatedBy"] == key_id(tenant.admin)
    active = client.get("/v1/rules/active", headers=auth(tenant.analyst)).json()["active"]
    assert (active["ruleSetId"], active["version"], active["experiment"]) == ("main", 1, None)

    # The provider had cached "nothing active" for acme a moment ago: activation invalidated it.
    ingest(client, platform, tenant.merchant, "c1", "o2")
    entry = earn_entry(platform, "acme", "c1", "o2")
    assert entry["signedAmount"] == 10 and (entry["ruleSetId"], entry["ruleSetVersion"], entry["arm"]) == ("main", 1,
                                                                                                        None)
    record = platform.ledger.record("acme", "c1", "order-o2")
    assert (record["ruleSetId"], record["ruleSetVersion"], record["points"]) == ("main", 1, 10)
    assert record["trace"][0]["rule"] == "base" and record["trace"][0]["status"] == "applied"
    history = client.get("/v1/customers/c1/ledger", headers=auth(tenant.merchant)).json()
    assert any(e.get("ruleSetVersion") == 1 for e in history["items"])

    log = client.get("/v1/rules/activations", headers=auth(tenant.admin)).json()["items"]
    assert [(a["version"], a["by"], a["previousVersion"]) for a in log] == [(1, key_id(tenant.admin), None)]
    audit = [r for r in platform.audit.records("acme", limit=100) if r["action"] == "ruleset.activated"]
    assert len(audit) == 1 and audit[0]["after"] == {"ruleSetId": "main", "version": 1}
    assert audit[0]["before"] is None and audit[0]["reason"] == "campaign: spring campaign"
    assert audit[0]["actor"]["keyId"] == key_id(tenant.admin)
    assert hooked() == [{"ruleSetId": "main", "version": 1, "arm": None}]


def test_rollback_to_an_earlier_version(client, platform, tenant, hooked, clock) -> None:
    save(client, tenant.admin, V1)
    save(client, tenant.admin, V2)
    assert activate(client, tenant.admin, 2).status_code == 200
    clock.advance(timedelta(minutes=1))
    ingest(client, platform, tenant.merchant, "c1", "o1")
    assert earn_entry(platform, "acme", "c1", "o1")["signedAmount"] == 20

    # A rollback to the active version is a repeat (a retry, a second click): no change, no record.
    activations = len(platform.rule_sets.activations("acme"))
    again = activate(client, tenant.admin, 2, "/v1/rules/rollback")
    assert again.status_code == 200 and again.json()["version"] == 2
    assert len(platform.rule_sets.activations("acme")) == activations
    response = activate(client, tenant.admin, 1, "/v1/rules/rollback")
    assert response.status_code == 200, response.text
    refused = activate(client, tenant.admin, 2, "/v1/rules/rollback")  # forward is an activation
    assert refused.status_code == 422 and "earlier" in refused.json()["detail"]
    ingest(client, platform, tenant.merchant, "c1", "o2")
    entry = earn_entry(platform, "acme", "c1", "o2")
    assert (entry["signedAmount"], entry["ruleSetVersion"]) == (10, 1)

    rolled = [r for r in platform.audit.records("acme", limit=100) if r["action"] == "ruleset.rolled-back"]
    assert len(rolled) == 1
    assert rolled[0]["before"] == {"ruleSetId": "main", "version": 2}
    assert rolled[0]["after"] == {"ruleSetId": "main", "version": 1}
    log = client.get("/v1/rules/activations", headers=auth(tenant.admin)).json()["items"]
    assert [a["version"] for a in log] == [1, 2] and log[0]["previousVersion"] == {"ruleSetId": "main", "version": 2}
    assert [m["version"] for m in hooked()] == [2, 1]


def test_unknown_versions_drafts_and_experiments_are_404_and_change_nothing(client, platform, tenant) -> None:
    admin = auth(tenant.admin)
    save(client, tenant.admin, V1)
    before = store_fingerprint(platform)
    for method, url, body in [
        ("GET", "/v1/rules/rulesets/main/versions/7", None),
        ("GET", "/v1/rules/rulesets/nope/versions/1", None),
        ("GET", "/v1/rules/rulesets/main/diff?from=1&to=9", None),
        ("GET", "/v1/rules/drafts/0123456789abcdef", None),
        ("GET", "/v1/rules/experiments/0123456789abcdef", None),
        ("GET", "/v1/rules/experiments/0123456789abcdef/results", None),
        ("POST", "/v1/rules/activate", {"target": {"ruleSetId": "main", "version": 9}, "reason": REASON}),
        ("POST", "/v1/rules/simulations", {"version": {"ruleSetId": "main", "version": 9}, "cases": [
            {"order": order_body(), "customer": {"customerId": "c1", "joinDate": "2025-01-01"}}]}),
    ]:
        response = client.request(method, url, json=body, headers=admin)
        assert response.status_code == 404, (url, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert store_fingerprint(platform) == before


@pytest.mark.parametrize("role", ["merchant", "analyst"])
def test_a_wrong_role_gets_403_and_changes_nothing(client, platform, tenant, role) -> None:
    save(client, tenant.admin, V1)
    key = getattr(tenant, role)
    before = store_fingerprint(platform)
    for url, body in [
        ("/v1/rules/versions", {"ruleSetId": "main", "source": V2, "reason": REASON}),
        ("/v1/rules/activate", {"target": {"ruleSetId": "main", "version": 1}, "reason": REASON}),
        ("/v1/rules/drafts", {"ruleSetId": "main", "source": V2}),
        ("/v1/rules/experiments", {"name": "x", "control": {"ruleSetId": "main", "version": 1},
                                   "treatment": {"ruleSetId": "main", "version": 1}, "treatmentShare": "0.5",
                                   "reason": REASON}),
    ]:
        response = client.post(url, json=body, headers=auth(key))
        assert response.status_code == 403, (url, response.text)
    assert store_fingerprint(platform) == before
    reads = client.get("/v1/rules/rulesets/main/versions", headers=auth(key))
    assert reads.status_code == (200 if role == "analyst" else 403)


# --- hostile sources -----------------------------------------------------------------------

HOSTILE = {
    "deep nesting": 'rule "a" when ' + "(" * 300 + "order.total > 1" + ")" * 300 + " then earn 1 points",
    "deep not": 'rule "a" when ' + "not " * 2000 + "order.total > 1 then earn 1 points",
    "huge literal": 'rule "a" then earn ' + "9" * 900 + " points",
    "thousands of rules": "\n".join(f'rule "r{i}" then earn 1 points' for i in range(1500)),
    "dunder": 'rule "a" when order.__class__ = "x" then earn 1 points',
    "import": 'import os\nrule "a" then earn 1 points',
    "python call": 'rule "a" then earn __import__("os").system("id") points',
    "long name": 'rule "a" when order.' + "x" * 900 + " > 1 then earn 1 points",
    "homoglyph": 'rule "a" when оrder.total > 1 then earn 1 points',           # Cyrillic о
    "bidi override": 'rule "a" when order.total > 1 then earn 1 points # \u202e hidden',
    "over budget": "\n".join(f'rule "r{i}" when sum(item.total for item in order.items) > 1 then earn 1 points'
                             for i in range(400)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_sources_get_a_problem_with_diagnostics_and_nothing_is_saved(client, platform, tenant, name) -> None:
    source = HOSTILE[name]
    response = client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": source, "reason": REASON},
                           headers=auth(tenant.admin))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422 and problem["type"].startswith("https://accrue.dev/problems/rule-")
    assert problem["diagnostics"] and all(d["line"] >= 1 and d["column"] >= 1 for d in problem["diagnostics"])
    assert problem["errors"][0]["field"].startswith("source:")
    if name == "over budget":
        assert problem["cost"] > problem["budget"] == 10_000 and len(problem["costPerRule"]) == 400
    if name == "homoglyph":
        assert "did you mean order.total?" in problem["diagnostics"][0]["hint"]
    assert client.get("/v1/rules/rulesets/main/versions", headers=auth(tenant.admin)).json()["items"] == []
    simulated = client.post("/v1/rules/simulations", json={"source": source, "cases": [
        {"order": order_body(), "customer": {"customerId": "c1", "joinDate": "2025-01-01"}}]},
        headers=auth(tenant.admin))
    assert simulated.status_code == 422 and simulated.json()["diagnostics"]
    validated = client.post("/v1/rules/validate", json={"source": source}, headers=auth(tenant.admin))
    assert validated.status_code == 200 and validated.json()["ok"] is False


def test_a_source_over_the_size_limit_is_refused_at_the_edge(client, tenant) -> None:
    source = "\n".join(f'rule "r{i}" then earn 1 points' for i in range(4000))
    assert len(source) > 64 * 1024
    response = client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": source, "reason": REASON},
                           headers=auth(tenant.admin))
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "source"


# --- simulation ---------------------------------------------------------------------------------

LOYAL = 'rule "base" then earn floor(order.total) points\nrule "loyal" when customer.order_count >= 1 then earn 5 points'


def test_simulation_of_given_and_stored_orders_writes_nothing(client, platform, tenant) -> None:
    ingest(client, platform, tenant.merchant, "c1", "o1", "10.00")
    ingest(client, platform, tenant.merchant, "c1", "o2", "20.00")
    ingest(client, platform, tenant.merchant, "c2", "o3", "30.00")
    draft = client.post("/v1/rules/drafts", json={"ruleSetId": "main", "source": LOYAL},
                        headers=auth(tenant.admin)).json()
    save(client, tenant.admin, LOYAL)
    before = store_fingerprint(platform)
    balances = client.get("/v1/customers/c1/balance", headers=auth(tenant.merchant)).json()

    given = client.post("/v1/rules/simulations", json={"draftId": draft["draftId"], "cases": [
        {"order": order_body("c9", "x1", "12.50"), "customer": {"customerId": "c9", "joinDate": "2025-01-01",
                                                                  "orderCount": 3}}]},
        headers=auth(tenant.admin))
    assert given.status_code == 200, given.text
    report = given.json()
    assert report["totalPoints"] == 17 and report["orders"][0]["points"] == 17
    loyal = report["orders"][0]["trace"][1]
    assert loyal["rule"] == "loyal" and loyal["matched"] is True
    assert loyal["conditions"] == [{"condition": "customer.order_count >= 1", "value": True}]
    assert loyal["actions"] == [{"action": "earn", "points": 5, "expiresAt": None}]

    stored = client.post("/v1/rules/simulations/stored", json={
        "version": {"ruleSetId": "main", "version": 1}, "from": "2026-11-01", "to": "2026-11-01"},
        headers=auth(tenant.admin))
    assert stored.status_code == 200, stored.text
    body = stored.json()
    assert body["ordersFound"] == 3 and body["truncated"] is False and body["skipped"] == 0
    points = {o["orderId"]: o["points"] for o in body["report"]["orders"]}
    # c1's second order sees one order before it; the others none.
    assert points == {"o1": 10, "o2": 25, "o3": 30} and body["report"]["totalPoints"] == 65
    empty = client.post("/v1/rules/simulations/stored", json={
        "source": LOYAL, "from": "2026-10-01", "to": "2026-10-31"}, headers=auth(tenant.admin)).json()
    assert empty["ordersFound"] == 0 and empty["report"]["totalPoints"] == 0
    backwards = client.post("/v1/rules/simulations/stored", json={
        "source": LOYAL, "from": "2026-11-02", "to": "2026-11-01"}, headers=auth(tenant.admin))
    assert backwards.status_code == 422

    assert store_fingerprint(platform) == before
    assert client.get("/v1/customers/c1/balance", headers=auth(tenant.merchant)).json() == balances


# --- A/B experiments --------------------------------------------------------------------------


def test_experiment_assigns_deterministically_reports_per_arm_and_promotes(client, platform, tenant, hooked,
                                                                             clock) -> None:
    admin = auth(tenant.admin)
    save(client, tenant.admin, V1)
    save(client, tenant.admin, V2)
    assert activate(client, tenant.admin, 1).status_code == 200
    clock.advance(timedelta(minutes=1))
    started = client.post("/v1/rules/experiments", json={
        "name": "double points", "control": {"ruleSetId": "main", "version": 1},
        "treatment": {"ruleSetId": "main", "version": 2}, "treatmentShare": "0.5", "reason": REASON}, headers=admin)
    assert started.status_code == 201, started.text
    experiment_id = started.json()["experimentId"]
    assert started.json()["status"] == "running"
    assert client.post("/v1/rules/activate", json={"target": {"ruleSetId": "main", "version": 2}, "reason": REASON},
                       headers=admin).status_code == 409

    routing = platform.store.read(RULESETS, "acme", "routing")
    sealed = routing["experiment"]["sealedSecret"]
    assert sealed.startswith("kek1:")                      # sealed under the tenant's KEK, not merely encoded
    secret = platform.rule_sets.experiment_secret("acme", sealed)
    assert len(secret) == 32 and secret.hex() not in str(routing)

    customers = [f"k{n}" for n in range(40)]
    for customer_id in customers:
        add_customer(platform, "acme", customer_id)
        client.post("/v1/orders", json=order_body(customer_id, f"{customer_id}-1"), headers=auth(tenant.merchant))
    drain(platform)
    for customer_id in customers[:10]:                     # a second order lands in the same arm
        client.post("/v1/orders", json=order_body(customer_id, f"{customer_id}-2"), headers=auth(tenant.merchant))
    drain(platform)

    expected = {c: assign(secret, c, Decimal("0.5")) for c in customers}
    assert 5 <= sum(arm == "B" for arm in expected.values()) <= 35
    for customer_id in customers:
        for suffix in ("-1", "-2") if customer_id in customers[:10] else ("-1",):
            entry = earn_entry(platform, "acme", customer_id, customer_id + suffix)
            arm = expected[customer_id]
            assert entry["arm"] == arm and entry["ruleSetVersion"] == (2 if arm == "B" else 1)
            assert entry["signedAmount"] == (20 if arm == "B" else 10)

    results = client.get(f"/v1/rules/experiments/{experiment_id}/results", headers=auth(tenant.analyst))
    assert results.status_code == 200, results.text
    arms = {a["arm"]: a for a in results.json()["arms"]}
    for arm, per_order in (("A", 10), ("B", 20)):
        members = [c for c in customers if expected[c] == arm]
        orders = len(members) + len([c for c in customers[:10] if expected[c] == arm])
        assert arms[arm]["customers"] == len(members) and arms[arm]["orders"] == orders
        assert arms[arm]["pointsIssued"] == per_order * orders and arms[arm]["pointsPerOrder"] == f"{per_order}.00"
    assert results.json()["truncated"] is False

    clock.advance(timedelta(minutes=1))
    promoted = client.post(f"/v1/rules/experiments/{experiment_id}/promote",
                           json={"arm": "B", "reason": REASON}, headers=admin)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["version"] == 2
    experiment = client.get(f"/v1/rules/experiments/{experiment_id}", headers=admin).json()
    assert experiment["status"] == "promoted" and experiment["winner"] == "B" and experiment["endedAt"]
    ingest(client, platform, tenant.merchant, "c1", "after")
    entry = earn_entry(platform, "acme", "c1", "after")
    assert (entry["signedAmount"], entry["ruleSetVersion"], entry["arm"]) == (20, 2, None)

    actions = audit_actions(platform, "acme")
    assert "ruleset.experiment.started" in actions and "ruleset.experiment.promoted" in actions
    published = hooked()
    assert published[0] == {"ruleSetId": "main", "version": 1, "arm": None}
    assert sorted(published[1:3], key=lambda m: m["arm"]) == [{"ruleSetId": "main", "version": 1, "arm": "A"},
                                                              {"ruleSetId": "main", "version": 2, "arm": "B"}]
    assert published[3] == {"ruleSetId": "main", "version": 2, "arm": None}
    # After the experiment ended, the results stay as they were.
    again = client.get(f"/v1/rules/experiments/{experiment_id}/results", headers=admin).json()
    assert {a["arm"]: a["orders"] for a in again["arms"]} == {a: arms[a]["orders"] for a in arms}


def test_stopping_an_experiment_returns_everyone_to_the_active_version(client, platform, tenant) -> None:
    admin = auth(tenant.admin)
    save(client, tenant.admin, V1)
    save(client, tenant.admin, V2)
    activate(client, tenant.admin, 1)
    experiment_id = client.post("/v1/rules/experiments", json={
        "name": "all in B", "control": {"ruleSetId": "main", "version": 1},
        "treatment": {"ruleSetId": "main", "version": 2}, "treatmentShare": "1", "reason": REASON},
        headers=admin).json()["experimentId"]
    ingest(client, platform, tenant.merchant, "c1", "o1")
    assert earn_entry(platform, "acme", "c1", "o1")["arm"] == "B"
    stopped = client.post(f"/v1/rules/experiments/{experiment_id}/stop", json={"reason": REASON}, headers=admin)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    ingest(client, platform, tenant.merchant, "c1", "o2")
    entry = earn_entry(platform, "acme", "c1", "o2")
    assert (entry["signedAmount"], entry["ruleSetVersion"], entry["arm"]) == (10, 1, None)
    again = client.post(f"/v1/rules/experiments/{experiment_id}/stop", json={"reason": REASON}, headers=admin)
    assert again.status_code == 409
    assert audit_actions(platform, "acme").count("ruleset.experiment.stopped") == 1


# --- the evaluator setting ----------------------------------------------------------------------

PROGRAMME = '''rule "Base earn" priority 10
  when order.channel in ["web", "store"]
  then earn floor(order.total * 10) points
rule "Coffee bonus"
  when any item in order.items has item.category = "coffee"
  then earn 50 points expiring in 90 days
rule "Big basket"
  when sum(item.total for item in order.items) >= 30
  then multiply earned by 1.5
'''


def test_the_tenant_evaluator_setting_chooses_the_evaluator_and_both_give_the_same_points(
        client, platform, tenant) -> None:
    wasm_tenant = make_tenant(platform, "globex")
    add_customer(platform, "globex", "c1")
    changed = client.patch("/v1/tenant", json={"evaluator": "wasm"}, headers=auth(wasm_tenant.admin))
    assert changed.status_code == 200 and changed.json()["evaluator"] == "wasm"
    for keys in (tenant, wasm_tenant):
        save(client, keys.admin, PROGRAMME)
        assert activate(client, keys.admin, 1).status_code == 200
    amounts = ["9.99", "12.34", "31.00", "0.10"]
    for number, amount in enumerate(amounts):
        for keys in (tenant, wasm_tenant):
            ingest(client, platform, keys.merchant, "c1", f"o{number}", amount)
    for number in range(len(amounts)):
        closure = platform.ledger.record("acme", "c1", order_record_id(f"o{number}"))
        wasm = platform.ledger.record("globex", "c1", order_record_id(f"o{number}"))
        assert closure["points"] == wasm["points"] > 0 and closure["trace"] == wasm["trace"]
    # Each tenant's compiled version ran on the evaluator its setting names.
    assert platform.rule_sets.registry.get("globex", "main", 1)._wasm is not None
    assert platform.rule_sets.registry.get("acme", "main", 1)._wasm is None


def test_an_activation_that_died_before_its_audit_record_is_recorded_by_its_retry(client, platform, tenant, clock,
                                                                                  hooked) -> None:
    """The routing is written, then the process dies before the audit record and the
    webhook; the client retries (a repeat: no change). The retry records the change and
    announces it, once; a further repeat records nothing."""
    from tests.conftest import dying_before_audit

    save(client, tenant.admin, V1)
    with dying_before_audit(platform, "ruleset.activated"):
        platform.rule_admin.activate("acme", _activate_input(1), _admin(platform, tenant))
    assert platform.rule_sets.active("acme").version == 1
    assert "ruleset.activated" not in audit_actions(platform, "acme") and hooked() == []
    clock.advance(LOST_RECORD_GRACE)  # a younger change's first attempt may still be recording it
    for _ in range(2):
        assert activate(client, tenant.admin, 1).status_code == 200  # the retry, then one more
    recorded = [r for r in platform.audit.records("acme", limit=100) if r["action"] == "ruleset.activated"]
    assert len(recorded) == 1 and recorded[0]["after"]["recordedOnRepeat"] is True
    assert recorded[0]["after"]["version"] == 1 and recorded[0]["before"] is None
    assert hooked() == [{"ruleSetId": "main", "version": 1, "arm": None}]


def _activate_input(version: int):
    from shared.rules import models

    return models.ActivateInput.model_validate({"target": {"ruleSetId": "main", "version": version},
                                                "reason": REASON})


def _admin(platform, tenant):
    return platform.keys.verify(tenant.admin)
