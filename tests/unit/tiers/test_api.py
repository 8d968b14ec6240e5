"""The tiers API: the programme (tenant-admin, audited), a customer's tier and history
(read), bad tables refused with the field named and nothing written, tenant isolation."""

from __future__ import annotations

from shared.store.layout import TENANTS
from shared.tiers.service import PROGRAM_ID
from tests.conftest import auth, drain, order_body

from .conftest import GOLDEN


def _audit_actions(platform, tenant_id="acme"):  # type: ignore[no-untyped-def]
    return [r["action"] for r in platform.audit.records(tenant_id, 0, 1000)]


def test_admin_defines_reads_replaces_and_deletes_the_programme(client, platform, tenant) -> None:
    assert client.get("/v1/tiers", headers=auth(tenant.analyst)).status_code == 404
    saved = client.put("/v1/tiers", json=GOLDEN, headers=auth(tenant.admin))
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 1 and [t["name"] for t in saved.json()["tiers"]] == ["silver", "gold", "platinum"]
    read = client.get("/v1/tiers", headers=auth(tenant.merchant)).json()
    assert read["tiers"][1]["multiplier"] == "1.5" and read["schedule"]["timeZone"] == "Europe/Paris"
    # 1 Dec 2026 00:00 in Paris: the first evaluation after the programme was saved (clock: 1 Nov 12:00 UTC).
    assert read["schedule"]["nextEvaluationAt"] == "2026-11-30T23:00:00.000000Z"
    assert read["schedule"]["lastEvaluationAt"] == "2026-10-31T23:00:00.000000Z"
    changed = client.put("/v1/tiers", json={**GOLDEN, "grace": {"kind": "days", "days": 30}},
                         headers=auth(tenant.admin))
    assert changed.json()["version"] == 2 and changed.json()["grace"] == {"kind": "days", "days": 30}
    assert client.delete("/v1/tiers", headers=auth(tenant.admin)).status_code == 204
    assert client.get("/v1/tiers", headers=auth(tenant.admin)).status_code == 404
    assert _audit_actions(platform)[-3:] == ["tiers.program.saved", "tiers.program.saved", "tiers.program.deleted"]
    saved_record = [r for r in platform.audit.records("acme", 0, 1000) if r["action"] == "tiers.program.saved"][1]
    assert saved_record["before"]["grace"] == {"kind": "nextEvaluation"}
    assert saved_record["after"]["grace"] == {"kind": "days", "days": 30}


def test_only_tenant_admins_change_the_programme(client, platform, tenant) -> None:
    for key in (tenant.merchant, tenant.analyst):
        assert client.put("/v1/tiers", json=GOLDEN, headers=auth(key)).status_code == 403
        assert client.delete("/v1/tiers", headers=auth(key)).status_code == 403
    assert platform.store.read(TENANTS, "acme", PROGRAM_ID) is None


def _bad(tiers=None, **changes):  # type: ignore[no-untyped-def]
    return {**GOLDEN, **({"tiers": tiers} if tiers is not None else {}), **changes}


def test_bad_tables_are_422_naming_the_field_and_write_nothing(client, platform, tenant) -> None:
    client.put("/v1/tiers", json=GOLDEN, headers=auth(tenant.admin))
    before = platform.store.read(TENANTS, "acme", PROGRAM_ID)
    audit_before = len(_audit_actions(platform))
    cases = [
        (_bad([{"name": "silver", "minPoints": 500}, {"name": "gold", "minPoints": 500}]), "tiers[1].minPoints"),
        (_bad([{"name": "silver", "minPoints": 900}, {"name": "gold", "minPoints": 500}]), "tiers[1].minPoints"),
        (_bad([{"name": "gold", "minPoints": 1}, {"name": "gold", "minPoints": 5}]), "tiers[1].name"),
        (_bad([{"name": "silver", "minPoints": 1}, {"name": "gold", "minSpend": "5"}]), "tiers[1]"),
        (_bad([{"name": "silver", "minPoints": 1, "multiplier": "0"}]), "tiers[0].multiplier"),
        (_bad([{"name": "silver", "minPoints": 1, "multiplier": "11"}]), "tiers[0].multiplier"),
        (_bad([{"name": "silver", "minPoints": 1, "multiplier": "-2"}]), "tiers[0].multiplier"),
        (_bad([{"name": f"t{i}", "minPoints": i} for i in range(21)]), "tiers"),
        (_bad([]), "tiers"),
        (_bad(windowMonths=0), "windowMonths"),
        (_bad(grace={"kind": "days", "days": -3}), "grace.days.days"),
        (_bad(evaluation={"frequency": "monthly", "dayOfMonth": 30}), "evaluation.monthly.dayOfMonth"),
        # Issue 12: spend is money in the tenant's currency (EUR), written one way, as a string.
        (_bad([{"name": "silver", "minSpend": "10.005"}]), "tiers[0].minSpend"),
        (_bad([{"name": "silver", "minSpend": "1_000"}]), "tiers[0].minSpend"),
        (_bad([{"name": "silver", "minSpend": 100}]), "tiers[0].minSpend"),
        (_bad([{"name": "silver", "minPoints": 1, "multiplier": " 1.5"}]), "tiers[0].multiplier"),
    ]
    for body, field in cases:
        response = client.put("/v1/tiers", json=body, headers=auth(tenant.admin))
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        named = [e["field"] for e in response.json().get("errors", [])]
        assert any(n == field or n.startswith(field) for n in named), (field, named)
    assert platform.store.read(TENANTS, "acme", PROGRAM_ID) == before
    assert len(_audit_actions(platform)) == audit_before


def test_customer_tier_and_history_over_the_api(client, platform, tenant) -> None:
    client.put("/v1/tiers", json=GOLDEN, headers=auth(tenant.admin))
    # The tenant earns 10 points per EUR: 15 EUR = 150 points (silver), then 400 EUR more (gold, platinum).
    for order_id, amount in (("o1", "15.00"), ("o2", "40.00"), ("o3", "200.00")):
        assert client.post("/v1/orders", json=order_body("c1", order_id, amount=amount),
                           headers=auth(tenant.merchant)).status_code == 202
        drain(platform)
    tier = client.get("/v1/customers/c1/tier", headers=auth(tenant.analyst)).json()
    assert tier["tier"] == "platinum" and tier["multiplier"] == "2" and tier["qualifying"]["points"] == 2550
    assert tier["qualifying"]["spend"] == "255.00" and tier["belowSince"] is None
    assert client.get("/v1/customers/c1", headers=auth(tenant.analyst)).json()["tier"] == "platinum"
    first = client.get("/v1/customers/c1/tier/history?limit=2", headers=auth(tenant.analyst)).json()
    assert [i["toTier"] for i in first["items"]] == ["platinum", "gold"] and first["next"]
    rest = client.get(first["next"], headers=auth(tenant.analyst)).json()
    assert [(i["fromTier"], i["toTier"]) for i in rest["items"]] == [(None, "silver")] and rest["next"] is None
    assert set(first["items"][0]) >= {"customerId", "fromTier", "toTier", "reason", "qualifying", "at"}
    bad = client.get("/v1/customers/c1/tier/history?cursor=zzz", headers=auth(tenant.analyst))
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "query.cursor"
    assert client.get("/v1/customers/nobody/tier", headers=auth(tenant.analyst)).status_code == 404
    assert client.get("/v1/customers/nobody/tier/history", headers=auth(tenant.analyst)).status_code == 404


def test_tenants_never_see_each_others_tiers(client, platform, tenant, other_tenant) -> None:
    client.put("/v1/tiers", json=GOLDEN, headers=auth(tenant.admin))
    for tenant_keys in (tenant, other_tenant):
        client.post("/v1/orders", json=order_body("c1", "o1", amount="100.00"), headers=auth(tenant_keys.merchant))
    drain(platform)
    assert client.get("/v1/customers/c1/tier", headers=auth(tenant.analyst)).json()["tier"] == "gold"
    theirs = client.get("/v1/customers/c1/tier", headers=auth(other_tenant.analyst)).json()
    assert theirs["tier"] is None and theirs["multiplier"] == "1"
    assert client.get("/v1/customers/c1/tier/history", headers=auth(other_tenant.analyst)).json()["items"] == []
    assert client.get("/v1/tiers", headers=auth(other_tenant.analyst)).status_code == 404
    assert client.delete("/v1/tiers", headers=auth(other_tenant.admin)).status_code == 404
    assert client.get("/v1/tiers", headers=auth(tenant.analyst)).status_code == 200
