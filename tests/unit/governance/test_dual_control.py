"""Dual control: one operator requests, two operators (the requester and another) approve
with their security keys in time, then the act runs (the ceremony: tests/operators.py)."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from shared.app.auth import Principal, Role
from shared.app.customers import CustomerProfile
from shared.governance.acts import TOMBSTONE_ID, executors
from shared.governance.dual_control import EXECUTION_LEASE
from shared.store.layout import PII_KEYS, TENANTS, customer_pk
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import Died, StoreThatDies, add_customer, auth, make_tenant


def ask(client, operator, **body):
    return client.post("/v1/platform/approvals", json={"reason": "ticket 9", **body}, headers=operator.headers)


def test_kek_rotation_needs_a_second_operator_and_rewraps_data_keys(client, platform, tenant, ceremony) -> None:
    alice, bob = ceremony.operators
    platform.customers.register("acme", CustomerProfile(customerId="p1", joinDate=date(2026, 1, 1),
                                                        email="p1@example.com", name="Pat"))
    old = platform.key_provider.current_version("acme")
    request = ask(client, alice, action="tenant.kek.rotate", tenantId="acme").json()
    assert request["status"] == "pending" and platform.key_provider.current_version("acme") == old
    assert ceremony.approve(request["id"], alice).status_code == 200
    self_approval = ceremony.approve(request["id"], alice)
    assert self_approval.status_code == 403 and self_approval.json()["type"].endswith("self-approval")
    assert platform.key_provider.current_version("acme") == old
    done = ceremony.approve(request["id"], bob)
    assert done.status_code == 200, done.text
    new = platform.key_provider.current_version("acme")
    assert new != old and done.json()["status"] == "executed" and done.json()["result"]["dataKeysRewrapped"] == 2
    assert platform.store.read(PII_KEYS, customer_pk("acme", "p1"), "dek")["keyVersion"] == new
    platform.vault.cache.clear()
    assert platform.vault.open(platform.customers.get("acme", "p1"))["name"] == "Pat"
    again = ceremony.approve(request["id"], bob)
    assert again.status_code == 409
    actions = [r["action"] for r in platform.audit.records("_platform") if r["target"].startswith("request:")]
    assert actions == ["approval.requested", "approval.approved", "approval.approved", "tenant.kek.rotate.executed"]
    assert "tenant.kek.rotated" in [r["action"] for r in platform.audit.records("acme")]


def test_an_expired_request_cannot_be_approved(client, platform, tenant, ceremony, clock) -> None:
    alice, bob = ceremony.operators
    request = ask(client, alice, action="tenant.delete", tenantId="acme").json()
    clock.advance(timedelta(hours=1, seconds=1))
    late = ceremony.approve(request["id"], bob)
    assert late.status_code == 409 and late.json()["type"].endswith("approval-expired")
    assert platform.tenants.exists("acme")
    assert client.get("/v1/platform/approvals", headers=bob.headers).json()["items"][0]["status"] == "expired"


def test_granting_platform_admin_returns_the_secret_once_and_never_stores_it(client, platform, ceremony) -> None:
    alice, bob = ceremony.operators
    request = ask(client, alice, action="platform-admin.grant", params={"operatorId": bob.operator_id}).json()
    ceremony.approve(request["id"], alice)
    done = ceremony.approve(request["id"], bob)
    secret = done.json()["result"]["apiKey"]
    assert done.headers["cache-control"] == "no-store"
    assert platform.keys.verify(secret).role is Role.PLATFORM_ADMIN
    stored = platform.approvals.get(request["id"])
    assert secret not in str(stored) and secret not in str(platform.audit.records("_platform"))


def test_deleting_a_tenant_revokes_keys_and_shreds_personal_data(client, platform, tenant, ceremony) -> None:
    alice, bob = ceremony.operators
    platform.customers.register("acme", CustomerProfile(customerId="p1", joinDate=date(2026, 1, 1),
                                                        email="p1@example.com"))
    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    platform.webhooks.register("acme", "http://127.0.0.1:9/hook", ["transaction.committed"])
    request = ask(client, alice, action="tenant.delete", tenantId="acme").json()
    rejected_by_tenant_admin = client.post(f"/v1/platform/approvals/{request['id']}/approve",
                                           json={"assertion": {}}, headers=auth(tenant.admin))
    assert rejected_by_tenant_admin.status_code == 403
    ceremony.approve(request["id"], alice)
    done = ceremony.approve(request["id"], bob).json()
    assert done["result"]["keysRevoked"] == 3 and done["result"]["customersErased"] == 4
    assert not platform.tenants.exists("acme")
    assert client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code == 401
    assert platform.store.read(PII_KEYS, customer_pk("acme", "p1"), "dek") is None
    assert [e["status"] for e in platform.webhooks.list("acme")] == ["disabled"]
    assert done["result"]["webhookEndpointsDisabled"] == 1
    # The id is retired: a new tenant under it would inherit the old ledger and audit chain.
    again = client.post("/v1/tenants", json={"tenantId": "acme", "name": "Acme again"}, headers=alice.headers)
    assert again.status_code == 409 and "never reused" in again.json()["detail"]
    assert not platform.tenants.exists("acme")


def test_bad_requests_and_rejection(client, platform, ceremony) -> None:
    alice, bob = ceremony.operators
    assert ask(client, alice, action="tenant.delete").status_code == 422
    assert ask(client, alice, action="tenant.explode", tenantId="acme").status_code == 422
    assert ask(client, alice, action="tenant.delete", tenantId="ghost").status_code == 404
    assert ask(client, alice, action="platform-admin.grant").status_code == 422  # whose key would it be?
    request = ask(client, alice, action="platform-admin.grant", params={"operatorId": bob.operator_id}).json()
    assert ceremony.approve(request["id"], alice, verb="reject").json()["status"] == "rejected"
    assert ceremony.approve(request["id"], bob).status_code == 409
    assert client.post("/v1/platform/approvals/req-0000000000000000/approve", json={"assertion": {}},
                       headers=bob.headers).status_code == 404


def test_an_executor_that_crashes_leaves_the_request_failed_and_audited(client, platform, tenant, ceremony,
                                                                       monkeypatch) -> None:
    alice, bob = ceremony.operators

    def key_vault_down(doc, who):
        raise RuntimeError("Key Vault unreachable")

    monkeypatch.setitem(platform.approvals.executors, "tenant.kek.rotate", key_vault_down)
    request = ask(client, alice, action="tenant.kek.rotate", tenantId="acme").json()
    ceremony.approve(request["id"], alice)
    crashed = ceremony.approve(request["id"], bob)
    assert crashed.status_code == 500
    stored = platform.approvals.get(request["id"])
    assert stored["status"] == "failed" and "Key Vault unreachable" in stored["error"]
    assert [r["action"] for r in platform.audit.records("_platform")][-1] == "tenant.kek.rotate.failed"
    again = ceremony.approve(request["id"], bob)
    assert again.status_code == 409  # decided: a new request is needed, not a silent retry


def test_a_tenant_deletion_that_dies_at_any_write_leaves_the_tenant_either_there_or_tombstoned(platform) -> None:
    """The deletion dies at each of its writes through the platform's store in turn (a
    tenant each time): the tenant is either still there without a tombstone (a new request
    finishes it) or gone with one, never tombstoned while it still exists."""
    who = Principal(tenant_id="_platform", role=Role.PLATFORM_ADMIN, key_id="op-key")
    for at in range(100):
        tenant_id = f"t{at}"
        make_tenant(platform, tenant_id)
        add_customer(platform, tenant_id, "c1")
        request = {"id": f"req-{at}", "tenantId": tenant_id, "reason": "closed", "params": {}}
        try:
            executors(dataclasses.replace(platform, store=StoreThatDies(platform.store, at)))["tenant.delete"](
                request, who)
        except Died:
            pass
        else:
            break  # no write left to die at
        tombstoned = platform.store.read(TENANTS, tenant_id, TOMBSTONE_ID) is not None
        assert platform.tenants.exists(tenant_id) != tombstoned, f"died at write {at}: tombstoned and there, or neither"
        if platform.tenants.exists(tenant_id):
            assert executors(platform)["tenant.delete"](request, who)["tenantId"] == tenant_id  # the new request
        assert not platform.tenants.exists(tenant_id) and platform.store.read(TENANTS, tenant_id, TOMBSTONE_ID)
    else:
        raise AssertionError("the deletion never completed")
    assert at > 1, "the deletion's writes were not reached"


def test_a_request_whose_executor_died_reads_interrupted_after_the_lease(client, platform, tenant, ceremony,
                                                                        clock, monkeypatch) -> None:
    alice, bob = ceremony.operators
    request = ask(client, alice, action="tenant.kek.rotate", tenantId="acme").json()
    ceremony.approve(request["id"], alice)

    def killed(approved, who):
        raise Died("the process running the act was killed")

    monkeypatch.setitem(platform.approvals.executors, "tenant.kek.rotate", killed)
    options = client.get(f"/v1/platform/approvals/{request['id']}/assertion-options", headers=bob.headers).json()
    with pytest.raises(Died):  # in process: the second approval's call dies inside the act
        platform.approvals.approve(request["id"], platform.keys.verify(bob.api_key), bob.key.get(options))
    monkeypatch.undo()

    def status() -> dict:
        listed = client.get("/v1/platform/approvals", headers=bob.headers).json()["items"]
        return next(r for r in listed if r["id"] == request["id"])

    assert status()["status"] == "executing"  # within the lease: it may still be running
    clock.advance(EXECUTION_LEASE - timedelta(seconds=1))
    assert status()["status"] == "executing"
    clock.advance(timedelta(seconds=1))
    shown = status()
    assert shown["status"] == "interrupted" and "audit log" in shown["error"]
    assert ceremony.approve(request["id"], alice).status_code == 409  # nothing left to approve
    again = ask(client, alice, action="tenant.kek.rotate", tenantId="acme").json()
    ceremony.approve(again["id"], alice)
    assert ceremony.approve(again["id"], bob).json()["status"] == "executed"
