"""Every key issued or revoked, by any path, is exactly one audit record; a platform-admin
key needs a second operator while dual control is on (the bootstrap key excepted).

``PATHS`` is the table of every way the product issues or revokes a key: a new path
is one more row, and ``test_nothing_but_the_key_administration_issues_or_revokes``
fails until it goes through ``shared.governance.keys``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_app
from shared.app.auth import Role
from shared.audit.log import LOST_RECORD_GRACE, PLATFORM_CHAIN, Actor
from shared.errors import ConfigurationError
from shared.governance.dual_control import DualControlRequired
from shared.governance.keys import LastPlatformAdmin
from shared.local.__main__ import OPERATOR_KEY_VARIABLE, main
from shared.platform import Platform, build_platform
from shared.settings import Settings
from tests.conftest import auth, make_tenant, run_in_threads
from tests.operators import Ceremony, Operator, add_operators

ROOT = Path(__file__).resolve().parents[3]
TENANT_ROLES = ("merchant", "analyst", "tenant-admin")


def key_records(platform: Platform, chain: str) -> list[dict]:
    return [r for r in platform.audit.records(chain, limit=1000) if r["action"].startswith("apikey.")]


def operators(platform: Platform) -> tuple[str, str]:
    """Two platform-admin keys of two operators with security keys (tests/operators.py)."""
    return tuple(o.api_key for o in two(platform))  # type: ignore[return-value]


def two(platform: Platform) -> list[Operator]:
    return add_operators(platform, 2)


# --- the table of paths: each does one act and returns (chain, key id, action) ---------------

def api_issue(role: str) -> Callable[[Platform, TestClient, Path, pytest.MonkeyPatch], tuple[str, str, str]]:
    def act(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
        admin = make_tenant(platform, "acme").admin
        created = client.post("/v1/api-keys", json={"role": role, "label": "x"}, headers=auth(admin))
        assert created.status_code == 201, created.text
        return "acme", created.json()["keyId"], "apikey.created"
    return act


def api_revoke(role: str) -> Callable[[Platform, TestClient, Path, pytest.MonkeyPatch], tuple[str, str, str]]:
    def act(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
        admin = make_tenant(platform, "acme").admin
        key_id = platform.keys.issue("acme", Role(role), None).key_id
        revoked = client.delete(f"/v1/api-keys/{key_id}", headers=auth(admin))
        assert revoked.status_code == 200 and revoked.json()["revokedAt"], revoked.text
        return "acme", key_id, "apikey.revoked"
    return act


def api_tenant_creation(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
    created = Ceremony(client, two(platform)).create_tenant({"tenantId": "newco", "name": "New Co"})
    return "newco", created["adminKey"]["keyId"], "apikey.created"


def api_platform_admin_grant(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
    ops = two(platform)
    done = Ceremony(client, ops).run("POST", "/v1/platform/approvals", {
        "action": "platform-admin.grant", "params": {"operatorId": ops[1].operator_id}, "reason": "on call"})
    return PLATFORM_CHAIN, done["result"]["keyId"], "apikey.created"


def api_tenant_deletion(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
    ops = two(platform)
    make_tenant(platform, "gone")
    for key in platform.keys.list("gone")[1:]:
        platform.keys.revoke("gone", key["keyId"], "setup")  # one key left to revoke: one record expected
    key_id = platform.keys.list("gone")[0]["keyId"]
    done = Ceremony(client, ops).run("POST", "/v1/platform/approvals",
                                     {"action": "tenant.delete", "tenantId": "gone", "reason": "closed"})
    assert done["result"]["keysRevoked"] == 1, done
    return "gone", key_id, "apikey.revoked"


def api_revoke_platform_admin(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
    ops = two(platform)
    key_id = platform.keys.issue(PLATFORM_CHAIN, Role.PLATFORM_ADMIN, None, operator_id=ops[1].operator_id).key_id
    done = Ceremony(client, ops).run("DELETE", f"/v1/platform/api-keys/{key_id}")
    assert done["result"]["revokedAt"], done
    return PLATFORM_CHAIN, key_id, "apikey.revoked"


def cli_issue(role: str) -> Callable[[Platform, TestClient, Path, pytest.MonkeyPatch], tuple[str, str, str]]:
    def act(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
        if role == "tenant-admin":  # with dual control on, a request (test_cli_files_platform_acts)
            monkeypatch.setenv("ACCRUE_DUAL_CONTROL", "off")
        make_tenant(platform, "acme")
        before = {k["keyId"] for k in platform.keys.list("acme")}
        assert main(["issue-key", "--tenant", "acme", "--role", role, "--reason", "till 3"]) == 0
        (key_id,) = {k["keyId"] for k in platform.keys.list("acme")} - before
        return "acme", key_id, "apikey.created"
    return act


def cli_revoke(role: str) -> Callable[[Platform, TestClient, Path, pytest.MonkeyPatch], tuple[str, str, str]]:
    def act(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
        tenant = PLATFORM_CHAIN if role == "platform-admin" else "acme"
        if role in ("platform-admin", "tenant-admin"):  # with dual control on, a request (see below)
            monkeypatch.setenv("ACCRUE_DUAL_CONTROL", "off")
        if tenant == "acme":
            make_tenant(platform, "acme")
        else:
            operators(platform)  # the last live platform-admin key is never revoked
        key_id = platform.keys.issue(tenant, Role(role), None).key_id
        assert main(["revoke-key", "--tenant", tenant, "--key-id", key_id, "--reason", "left"]) == 0
        return tenant, key_id, "apikey.revoked"
    return act


def cli_platform_admin_bootstrap(platform, client, data, monkeypatch):  # type: ignore[no-untyped-def]
    assert main(["bootstrap-operator", "--name", "root"]) == 0
    (key,) = platform.keys.list(PLATFORM_CHAIN)
    return PLATFORM_CHAIN, key["keyId"], "apikey.created"


PATHS = {
    **{f"api issue {r}": api_issue(r) for r in TENANT_ROLES},
    **{f"api revoke {r}": api_revoke(r) for r in TENANT_ROLES},
    "api tenant creation (first admin)": api_tenant_creation,
    "api platform-admin grant (dual control)": api_platform_admin_grant,
    "api revoke platform-admin": api_revoke_platform_admin,
    "api tenant deletion (revokes its keys)": api_tenant_deletion,
    **{f"cli issue {r}": cli_issue(r) for r in TENANT_ROLES},
    **{f"cli revoke {r}": cli_revoke(r) for r in TENANT_ROLES + ("platform-admin",)},
    "cli platform-admin bootstrap": cli_platform_admin_bootstrap,
}


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One data folder for the test's platform and the CLI (which builds its own, like an operator's shell)."""
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ACCRUE_SQLITE_SYNCHRONOUS", "NORMAL")
    monkeypatch.delenv("ACCRUE_DUAL_CONTROL", raising=False)
    monkeypatch.delenv(OPERATOR_KEY_VARIABLE, raising=False)
    return tmp_path / "data"


@pytest.fixture
def shared_platform(data: Path) -> Iterator[Platform]:
    built = build_platform(Settings.from_env())
    yield built
    built.close()


@pytest.fixture
def shared_client(shared_platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(shared_platform), base_url="http://accrue.test",
                    raise_server_exceptions=False) as http:
        yield http


@pytest.mark.parametrize("path", PATHS)
def test_each_path_writes_exactly_one_audit_record_per_key(path, shared_platform, shared_client, data,
                                                           monkeypatch) -> None:
    chain, key_id, action = PATHS[path](shared_platform, shared_client, data, monkeypatch)
    records = [r for r in key_records(shared_platform, chain) if r["target"] == f"apikey:{key_id}"]
    assert [r["action"] for r in records] == [action], records
    key = shared_platform.keys.get(chain, key_id)
    assert bool(key["revokedAt"]) is (action == "apikey.revoked")
    assert records[0]["after"].get("role", key["role"]) == key["role"]
    assert shared_platform.audit.verify(chain)["ok"]
    if path.startswith("cli"):
        assert records[0]["actor"]["keyId"].startswith("cli:") and records[0]["actor"]["role"] == "operator"


def test_revoking_a_revoked_key_records_nothing_and_two_racing_revokes_record_once(platform) -> None:
    make_tenant(platform, "acme")
    key_id = platform.keys.issue("acme", Role.MERCHANT, None).key_id
    run_in_threads(lambda: platform.key_admin.revoke("acme", key_id, Actor("k", "tenant-admin")),
                   [() for _ in range(4)], timeout=10)
    platform.key_admin.revoke("acme", key_id, Actor("k", "tenant-admin"))
    assert [r["action"] for r in key_records(platform, "acme")] == ["apikey.revoked"]


def test_a_tenant_cannot_be_given_a_platform_admin_key_and_no_key_lives_in_a_chain_of_underscore(platform) -> None:
    make_tenant(platform, "acme")
    with pytest.raises(DualControlRequired):
        platform.key_admin.issue("acme", Role.PLATFORM_ADMIN, None)
    with pytest.raises(AssertionError):
        platform.key_admin.issue(PLATFORM_CHAIN, Role.MERCHANT, None)
    assert key_records(platform, "acme") == [] and key_records(platform, PLATFORM_CHAIN) == []


# --- dual control of platform-admin keys on the CLI ---------------------------------------------

def test_cli_platform_admin_needs_a_second_operator_once_the_bootstrap_key_exists(
        shared_platform, shared_client, data, monkeypatch, capsys) -> None:
    platform, client = shared_platform, shared_client
    # No operator yet: the CLI mints nothing and says how a region is bootstrapped.
    assert main(["issue-key", "--role", "platform-admin", "--label", "mallory"]) == 3
    assert "bootstrap-operator" in capsys.readouterr().err
    # The first operator: its platform-admin key at once, recorded as the bootstrap.
    assert main(["bootstrap-operator", "--name", "alice"]) == 0
    alice = capsys.readouterr().out.strip()
    assert platform.keys.verify(alice).role is Role.PLATFORM_ADMIN
    (bootstrap,) = key_records(platform, PLATFORM_CHAIN)
    assert bootstrap["after"]["operatorBootstrap"] is True and bootstrap["reason"].startswith("bootstrap")
    assert main(["bootstrap-operator", "--name", "mallory"]) == 3  # once per region

    # A second key without a requester: refused, nothing minted, nothing filed.
    assert main(["issue-key", "--role", "platform-admin", "--label", "mallory"]) == 3
    assert "two operators" in capsys.readouterr().err
    assert len(platform.keys.list(PLATFORM_CHAIN)) == 1 and platform.approvals.list() == []
    # Asked by a proven operator (alice): a request is filed, still nothing minted.
    monkeypatch.setenv(OPERATOR_KEY_VARIABLE, alice)
    assert main(["issue-key", "--role", "platform-admin", "--label", "laptop", "--reason", "new laptop"]) == 3
    (request,) = platform.approvals.list()
    assert request["status"] == "pending" and request["requestedBy"]["keyId"] == platform.keys.verify(alice).key_id
    assert len(platform.keys.list(PLATFORM_CHAIN)) == 1 and len(key_records(platform, PLATFORM_CHAIN)) == 1
    # Alice and a second operator approve with their security keys; the key then exists, recorded once.
    from tests.operators import _credential
    from tests.webauthn_authenticator import SoftKey
    alice_key = SoftKey()
    alice_id = platform.operators.of_key(platform.keys.verify(alice).key_id)
    platform.operators.register_bootstrap_key(alice_id, _credential(alice_key), platform.keys.verify(alice))
    ana = Operator(alice_id, "alice", alice, alice_key)
    (carol,) = add_operators(platform, 1, names=("carol",))
    ceremony = Ceremony(client, [ana, carol])
    assert ceremony.approve(request["id"], carol).status_code == 200  # (order does not matter between two)
    own = ceremony.approve(request["id"], carol)
    assert own.status_code == 403 and len(platform.keys.list(PLATFORM_CHAIN)) == 2
    done = ceremony.approve(request["id"], ana)
    assert done.status_code == 200, done.text
    laptop = done.json()["result"]["apiKey"]
    assert platform.keys.verify(laptop).role is Role.PLATFORM_ADMIN
    assert platform.operators.of_key(platform.keys.verify(laptop).key_id) == alice_id
    granted = key_records(platform, PLATFORM_CHAIN)[-1]
    assert granted["target"] == f"apikey:{done.json()['result']['keyId']}"
    assert granted["after"]["approval"] == request["id"] and granted["after"]["label"] == "laptop"


def test_cli_files_platform_acts_on_tenant_admin_and_platform_keys(shared_platform, data, monkeypatch,
                                                                   capsys) -> None:
    ana, _ = two(shared_platform)
    make_tenant(shared_platform, "acme")
    monkeypatch.setenv(OPERATOR_KEY_VARIABLE, ana.api_key)
    before = len(shared_platform.keys.list("acme"))
    assert main(["issue-key", "--tenant", "acme", "--role", "tenant-admin"]) == 3
    admin_id = next(k["keyId"] for k in shared_platform.keys.list("acme") if k["role"] == "tenant-admin")
    assert main(["revoke-key", "--tenant", "acme", "--key-id", admin_id]) == 3
    platform_key = shared_platform.keys.list(PLATFORM_CHAIN)[0]["keyId"]
    assert main(["revoke-key", "--tenant", PLATFORM_CHAIN, "--key-id", platform_key]) == 3
    assert sorted(r["action"] for r in shared_platform.approvals.list()) == \
        ["platform-admin.revoke", "tenant-admin.issue", "tenant-key.revoke"]
    assert len(shared_platform.keys.list("acme")) == before
    assert not any(k["revokedAt"] for k in shared_platform.keys.list("acme") + shared_platform.keys.list(PLATFORM_CHAIN))


def test_cli_with_a_wrong_operator_key_is_refused_and_files_nothing(shared_platform, data, monkeypatch,
                                                                    capsys) -> None:
    operators(shared_platform)
    make_tenant(shared_platform, "acme")
    for presented in ("acr_aaaaaaaaaaaa_" + "b" * 43, make_tenant(shared_platform, "beta").admin):
        monkeypatch.setenv(OPERATOR_KEY_VARIABLE, presented)  # unknown; a tenant-admin's
        assert main(["issue-key", "--role", "platform-admin", "--label", "eve"]) == 3
    assert shared_platform.approvals.list() == [] and len(shared_platform.keys.list(PLATFORM_CHAIN)) == 2
    assert len(key_records(shared_platform, PLATFORM_CHAIN)) == 1  # the bootstrap operator's key only


def test_with_dual_control_off_the_cli_issues_platform_admin_and_says_so(shared_platform, data,
                                                                         monkeypatch, capsys) -> None:
    operators(shared_platform)
    monkeypatch.setenv("ACCRUE_DUAL_CONTROL", "off")
    assert main(["issue-key", "--role", "platform-admin", "--label", "solo"]) == 0
    record = key_records(shared_platform, PLATFORM_CHAIN)[-1]
    assert record["after"] == {"role": "platform-admin", "label": "solo", "dualControl": "off"}


def test_dual_control_cannot_be_turned_off_on_the_azure_store() -> None:
    with pytest.raises(ConfigurationError, match="ACCRUE_DUAL_CONTROL"):
        Settings.from_env({"ACCRUE_STORE": "cosmos", "COSMOS_ENDPOINT": "https://a.documents.azure.com:443/",
                           "ACCRUE_DUAL_CONTROL": "off"})
    assert Settings.from_env({}).dual_control is True


def test_the_bootstrap_happens_once_even_when_two_operators_race(platform) -> None:
    won: list[str] = []
    refused: list[str] = []

    def bootstrap(name: str) -> None:
        try:
            won.append(platform.key_admin.issue_platform_admin(Actor(f"cli:{name}", "operator"), label=name).key_id)
        except DualControlRequired:
            refused.append(name)

    run_in_threads(bootstrap, [(f"op{n}",) for n in range(4)], timeout=20)
    assert len(won) == 1 and len(refused) == 3
    assert [r["target"] for r in key_records(platform, PLATFORM_CHAIN)] == [f"apikey:{won[0]}"]
    # The last live platform-admin key cannot be revoked; revoked, a bootstrap key opens no second bootstrap.
    with pytest.raises(LastPlatformAdmin):
        platform.key_admin.revoke(PLATFORM_CHAIN, won[0], None)
    platform.keys.issue(PLATFORM_CHAIN, Role.PLATFORM_ADMIN, None, "second")
    platform.key_admin.revoke(PLATFORM_CHAIN, won[0], None)
    with pytest.raises(DualControlRequired):
        platform.key_admin.issue_platform_admin(None, label="again")


def test_the_last_live_platform_admin_key_cannot_be_revoked_over_the_api(platform, client) -> None:
    ops = two(platform)
    alice_id = platform.keys.verify(ops[0].api_key).key_id
    bob_id = platform.keys.verify(ops[1].api_key).key_id
    ceremony = Ceremony(client, ops)
    assert ceremony.run("DELETE", f"/v1/platform/api-keys/{bob_id}")["status"] == "executed"
    # Bob's key is gone: nobody is left to approve with, and the domain keeps the last key anyway.
    with pytest.raises(LastPlatformAdmin):
        platform.key_admin.revoke(PLATFORM_CHAIN, alice_id, None)
    assert platform.keys.verify(ops[0].api_key).key_id == alice_id
    assert [r["target"] for r in key_records(platform, PLATFORM_CHAIN) if r["action"] == "apikey.revoked"] == \
        [f"apikey:{bob_id}"]
    # A tenant-admin reaches no platform key, on either route.
    admin = make_tenant(platform, "acme").admin
    assert client.delete(f"/v1/platform/api-keys/{alice_id}", headers=auth(admin)).status_code == 403
    assert client.delete(f"/v1/api-keys/{alice_id}", headers=auth(admin)).status_code == 404


def test_a_grant_cannot_be_vouched_for_by_the_caller(platform) -> None:
    """The approval is read from the store: a made-up or pending request id mints nothing."""
    alice, _ = operators(platform)
    pending = platform.approvals.request("platform-admin.grant", platform.keys.verify(alice), tenant_id=None,
                                         reason="r", params={"operatorId": platform.operators.of_key(
                                             platform.keys.verify(alice).key_id)})
    for request_id in ("req-0000000000000000", pending["id"]):
        with pytest.raises(DualControlRequired):
            platform.key_admin.issue_platform_admin(None, label="x", approval=request_id)
    assert len(platform.keys.list(PLATFORM_CHAIN)) == 2 and len(key_records(platform, PLATFORM_CHAIN)) == 1


# --- the class: no other code issues or revokes a key --------------------------------------------

ALLOWED = {Path("shared/governance/keys.py")}
STORE_CALLS = {"issue", "revoke", "revoke_if_live"}


def _calls_to_the_key_store(tree: ast.AST) -> Iterator[int]:
    """Lines calling ``<something>.keys.issue|revoke(...)`` or ``ApiKeys(...).issue``-like (``keys`` or ``_keys``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in STORE_CALLS:
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in ("keys", "_keys", "api_keys"):
                yield node.lineno


def test_nothing_but_the_key_administration_issues_or_revokes() -> None:
    offenders = []
    for folder in ("shared", "functions"):
        for file in sorted((ROOT / folder).rglob("*.py")):
            relative = file.relative_to(ROOT)
            if relative in ALLOWED:
                continue
            for line in _calls_to_the_key_store(ast.parse(file.read_text(), str(file))):
                offenders.append(f"{relative}:{line}")
    assert offenders == [], f"keys issued or revoked without audit or dual control: {offenders}"
    assert list(_calls_to_the_key_store(ast.parse("platform.keys.issue('t', r, None)")))  # the scan sees one


def test_a_revocation_that_died_before_its_record_is_recorded_by_its_retry(client, platform, tenant,
                                                                           clock) -> None:
    """The key is revoked, then the process dies before ``apikey.revoked``; the caller
    retries the DELETE (the key is revoked already): the retry records it, once."""
    from tests.conftest import dying_before_audit

    key_id = client.post("/v1/api-keys", json={"role": "analyst", "label": "x"},
                         headers=auth(tenant.admin)).json()["keyId"]
    with dying_before_audit(platform, "apikey.revoked"):
        platform.key_admin.revoke("acme", key_id, Actor("admin-key", "tenant-admin"), reason="left")
    assert platform.keys.get("acme", key_id)["revokedAt"]
    assert not [r for r in key_records(platform, "acme") if r["action"] == "apikey.revoked"]
    assert client.delete(f"/v1/api-keys/{key_id}", headers=auth(tenant.admin)).status_code == 200
    assert not [r for r in key_records(platform, "acme") if r["action"] == "apikey.revoked"], \
        "within the grace the first attempt may still be recording it"
    clock.advance(LOST_RECORD_GRACE)
    for _ in range(2):
        assert client.delete(f"/v1/api-keys/{key_id}", headers=auth(tenant.admin)).status_code == 200
    revoked = [r for r in key_records(platform, "acme")
               if r["action"] == "apikey.revoked" and r["target"] == f"apikey:{key_id}"]
    assert len(revoked) == 1 and revoked[0]["after"]["recordedOnRepeat"] is True
