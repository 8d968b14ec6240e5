"""The rewards catalogue and the spend policy (tenant-admin): create, change,
list, read; validation naming the field; audit records; least privilege."""

from __future__ import annotations

import pytest

from tests.conftest import auth


def test_create_read_list_update_and_audit(client, platform, tenant, other_tenant) -> None:
    body = {"rewardId": "mug", "name": "A mug", "pointsCost": 300, "stock": 5, "perCustomerLimit": 2,
            "validFrom": "2026-01-01T00:00:00Z", "validUntil": "2027-01-01T00:00:00Z"}
    created = client.post("/v1/rewards", json=body, headers=auth(tenant.admin))
    assert created.status_code == 201 and created.headers["Location"] == "/v1/rewards/mug"
    assert created.json()["remaining"] == 5 and created.json()["version"] == 1
    assert client.post("/v1/rewards", json=body, headers=auth(tenant.admin)).status_code == 409
    assert client.post("/v1/rewards", json=body, headers=auth(tenant.merchant)).status_code == 403
    assert client.get("/v1/rewards/mug", headers=auth(other_tenant.admin)).status_code == 404
    patched = client.patch("/v1/rewards/mug", json={"pointsCost": 250, "stock": None}, headers=auth(tenant.admin))
    assert patched.status_code == 200, patched.text
    assert patched.json()["pointsCost"] == 250 and patched.json()["stock"] is None and patched.json()["version"] == 2
    listed = client.get("/v1/rewards", headers=auth(tenant.analyst)).json()
    assert [r["rewardId"] for r in listed["items"]] == ["mug"] and listed["next"] is None
    records = [r for r in platform.audit.records("acme", 0, 100) if r["action"].startswith("reward.")]
    assert [r["action"] for r in records] == ["reward.created", "reward.updated"]
    assert records[1]["before"]["pointsCost"] == 300 and records[1]["after"]["pointsCost"] == 250


@pytest.mark.parametrize("change, field", [
    ({"pointsCost": 0}, "pointsCost"), ({"pointsCost": -1}, "pointsCost"), ({"pointsCost": 1.5}, "pointsCost"),
    ({"pointsCost": "10"}, "pointsCost"), ({"stock": -1}, "stock"), ({"perCustomerLimit": 0}, "perCustomerLimit"),
    ({"validFrom": "2026-02-01T00:00:00Z", "validUntil": "2026-01-01T00:00:00Z"}, "body"),
    ({"validFrom": "2026-02-01T00:00:00"}, "validFrom"), ({"partnerId": "nobody"}, "partnerId"),
    ({"rewardId": "bad id"}, "rewardId"), ({"name": ""}, "name"), ({"colour": "red"}, "colour")])
def test_bad_rewards_are_422_naming_the_field(client, tenant, change, field) -> None:
    body = {"rewardId": "mug", "name": "A mug", "pointsCost": 300, **change}
    response = client.post("/v1/rewards", json=body, headers=auth(tenant.admin))
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()
    assert client.get("/v1/rewards/mug", headers=auth(tenant.admin)).status_code == 404


def test_patch_cannot_make_an_invalid_reward_or_cut_stock_below_claimed(client, platform, tenant) -> None:
    client.post("/v1/rewards", json={"rewardId": "mug", "name": "A mug", "pointsCost": 1, "stock": 3,
                                     "validUntil": "2027-01-01T00:00:00Z"}, headers=auth(tenant.admin))
    platform.spend.catalogue.take("acme", "mug")
    platform.spend.catalogue.take("acme", "mug")
    low = client.patch("/v1/rewards/mug", json={"stock": 1}, headers=auth(tenant.admin))
    assert low.status_code == 422 and low.json()["errors"][0]["field"] == "stock"
    window = client.patch("/v1/rewards/mug", json={"validFrom": "2028-01-01T00:00:00Z"}, headers=auth(tenant.admin))
    assert window.status_code == 422
    assert client.get("/v1/rewards/mug", headers=auth(tenant.admin)).json()["version"] == 1


def test_spend_policy(client, platform, tenant) -> None:
    assert client.get("/v1/spend/policy", headers=auth(tenant.merchant)).json() == {
        "reservationTtlSeconds": 900, "reviewThresholdPoints": None, "voucherCancel": "refund",
        "voucherExpiry": "forfeit"}
    assert client.put("/v1/spend/policy", json={"reservationTtlSeconds": 5}, headers=auth(tenant.admin)
                      ).status_code == 422
    assert client.put("/v1/spend/policy", json={"reviewThresholdPoints": 10}, headers=auth(tenant.merchant)
                      ).status_code == 403
    saved = client.put("/v1/spend/policy", json={"reservationTtlSeconds": 600, "reviewThresholdPoints": 10_000},
                       headers=auth(tenant.admin))
    assert saved.status_code == 200 and saved.json()["reservationTtlSeconds"] == 600
    assert platform.audit.records("acme", 0, 100)[-1]["action"] == "spend.policy.changed"
