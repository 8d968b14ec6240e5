"""Tenant provisioning is all or nothing and idempotent: a failure after any step, then a
retry of the same request (each an approval request two operators approve, tests/operators.py), ends in exactly one tenant, one admin key, one record of each
kind and the keys present; the answer of a completed provisioning is replayed.

Real parts: the SQLite store, the real API over HTTP (ASGI), and Key Vault through the
SDK's own clients against the fake vault (tests/unit/keys/fake_keyvault.py) with Azure
RBAC modelled: the app's identity holds Crypto User, the key manager Crypto Officer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_app
from shared.app.provisioning import PK, record_id
from shared.domain.tenants import TenantSettings
from shared.keys.keyvault import KeyVaultKeyProvider, key_name
from shared.platform import Platform, build_platform
from shared.settings import Settings
from shared.store.layout import API_KEYS, SYSTEM
from shared.store.port import Filter, Query
from tests.conftest import auth
from tests.operators import Ceremony, add_operators
from tests.unit.keys.fake_keyvault import CRYPTO_OFFICER, CRYPTO_USER, VAULT, FakeCredential, FakeKeyVaultTransport

BODY = {"tenantId": "newco", "name": "New Co", "currency": "EUR", "timeZone": "Europe/Paris", "pointsPerUnit": "10"}
STEPS = ("kek", "secret", "tenant", "admin-key", "audit")


class Crash(Exception):
    """Stands in for a crash or an outage right after a step."""


@pytest.fixture
def vault() -> FakeKeyVaultTransport:
    transport = FakeKeyVaultTransport()
    transport.grant("app", CRYPTO_USER)
    transport.grant("manager", CRYPTO_OFFICER)
    return transport


def _platform(tmp_path: Path, clock, vault: FakeKeyVaultTransport, manager: str | None = "manager") -> Platform:
    provider = KeyVaultKeyProvider(VAULT, FakeCredential("app"), transport=vault, retry_total=0,
                                   management_credential=FakeCredential(manager) if manager else None)
    settings = Settings.from_env({"ACCRUE_DATA_DIR": str(tmp_path / "data"), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
    return build_platform(settings, clock=clock, key_provider=provider)


@pytest.fixture
def stack(tmp_path, clock, vault) -> Iterator[tuple[Platform, TestClient, str]]:
    platform = _platform(tmp_path, clock, vault)
    with TestClient(create_app(platform), base_url="http://accrue.test", raise_server_exceptions=False) as http:
        yield platform, http, Ceremony(http, add_operators(platform, 2))
    platform.close()


def end_state(platform: Platform, vault: FakeKeyVaultTransport, tenant_id: str = "newco") -> dict:
    keys = platform.store.query(API_KEYS, Query(pk=None, filters=(Filter("tenantId", "=", tenant_id),), limit=10))
    # The provisioning's own records (the approval request's are the ceremony's, tests/unit/governance).
    actions = [r["action"] for r in platform.audit.records(tenant_id) if not r["target"].startswith("request:")]
    return {"tenant": platform.tenants.exists(tenant_id), "adminKeys": len(keys),
            "actions": sorted(actions), "kek": key_name(tenant_id) in vault.keys}


COMPLETE = {"tenant": True, "adminKeys": 1, "kek": True,
            "actions": ["apikey.created", "tenant.created", "tenant.kek.created"]}


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_after_any_step_then_a_retry_completes_exactly_once(stack, vault, step) -> None:
    platform, http, root = stack

    def fail(at: str) -> None:
        if at == step:
            raise Crash(at)

    platform.provisioning.after_step = fail
    with pytest.raises(Crash):  # in process, the crash surfaces as the exception itself
        platform.provisioning.provision(TenantSettings.model_validate(BODY), None)
    platform.provisioning.after_step = lambda at: None
    retry = root.tenant(BODY)
    assert retry.status_code == 201, retry.text
    assert end_state(platform, vault) == COMPLETE
    admin = retry.json()["adminKey"]["apiKey"]
    assert http.get("/v1/tenant", headers=auth(admin)).json()["name"] == "New Co"
    # And once more: the same answer, nothing new.
    again = root.tenant(BODY)
    assert again.status_code == 201 and again.json() == retry.json()
    assert end_state(platform, vault) == COMPLETE


def test_a_vault_that_refuses_leaves_nothing_and_the_retry_after_the_fix_completes(tmp_path, clock, vault) -> None:
    # The data-path identity wired as the manager: the 403 of issue 16.
    broken = _platform(tmp_path, clock, vault, manager="app")
    ops = add_operators(broken, 2)
    with TestClient(create_app(broken), base_url="http://accrue.test", raise_server_exceptions=False) as http:
        refused = Ceremony(http, ops).tenant(BODY)
    assert refused.status_code == 503 and refused.json()["type"].endswith("/key-vault-forbidden"), refused.text
    assert end_state(broken, vault) == {"tenant": False, "adminKeys": 0, "actions": [], "kek": False}
    broken.close()
    fixed = _platform(tmp_path, clock, vault)  # the role is granted: the same request again
    with TestClient(create_app(fixed), base_url="http://accrue.test", raise_server_exceptions=False) as http:
        done = Ceremony(http, ops).tenant(BODY)
    assert done.status_code == 201, done.text
    assert end_state(fixed, vault) == COMPLETE
    fixed.close()


def test_without_a_key_manager_the_answer_is_503_naming_the_setting_and_nothing_is_written(
        tmp_path, clock, vault) -> None:
    platform = _platform(tmp_path, clock, vault, manager=None)
    ops = add_operators(platform, 2)
    with TestClient(create_app(platform), base_url="http://accrue.test", raise_server_exceptions=False) as http:
        refused = Ceremony(http, ops).tenant(BODY)
    assert refused.status_code == 503 and "KEYVAULT_MANAGEMENT_CLIENT_ID" in refused.json()["detail"]
    assert end_state(platform, vault)["tenant"] is False
    platform.close()


def test_a_different_request_for_the_same_id_is_409_before_and_after_completion(stack, vault) -> None:
    platform, http, root = stack

    def fail(at: str) -> None:
        if at == "tenant":
            raise Crash(at)

    platform.provisioning.after_step = fail
    assert root.tenant(BODY).status_code == 500  # the crash
    platform.provisioning.after_step = lambda at: None
    other = root.tenant({**BODY, "name": "Someone else"})
    assert other.status_code == 409 and other.json()["type"].endswith("/tenant-provisioning-conflict")
    assert root.tenant(BODY).status_code == 201
    assert root.tenant({**BODY, "name": "Someone else"}).status_code == 409
    assert end_state(platform, vault) == COMPLETE


def test_the_record_keeps_the_request_hash_and_a_sealed_secret_never_the_clear_one(stack) -> None:
    platform, http, root = stack
    answer = root.tenant(BODY).json()
    record = platform.store.read(SYSTEM, PK, record_id("newco"))
    assert record["status"] == "done" and len(record["requestHash"]) == 64
    secret = answer["adminKey"]["apiKey"].split("_", 2)[2]
    assert secret not in repr(record) and record["sealedSecret"].startswith("kek1:")
    assert record["expiresAt"] > record["createdAt"]


def test_after_the_record_lifetime_a_repeat_is_an_ordinary_409(stack, clock) -> None:
    from datetime import timedelta

    platform, http, root = stack
    assert root.tenant(BODY).status_code == 201
    clock.advance(timedelta(hours=25))
    late = root.tenant(BODY)
    assert late.status_code == 409 and "already exists" in late.json()["detail"]
    assert platform.store.read(SYSTEM, PK, record_id("newco"))["sealedSecret"] is None


def test_a_crashed_holders_lease_expires_and_the_retry_takes_over(stack, vault, clock) -> None:
    from datetime import timedelta

    from shared.clock import iso

    platform, http, root = stack

    def fail(at: str) -> None:
        if at == "admin-key":
            raise Crash(at)

    platform.provisioning.after_step = fail
    with pytest.raises(Crash):
        platform.provisioning.provision(TenantSettings.model_validate(BODY), None)
    platform.provisioning.after_step = lambda at: None
    # A crash never releases its lease: put one back, as a killed process leaves it.
    record = platform.store.read(SYSTEM, PK, record_id("newco"))
    platform.store.upsert(SYSTEM, {**record, "leaseOwner": "killed", "leaseUntil": iso(clock.now() + timedelta(
        seconds=30))}, if_match=record["_etag"])
    clock.advance(timedelta(seconds=31))
    retry = root.tenant(BODY)
    assert retry.status_code == 201, retry.text
    assert end_state(platform, vault) == COMPLETE


def test_a_sandbox_tenant_is_marked_and_has_its_sample_data(stack, vault) -> None:
    import time

    from shared.app import sample_data

    platform, http, root = stack
    started = time.perf_counter()
    made = root.tenant({**BODY, "tenantId": "play", "sandbox": True})
    elapsed = time.perf_counter() - started
    print(f"\nsandbox tenant provisioned over HTTP (fake Key Vault, SQLite) in {elapsed:.2f} s")
    assert made.status_code == 201, made.text
    assert made.json()["tenant"]["sandbox"] is True and platform.tenants.get("play").sandbox
    admin = auth(made.json()["adminKey"]["apiKey"])
    assert http.get("/v1/tenant", headers=admin).json()["sandbox"] is True
    active = platform.rule_sets.active("play")
    assert active is not None and active.rule_set_id == sample_data.RULE_SET_ID
    assert {r["rewardId"] for r in platform.spend.catalogue.list("play", None, 10)} == \
        {r["rewardId"] for r in sample_data.REWARDS}
    assert all(platform.customers.find("play", f"cust-{n:03d}") for n in range(1, 6))
    # The sample orders were accepted (queued for ingestion) under their own ids.
    assert platform.bus.depth() >= 1
    # The sandbox's partner is the simulator; a real tenant's request to it is refused.
    from shared.spend.partners import PartnerCallFailed, PartnerRequest
    from shared.spend.simulator import SIMULATOR_ID

    port = platform.spend.partners.port(SIMULATOR_ID)
    request = PartnerRequest(SIMULATOR_ID, "reward", "r-1", "play", "cust-001", 500, sku="VOUCHER-5")
    assert port.fulfil(request).partner_reference == port.fulfil(request).partner_reference
    with pytest.raises(PartnerCallFailed) as refused:
        port.fulfil(PartnerRequest(SIMULATOR_ID, "reward", "r-2", "newco", "c1", 500))
    assert refused.value.permanent
    # A repeat of the sandbox request adds nothing.
    again = root.tenant({**BODY, "tenantId": "play", "sandbox": True})
    assert again.json() == made.json()
    assert len(platform.rule_sets.list_versions("play", sample_data.RULE_SET_ID)) == 1


@pytest.mark.parametrize("step", ("admin-key", "sample-data", "audit"))
def test_a_sandbox_interrupted_after_a_step_is_completed_with_one_of_each_sample(stack, vault, step) -> None:
    from shared.app import sample_data

    platform, http, root = stack
    body = {**BODY, "tenantId": "play", "sandbox": True}

    def fail(at: str) -> None:
        if at == step:
            raise Crash(at)

    platform.provisioning.after_step = fail
    with pytest.raises(Crash):
        platform.provisioning.provision(TenantSettings.model_validate(body), None)
    platform.provisioning.after_step = lambda at: None
    retry = root.tenant(body)
    assert retry.status_code == 201, retry.text
    assert end_state(platform, vault, "play")["adminKeys"] == 1
    actions = [r["action"] for r in platform.audit.records("play")]
    assert actions.count("tenant.created") == 1 and actions.count("ruleset.activated") == 1
    assert len(platform.rule_sets.list_versions("play", sample_data.RULE_SET_ID)) == 1
    assert len(platform.spend.catalogue.list("play", None, 10)) == len(sample_data.REWARDS)
