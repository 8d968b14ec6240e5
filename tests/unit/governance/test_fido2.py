"""FIDO2 security keys and two operators for every platform-admin act, over HTTP with
software authenticators (tests/webauthn_authenticator.py): the ceremony's every check,
the approval rules, the bootstrap, a newcomer's registration, lost-key recovery, expiry
and concurrent approvals."""

from __future__ import annotations

import base64
import threading
from datetime import timedelta

import pytest

from shared.app.auth import Principal, Role, parse_key
from shared.audit.log import PLATFORM_CHAIN
from shared.errors import AccrueError
from shared.governance.bootstrap import bootstrap_operator
from shared.store.layout import AUDIT
from shared.store.port import Query
from tests.operators import Ceremony, Operator, add_operators
from tests.webauthn_authenticator import SoftKey

TENANT = {"tenantId": "zeta", "name": "Zeta"}


def _file(client, operator: Operator, body: dict | None = None) -> str:
    filed = client.post("/v1/tenants", json=body or TENANT, headers=operator.headers)
    assert filed.status_code == 202, filed.text
    assert filed.json()["status"] == "pending" and filed.json()["action"] == "tenant.create"
    return filed.json()["id"]


def _code(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


def _audit(platform, chain: str = PLATFORM_CHAIN) -> list[dict]:
    return platform.store.query(AUDIT, Query(pk=chain, order_by="seq", limit=1000))


def test_a_tenant_is_created_only_after_the_second_operators_approval(client, platform, operators, ceremony) -> None:
    ana, ben = operators
    request_id = _file(client, ana)
    assert not platform.tenants.exists("zeta")
    first = ceremony.approve(request_id, ana)
    assert first.status_code == 200 and first.json()["status"] == "pending", first.text
    assert not platform.tenants.exists("zeta")
    done = ceremony.approve(request_id, ben)
    assert done.status_code == 200 and done.json()["status"] == "executed", done.text
    assert platform.tenants.exists("zeta")
    assert done.json()["result"]["adminKey"]["apiKey"].startswith("acr_")
    assert {a["operatorId"] for a in done.json()["approvals"]} == {ana.operator_id, ben.operator_id}
    # Audited with operator and credential: each approval and the executed act.
    records = [r for r in _audit(platform) if r["target"] == f"request:{request_id}:tenant.create"]
    approvals = [r for r in records if r["action"] == "approval.approved"]
    assert [(r["after"]["operatorId"], r["after"]["credentialId"]) for r in approvals] == \
        [(ana.operator_id, ana.key.id), (ben.operator_id, ben.key.id)]
    executed = [r for r in records if r["action"] == "tenant.create.executed"]
    assert len(executed) == 1 and executed[0]["after"]["credentials"] == [ana.key.id, ben.key.id]
    assert "adminKey" not in executed[0]["after"], "no secret in the audit log"
    assert any(r["action"] == "tenant.create.executed" for r in _audit(platform, "zeta"))


@pytest.mark.parametrize("signing, why", [
    ({"forge": True}, "Invalid signature"),
    ({"origin": "http://evil.example"}, "origin"),
    ({"origin": "https://localhost.evil.example"}, "origin"),
    ({"rp_id": "evil.example"}, "RP ID"),
    ({"uv": False}, "verif"),
])
def test_a_bad_assertion_is_refused_and_changes_nothing(client, platform, operators, ceremony, signing, why) -> None:
    ana, ben = operators
    request_id = _file(client, ana)
    assert ceremony.approve(request_id, ana).status_code == 200
    before = platform.approvals.get(request_id)
    refused = ceremony.approve(request_id, ben, **signing)
    assert refused.status_code == 403, refused.text
    assert _code(refused) == "webauthn-failed" and why in refused.json()["detail"]
    after = platform.approvals.get(request_id)
    assert after["status"] == "pending" and after["_etag"] == before["_etag"]
    assert not platform.tenants.exists("zeta")


def test_an_assertion_for_one_request_cannot_approve_another(client, platform, operators, ceremony) -> None:
    ana, ben = operators
    harmless = _file(client, ana, {"tenantId": "small", "name": "Small"})
    wanted = _file(client, ana)
    assert ceremony.approve(wanted, ana).status_code == 200
    options = client.get(f"/v1/platform/approvals/{harmless}/assertion-options", headers=ben.headers).json()
    signed_for_harmless = ben.key.get(options)
    replayed = client.post(f"/v1/platform/approvals/{wanted}/approve", json={"assertion": signed_for_harmless},
                           headers=ben.headers)
    assert replayed.status_code == 403 and "challenge" in replayed.json()["detail"], replayed.text
    assert not platform.tenants.exists("zeta")


def test_a_replayed_assertion_and_a_rewound_counter_are_refused(client, platform, operators, ceremony) -> None:
    ana, ben = operators
    first, second = _file(client, ana), _file(client, ana, {"tenantId": "other", "name": "Other"})
    options = client.get(f"/v1/platform/approvals/{first}/assertion-options", headers=ana.headers).json()
    assertion = ana.key.get(options)
    assert client.post(f"/v1/platform/approvals/{first}/approve", json={"assertion": assertion},
                       headers=ana.headers).status_code == 200
    again = client.post(f"/v1/platform/approvals/{first}/approve", json={"assertion": assertion}, headers=ana.headers)
    assert again.status_code == 403 and _code(again) == "self-approval"
    # A clone of the key (its counter behind the stored one) cannot approve anything.
    rewound = ceremony.approve(second, ana, counter=1)
    assert rewound.status_code == 403 and "counter" in rewound.json()["detail"], rewound.text


def test_the_same_operator_twice_never_makes_two_approvals(client, platform, operators, ceremony) -> None:
    ana, ben = operators
    request_id = _file(client, ana)
    assert ceremony.approve(request_id, ana).status_code == 200
    # Ana's second key, and a second platform-admin key of hers: still one operator.
    twice = ceremony.approve(request_id, ana)
    assert twice.status_code == 403 and _code(twice) == "self-approval"
    issued = platform.keys.issue(PLATFORM_CHAIN, Role.PLATFORM_ADMIN, None, operator_id=ana.operator_id)
    other_key = Operator(ana.operator_id, "ana", issued.secret_key, ana.key)
    assert ceremony.approve(request_id, other_key).status_code == 403
    # Ben's API key with Ana's security key: the key is not his.
    options = client.get(f"/v1/platform/approvals/{request_id}/assertion-options", headers=ben.headers).json()
    stolen = client.post(f"/v1/platform/approvals/{request_id}/approve",
                         json={"assertion": ana.key.get(dict(options, allowCredentials=[]))}, headers=ben.headers)
    assert stolen.status_code == 403, stolen.text
    assert platform.approvals.get(request_id)["status"] == "pending"


def test_the_requester_approves_too(client, platform, ceremony) -> None:
    ana, ben = ceremony.operators
    cy = add_operators(platform, 1, names=("cy",))[0]
    request_id = _file(client, ana)
    assert ceremony.approve(request_id, ben).status_code == 200
    third = ceremony.approve(request_id, cy)
    assert third.status_code == 409 and _code(third) == "awaiting-requester", third.text
    assert ceremony.approve(request_id, ana).json()["status"] == "executed"


def test_an_expired_request_is_refused_and_audited(client, platform, clock, operators, ceremony) -> None:
    ana, ben = operators
    request_id = _file(client, ana)
    assert ceremony.approve(request_id, ana).status_code == 200
    clock.advance(timedelta(hours=1, seconds=1))
    late = ceremony.approve(request_id, ben)
    assert late.status_code == 409 and _code(late) == "approval-expired", late.text
    assert platform.approvals.get(request_id)["status"] == "expired"
    assert [r["action"] for r in _audit(platform) if r["target"].startswith(f"request:{request_id}")][-1] == \
        "approval.expired"
    assert not platform.tenants.exists("zeta")


def test_a_rejected_request_never_runs(client, platform, operators, ceremony) -> None:
    ana, ben = operators
    request_id = _file(client, ana)
    rejected = ceremony.approve(request_id, ben, verb="reject")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert rejected.json()["rejectedBy"]["credentialId"] == ben.key.id
    assert ceremony.approve(request_id, ana).status_code == 409
    assert not platform.tenants.exists("zeta")


def test_twenty_concurrent_second_approvals_run_the_act_once(client, platform) -> None:
    ops = add_operators(platform, 21)
    ceremony = Ceremony(client, ops)
    request_id = _file(client, ops[0])
    assert ceremony.approve(request_id, ops[0]).status_code == 200
    signed = {}
    for op in ops[1:]:
        options = platform.approvals.assertion_options(request_id, _principal(op))
        signed[op.operator_id] = op.key.get(options)
    outcomes: list[object] = []
    start = threading.Barrier(20)

    def approve(op: Operator) -> None:
        start.wait()
        try:
            outcomes.append(platform.approvals.approve(request_id, _principal(op), signed[op.operator_id])["status"])
        except AccrueError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=approve, args=(op,)) for op in ops[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("executed") == 1, outcomes
    assert set(outcomes) <= {"executed", "request-not-pending", "awaiting-requester"}, outcomes
    assert platform.approvals.get(request_id)["status"] == "executed"
    created = [r for r in _audit(platform, "zeta") if r["action"] == "tenant.create.executed"]
    assert len(created) == 1


def _principal(op: Operator) -> Principal:
    return Principal(parse_key(op.api_key)[0], PLATFORM_CHAIN, Role.PLATFORM_ADMIN)


# --- registration: bootstrap, newcomers, lost keys ---------------------------------------


def _register(client, operator_headers: dict, key: SoftKey, body: dict, **signing) -> dict:
    options = client.post("/v1/platform/operators/registration-options", json=body, headers=operator_headers)
    assert options.status_code == 200, options.text
    credential = key.create(options.json()["publicKey"], **signing)
    return client.post("/v1/platform/operators/registrations",
                       json={"challengeId": options.json()["challengeId"], "credential": credential},
                       headers=operator_headers)


def test_the_bootstrap_operator_registers_its_first_key_alone_once(client, platform) -> None:
    first = bootstrap_operator(platform, "ana", None)
    headers = {"Authorization": f"Bearer {first.key.secret_key}"}
    assert client.get("/v1/platform/operators/me", headers=headers).json()["awaitingBootstrapKey"] is True
    key = SoftKey()
    registered = _register(client, headers, key, {"operatorId": first.operator_id})
    assert registered.status_code == 200 and registered.json()["operator"]["credentials"][0]["credentialId"] == key.id
    boot = [r for r in _audit(platform) if r["action"] == "operator.bootstrapped"]
    assert len(boot) == 1 and boot[0]["after"]["singleOperator"] is True and boot[0]["after"]["credentialId"] == key.id
    # A second key of the bootstrap operator is an approval request, never registered alone.
    again = _register(client, headers, SoftKey(), {"operatorId": first.operator_id})
    assert again.status_code == 200 and again.json()["request"]["action"] == "credential.add"
    # And there is one bootstrap per region.
    with pytest.raises(AccrueError, match="bootstrapped already"):
        bootstrap_operator(platform, "mallory", None)


def test_a_bootstrap_cut_off_before_its_key_is_finished_by_running_it_again(platform, monkeypatch) -> None:
    """The operator is written, then the process dies before its platform-admin key: running
    the bootstrap again issues the key to that same operator (not a second operator), and
    once it holds a key the bootstrap is refused as before."""
    from tests.conftest import Crashed, crashing

    with monkeypatch.context() as patched:
        patched.setattr(platform.key_admin, "issue_platform_admin", crashing("died before the key"))
        with pytest.raises(Crashed):
            bootstrap_operator(platform, "ana", None)
    operator_id = platform.operators.bootstrap_operator_id()
    assert operator_id is not None and not platform.key_admin.operator_holds_key(operator_id)
    finished = bootstrap_operator(platform, "someone else", None)
    assert (finished.operator_id, finished.name) == (operator_id, "ana")
    assert platform.key_admin.operator_holds_key(operator_id)
    with pytest.raises(AccrueError, match="bootstrapped already"):
        bootstrap_operator(platform, "mallory", None)


def test_a_registration_is_refused_for_user_verification_origin_or_a_used_challenge(client, platform, operators) -> None:
    ana, _ = operators
    assert _register(client, ana.headers, SoftKey(), {"name": "eve"}, uv=False).status_code == 403
    assert _register(client, ana.headers, SoftKey(), {"name": "eve"}, origin="http://evil.example").status_code == 403
    options = client.post("/v1/platform/operators/registration-options", json={"name": "eve"},
                          headers=ana.headers).json()
    body = {"challengeId": options["challengeId"], "credential": SoftKey().create(options["publicKey"])}
    assert client.post("/v1/platform/operators/registrations", json=body, headers=ana.headers).status_code == 200
    reused = client.post("/v1/platform/operators/registrations", json=body, headers=ana.headers)
    assert reused.status_code == 403 and _code(reused) == "webauthn-failed"


def test_one_security_key_belongs_to_one_operator(client, platform, operators) -> None:
    ana, ben = operators
    taken = _register(client, ana.headers, ben.key, {"operatorId": ana.operator_id})
    assert taken.status_code == 409 and _code(taken) == "credential-in-use", taken.text


def test_a_newcomer_with_the_only_other_operator_then_two_operators(client, platform) -> None:
    ana = add_operators(platform, 1)[0]
    ceremony = Ceremony(client, [ana, ana])
    ben_key = SoftKey()
    filed = _register(client, ana.headers, ben_key, {"name": "ben"}).json()["request"]
    assert filed["action"] == "operator.register" and filed["params"]["credential"]["credentialId"] == ben_key.id
    assert ceremony.approve(filed["id"], ana).json()["status"] == "pending"
    # The newcomer's own key is the second approval while Ana is the only operator with a key.
    options = client.get(f"/v1/platform/approvals/{filed['id']}/assertion-options", headers=ana.headers).json()
    done = client.post(f"/v1/platform/approvals/{filed['id']}/approve", json={"assertion": ben_key.get(options)},
                       headers=ana.headers)
    assert done.status_code == 200 and done.json()["status"] == "executed", done.text
    ben = Operator(done.json()["result"]["operatorId"], "ben", done.json()["result"]["apiKey"], ben_key)
    assert client.get("/v1/platform/operators/me", headers=ben.headers).json()["name"] == "ben"
    # From now on a newcomer's own key never counts: two operators approve.
    cy_key = SoftKey()
    filed = _register(client, ana.headers, cy_key, {"name": "cy"}).json()["request"]
    assert Ceremony(client, [ana, ben]).approve(filed["id"], ana).status_code == 200
    options = client.get(f"/v1/platform/approvals/{filed['id']}/assertion-options", headers=ana.headers).json()
    refused = client.post(f"/v1/platform/approvals/{filed['id']}/approve", json={"assertion": cy_key.get(options)},
                          headers=ana.headers)
    assert refused.status_code == 403, refused.text
    assert Ceremony(client, [ana, ben]).approve(filed["id"], ben).json()["status"] == "executed"


def test_a_lost_key_is_replaced_by_two_other_operators(client, platform) -> None:
    ana, ben, cy = add_operators(platform, 3)
    ceremony = Ceremony(client, [ana, ben, cy])
    new_key = SoftKey()
    filed = _register(client, cy.headers, new_key, {"operatorId": cy.operator_id}).json()["request"]
    assert filed["action"] == "credential.add"
    # Cy cannot approve her own new key (with the old one or any other).
    assert ceremony.approve(filed["id"], cy).status_code == 403
    assert ceremony.approve(filed["id"], ana).json()["status"] == "pending"
    assert ceremony.approve(filed["id"], ben).json()["status"] == "executed"
    replaced = Operator(cy.operator_id, "cy", cy.api_key, new_key)
    # The old key is removed by another dual-controlled act, approved with the new key.
    done = ceremony.run("POST", "/v1/platform/approvals", {
        "action": "credential.remove", "reason": "lost key",
        "params": {"operatorId": cy.operator_id, "credentialId": cy.key.id}}, requester=0, second=1)
    assert done["status"] == "executed"
    assert [c["credentialId"] for c in platform.operators.get(cy.operator_id)["credentials"]] == [new_key.id]
    request_id = _file(client, replaced)
    assert Ceremony(client, [replaced, ana]).approve(request_id, replaced).status_code == 200
    assert ceremony.approve(request_id, cy).status_code == 403  # the removed key approves nothing


@pytest.mark.parametrize("method, path, body, action", [
    ("POST", "/v1/platform/approvals", {"action": "tenant.delete", "tenantId": "acme", "reason": "ended"},
     "tenant.delete"),
    ("POST", "/v1/platform/approvals", {"action": "tenant.kek.rotate", "tenantId": "acme", "reason": "yearly"},
     "tenant.kek.rotate"),
    ("POST", "/v1/platform/approvals", {"action": "tenant-admin.issue", "tenantId": "acme", "reason": "new admin",
                                        "params": {"label": "ops"}}, "tenant-admin.issue"),
    ("POST", "/v1/platform/approvals", {"action": "dual-control.policy", "reason": "shorter",
                                        "params": {"ttlMinutes": 30}}, "dual-control.policy"),
])
def test_every_act_runs_only_through_the_ceremony(client, platform, tenant, ceremony, method, path, body,
                                                  action) -> None:
    audit_before = len(_audit(platform, "acme"))
    filed = client.request(method, path, json=body, headers=ceremony.operators[0].headers)
    assert filed.status_code == 202 and filed.json()["action"] == action, filed.text
    assert not any(r["action"].endswith(".executed") for r in _audit(platform, "acme")[audit_before:])
    request_id = filed.json()["id"]
    assert ceremony.approve(request_id, ceremony.operators[0]).json()["status"] == "pending"
    done = ceremony.approve(request_id, ceremony.operators[1])
    assert done.json()["status"] == "executed", done.text
    if action == "dual-control.policy":
        assert platform.approvals.policy() == {"ttlMinutes": 30}


def test_platform_admin_grant_and_revoke(client, platform, ceremony) -> None:
    ana, ben = ceremony.operators
    granted = ceremony.run("POST", "/v1/platform/approvals", {
        "action": "platform-admin.grant", "reason": "laptop key", "params": {"operatorId": ben.operator_id}})
    key_id = granted["result"]["keyId"]
    assert granted["result"]["operatorId"] == ben.operator_id
    assert client.get("/v1/platform/operators/me", headers={"Authorization": f"Bearer {granted['result']['apiKey']}"}
                      ).json()["operatorId"] == ben.operator_id
    revoked = ceremony.run("DELETE", f"/v1/platform/api-keys/{key_id}")
    assert revoked["result"]["revokedAt"]
    unknown = client.delete("/v1/platform/api-keys/aaaaaaaaaaaa", headers=ana.headers)
    assert unknown.status_code == 404


def test_a_platform_admin_key_without_an_operator_can_read_but_not_request(client, platform, operators) -> None:
    legacy = platform.keys.issue(PLATFORM_CHAIN, Role.PLATFORM_ADMIN, None).secret_key
    headers = {"Authorization": f"Bearer {legacy}"}
    assert client.get("/v1/platform/approvals", headers=headers).status_code == 200
    refused = client.post("/v1/tenants", json=TENANT, headers=headers)
    assert refused.status_code == 403 and _code(refused) == "operator-required"


def test_twenty_requests_for_one_tenant_approved_at_once_make_one_tenant_and_one_admin_key(client, platform,
                                                                                            operators) -> None:
    from shared.store.layout import API_KEYS
    from shared.store.port import Filter

    ana, ben = operators
    ids = [_file(client, ana) for _ in range(20)]
    ceremony = Ceremony(client, operators)
    for request_id in ids:
        assert ceremony.approve(request_id, ana).status_code == 200
    # Ben signs each (his key's counter rises), then all twenty approvals land at once.
    outcomes: list[object] = []
    start = threading.Barrier(20)
    lock = threading.Lock()

    def approve(request_id: str) -> None:
        with lock:
            assertion = ben.key.get(platform.approvals.assertion_options(request_id, _principal(ben)))
        start.wait()
        try:
            outcomes.append(platform.approvals.approve(request_id, _principal(ben), assertion)["result"])
        except AccrueError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=approve, args=(request_id,)) for request_id in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 20
    keys = platform.store.query(API_KEYS, Query(pk=None, filters=(Filter("tenantId", "=", "zeta"),), limit=50))
    assert len(keys) == 1, "one first admin key, whatever the number of approved requests"
    answers = [o for o in outcomes if isinstance(o, dict)]
    assert answers and all(a["adminKey"]["keyId"] == keys[0]["id"] for a in answers), outcomes
    # The others lost a race on the operator's counter (a rewound counter is refused) or on provisioning.
    assert all(o in ("webauthn-failed", "tenant-provisioning-conflict") or isinstance(o, dict) for o in outcomes), \
        outcomes
    assert [r["action"] for r in _audit(platform, "zeta")].count("tenant.created") == 1


def test_a_crash_at_any_write_keeps_security_key_claims_and_operators_agreeing(platform, clock, tmp_path) -> None:
    """Bootstrap, a newcomer with a key, a key added and a key removed, the process dying at
    each of their writes in turn, then the same calls again: at every point a key is claimed
    exactly when an operator holds it, and the bootstrap marker names an operator that exists
    (claims and operators were separate writes: a crash left a claim no operator held, which
    refused that key for good, or a marker naming nobody, which refused any bootstrap)."""
    from shared.governance.operators import BOOTSTRAP_ID, PK, AlreadyBootstrapped, Operators
    from shared.store.layout import CONTAINERS, SYSTEM
    from shared.store.sqlite import SqliteDocumentStore
    from tests.conftest import Died, StoreThatDies

    def key(n: int) -> dict:
        credential_id = base64.urlsafe_b64encode(f"security-key-{n}".encode()).rstrip(b"=").decode()
        return {"credentialId": credential_id, "data": "AA", "aaguid": "00", "signCount": 0}

    def steps(operators: Operators) -> None:
        try:
            operators.bootstrap("ana", None)
        except AlreadyBootstrapped:
            pass
        operators.create_with_key("op-newcomer", "ben", key(1))
        operators.add_credential("op-newcomer", key(2))
        if any(c["credentialId"] == key(1)["credentialId"] for c in operators.get("op-newcomer")["credentials"]):
            operators.remove_credential("op-newcomer", key(1)["credentialId"])

    def agree(store: SqliteDocumentStore) -> None:
        docs = store.query(SYSTEM, Query(pk=PK, limit=1000))
        held = {(c["credentialId"], d["id"]) for d in docs if d["docType"] == "operator" for c in d["credentials"]}
        claimed = {(d["credentialId"], d["operatorId"]) for d in docs if d["docType"] == "credentialClaim"}
        assert held == claimed
        marker = next((d for d in docs if d["id"] == BOOTSTRAP_ID), None)
        assert marker is None or any(d["id"] == marker["operatorId"] for d in docs)

    finished = False
    for at in range(20):
        store = SqliteDocumentStore(tmp_path / f"operators-{at}.db", CONTAINERS)
        try:
            try:
                steps(Operators(StoreThatDies(store, at), clock, platform.audit, platform.operators.rp))
                finished = True
            except Died:
                pass
            agree(store)
            steps(Operators(store, clock, platform.audit, platform.operators.rp))  # the retry
            agree(store)
            assert [c["credentialId"] for c in Operators(store, clock, platform.audit, platform.operators.rp)
                    .get("op-newcomer")["credentials"]] == [key(2)["credentialId"]]
        finally:
            store.close()
        if finished:
            break
    assert finished and at >= 4
