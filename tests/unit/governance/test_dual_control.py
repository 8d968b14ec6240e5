"""Dual control: one platform-admin requests, another approves in time, then the act runs."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from shared.app.auth import Role
from shared.app.customers import CustomerProfile
from shared.store.layout import PII_KEYS, customer_pk
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import auth


@pytest.fixture
def operators(platform):
    return (platform.keys.issue("_platform", Role.PLATFORM_ADMIN, None, "alice").secret_key,
            platform.keys.issue("_platform", Role.PLATFORM_ADMIN, None, "bob").secret_key)


def ask(client, key, **body):
    return client.post("/v1/platform/approvals", json={"reason": "ticket 9", **body}, headers=auth(key))


def test_kek_rotation_needs_a_second_operator_and_rewraps_data_keys(client, platform, tenant, operators) -> None:
    alice, bob = operators
    platform.customers.register("acme", CustomerProfile(customerId="p1", joinDate=date(2026, 1, 1),
                                                        email="p1@example.com", name="Pat"))
    old = platform.key_provider.current_version("acme")
    request = ask(client, alice, action="tenant.kek.rotate", tenantId="acme").json()
    assert request["status"] == "pending" and platform.key_provider.current_version("acme") == old
    self_approval = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(alice))
    assert self_approval.status_code == 403 and self_approval.json()["type"].endswith("self-approval")
    assert platform.key_provider.current_version("acme") == old
    done = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={"reason": "ok"}, headers=auth(bob))
    assert done.status_code == 200, done.text
    new = platform.key_provider.current_version("acme")
    assert new != old and done.json()["status"] == "executed" and done.json()["result"]["dataKeysRewrapped"] == 2
    assert platform.store.read(PII_KEYS, customer_pk("acme", "p1"), "dek")["keyVersion"] == new
    platform.vault.cache.clear()
    assert platform.vault.open(platform.customers.get("acme", "p1"))["name"] == "Pat"
    again = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(bob))
    assert again.status_code == 409
    actions = [r["action"] for r in platform.audit.records("_platform")]
    assert actions == ["approval.requested", "approval.approved", "tenant.kek.rotate.executed"]
    assert "tenant.kek.rotated" in [r["action"] for r in platform.audit.records("acme")]


def test_an_expired_request_cannot_be_approved(client, platform, tenant, operators, clock) -> None:
    alice, bob = operators
    request = ask(client, alice, action="tenant.delete", tenantId="acme").json()
    clock.advance(timedelta(hours=1, seconds=1))
    late = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(bob))
    assert late.status_code == 409 and late.json()["type"].endswith("approval-expired")
    assert platform.tenants.exists("acme")
    assert client.get("/v1/platform/approvals", headers=auth(bob)).json()["items"][0]["status"] == "expired"


def test_granting_platform_admin_returns_the_secret_once_and_never_stores_it(client, platform, operators) -> None:
    alice, bob = operators
    request = ask(client, alice, action="platform-admin.grant", label="carol").json()
    done = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(bob))
    secret = done.json()["result"]["apiKey"]
    assert done.headers["cache-control"] == "no-store"
    assert platform.keys.verify(secret).role is Role.PLATFORM_ADMIN
    stored = platform.approvals.get(request["id"])
    assert secret not in str(stored) and secret not in str(platform.audit.records("_platform"))


def test_deleting_a_tenant_revokes_keys_and_shreds_personal_data(client, platform, tenant, operators) -> None:
    alice, bob = operators
    platform.customers.register("acme", CustomerProfile(customerId="p1", joinDate=date(2026, 1, 1),
                                                        email="p1@example.com"))
    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    platform.webhooks.register("acme", "http://127.0.0.1:9/hook", ["transaction.committed"])
    request = ask(client, alice, action="tenant.delete", tenantId="acme").json()
    rejected_by_tenant_admin = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={},
                                           headers=auth(tenant.admin))
    assert rejected_by_tenant_admin.status_code == 403
    done = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(bob)).json()
    assert done["result"]["keysRevoked"] == 3 and done["result"]["customersErased"] == 4
    assert not platform.tenants.exists("acme")
    assert client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code == 401
    assert platform.store.read(PII_KEYS, customer_pk("acme", "p1"), "dek") is None
    assert [e["status"] for e in platform.webhooks.list("acme")] == ["disabled"]
    assert done["result"]["webhookEndpointsDisabled"] == 1
    # The id is retired: a new tenant under it would inherit the old ledger and audit chain.
    again = client.post("/v1/tenants", json={"tenantId": "acme", "name": "Acme again"}, headers=auth(alice))
    assert again.status_code == 409 and "never reused" in again.json()["detail"]
    assert not platform.tenants.exists("acme")


def test_bad_requests_and_rejection(client, platform, operators) -> None:
    alice, bob = operators
    assert ask(client, alice, action="tenant.delete").status_code == 422
    assert ask(client, alice, action="tenant.explode", tenantId="acme").status_code == 422
    request = ask(client, alice, action="tenant.delete", tenantId="ghost").json()
    failed = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(bob))
    assert failed.status_code == 404
    assert ask(client, alice, action="platform-admin.grant").status_code == 422  # whose key would it be?
    request = ask(client, alice, action="platform-admin.grant", label="dave").json()
    assert client.post(f"/v1/platform/approvals/{request['id']}/reject", json={}, headers=auth(alice)).json()[
        "status"] == "rejected"
    assert client.post(f"/v1/platform/approvals/{request['id']}/approve", json={},
                       headers=auth(bob)).status_code == 409
    assert client.post("/v1/platform/approvals/req-0000000000000000/approve", json={},
                       headers=auth(bob)).status_code == 404


def test_an_executor_that_crashes_leaves_the_request_failed_and_audited(client, platform, tenant, operators,
                                                                       monkeypatch) -> None:
    alice, bob = operators

    def key_vault_down(doc, who):
        raise RuntimeError("Key Vault unreachable")

    monkeypatch.setitem(platform.approvals.executors, "tenant.kek.rotate", key_vault_down)
    request = ask(client, alice, action="tenant.kek.rotate", tenantId="acme").json()
    crashed = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(bob))
    assert crashed.status_code == 500
    stored = platform.approvals.get(request["id"])
    assert stored["status"] == "failed" and "Key Vault unreachable" in stored["error"]
    assert [r["action"] for r in platform.audit.records("_platform")][-1] == "tenant.kek.rotate.failed"
    again = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(bob))
    assert again.status_code == 409  # decided: a new request is needed, not a silent retry


def test_a_second_key_of_the_same_operator_cannot_approve(client, platform, tenant, operators) -> None:
    alice, bob = operators
    alice_again = platform.keys.issue("_platform", Role.PLATFORM_ADMIN, None, " Alice ").secret_key
    platform.key_provider.ensure_tenant_key("acme")
    request = ask(client, alice, action="tenant.kek.rotate", tenantId="acme").json()
    old = platform.key_provider.current_version("acme")
    same_person = client.post(f"/v1/platform/approvals/{request['id']}/approve", json={}, headers=auth(alice_again))
    assert same_person.status_code == 403 and same_person.json()["type"].endswith("self-approval")
    assert platform.approvals.get(request["id"])["status"] == "pending"
    assert platform.key_provider.current_version("acme") == old
    assert client.post(f"/v1/platform/approvals/{request['id']}/approve", json={},
                       headers=auth(bob)).json()["status"] == "executed"
