"""Authentication, roles, API keys and tenant isolation over HTTP."""

from __future__ import annotations

import pytest

import shared.app.auth as auth_module
from shared.store.layout import API_KEYS
from tests.conftest import auth, drain, order_body


def test_health_and_openapi_need_no_key(client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    document = client.get("/openapi/v1.json").json()
    assert document["openapi"].startswith("3.1")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"x-api-key": "acr_aaaaaaaaaaaa_" + "x" * 43},
                                     {"Authorization": "Basic Zm9vOmJhcg=="}])
def test_every_other_route_needs_a_valid_key(client, tenant, headers) -> None:
    for method, path in [("GET", "/v1/customers/c1"), ("POST", "/v1/orders"), ("GET", "/v1/tenant"),
                         ("GET", "/v1/api-keys")]:
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_x_api_key_header_works_too(client, tenant) -> None:
    assert client.get("/v1/customers/c1", headers={"x-api-key": tenant.merchant}).status_code == 200


def test_keys_are_stored_as_owasp_argon2id_hashes_only(platform, tenant) -> None:
    key_id = tenant.merchant.split("_")[1]
    secret = tenant.merchant.split("_", 2)[2]
    doc = platform.store.read(API_KEYS, key_id, key_id)
    assert doc["hash"].startswith("$argon2id$") and "m=19456,t=2,p=1" in doc["hash"]
    assert secret not in str(doc)
    assert len(secret) >= 43  # 32 random bytes, base64url


@pytest.fixture
def argon2_calls(monkeypatch) -> list[int]:
    """Counts the Argon2 verifications the key check makes."""
    calls: list[int] = []
    real = auth_module.HASHER

    class CountingHasher:
        def verify(self, hashed: str, secret: str) -> bool:
            calls.append(1)
            return real.verify(hashed, secret)

    monkeypatch.setattr(auth_module, "HASHER", CountingHasher())
    return calls


def test_a_verified_key_is_cached_instead_of_rehashed(client, tenant, argon2_calls) -> None:
    calls = argon2_calls
    for _ in range(5):
        assert client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code == 200
    assert len(calls) <= 1


def test_a_wrong_secret_for_a_known_key_id_is_not_rehashed_on_every_retry(client, tenant, argon2_calls) -> None:
    calls = argon2_calls
    key_id = tenant.merchant.split("_")[1]
    wrong = f"acr_{key_id}_{'A' * 43}"
    for _ in range(5):
        assert client.get("/v1/customers/c1", headers=auth(wrong)).status_code == 401
    assert len(calls) == 1
    assert client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code == 200  # the real key still works


def test_a_revoked_key_stops_working_at_once(client, tenant) -> None:
    created = client.post("/v1/api-keys", json={"role": "merchant", "label": "till 3"}, headers=auth(tenant.admin))
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    new_key, key_id = created.json()["apiKey"], created.json()["keyId"]
    assert client.get("/v1/customers/c1", headers=auth(new_key)).status_code == 200
    listing = client.get("/v1/api-keys", headers=auth(tenant.admin)).json()["items"]
    assert key_id in [k["keyId"] for k in listing] and all("hash" not in k and "apiKey" not in k for k in listing)
    assert client.delete(f"/v1/api-keys/{key_id}", headers=auth(tenant.admin)).json()["revokedAt"]
    assert client.get("/v1/customers/c1", headers=auth(new_key)).status_code == 401


@pytest.mark.parametrize("role_key, method, path, body", [
    ("merchant", "POST", "/v1/api-keys", {"role": "merchant"}),
    ("merchant", "POST", "/v1/customers/c1/adjustments",
     {"points": 5, "reasonCode": "goodwill", "reason": "x", "idempotencyKey": "k"}),
    ("merchant", "PATCH", "/v1/tenant", {"pointsPerUnit": "100"}),
    ("analyst", "POST", "/v1/orders", order_body()),
    ("analyst", "POST", "/v1/customers", {"customerId": "c9", "joinDate": "2026-01-01"}),
    ("admin", "POST", "/v1/tenants", {"tenantId": "evil", "name": "x"}),
])
def test_roles_are_enforced_and_a_refusal_changes_nothing(client, platform, tenant, role_key, method, path,
                                                          body) -> None:
    before = platform.ledger.head("acme", "c1")
    response = client.request(method, path, json=body, headers=auth(getattr(tenant, role_key)))
    assert response.status_code == 403, response.text
    assert platform.ledger.head("acme", "c1") == before
    assert platform.bus.depth() == 0
    assert platform.tenants.get("acme").points_per_unit == 10
    assert not platform.tenants.exists("evil")


def test_a_tenant_cannot_see_or_touch_another_tenants_data(client, platform, tenant, other_tenant) -> None:
    client.post("/v1/orders", json=order_body(), headers=auth(tenant.merchant))
    drain(platform)
    spy = auth(other_tenant.admin)
    # globex has its own c1: reads resolve to globex's, never acme's
    assert client.get("/v1/customers/c1/balance", headers=spy).json()["available"] == 0
    assert client.get("/v1/customers/c2", headers=spy).status_code == 404
    assert client.get("/v1/orders/o1", headers=spy).status_code == 404
    assert client.post("/v1/orders/o1/refunds", json={"refundId": "r", "amount": "1", "currency": "EUR"},
                       headers=spy).status_code == 404
    acme_keys = client.get("/v1/api-keys", headers=auth(tenant.admin)).json()["items"]
    assert client.delete(f"/v1/api-keys/{acme_keys[0]['keyId']}", headers=spy).status_code == 404
    assert client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code == 200
    globex_history = client.get("/v1/customers/c1/ledger", headers=spy).json()["items"]
    assert globex_history == []
    assert platform.ledger.head("acme", "c1").balance == 100


def test_a_platform_admin_creates_a_tenant_with_its_first_admin_key(client, platform, ceremony) -> None:
    root = ceremony.operators[0].api_key
    created = ceremony.tenant({"tenantId": "initech", "name": "Initech", "currency": "USD"})
    assert created.status_code == 201, created.text
    admin = created.json()["adminKey"]["apiKey"]
    assert client.get("/v1/tenant", headers=auth(admin)).json()["currency"] == "USD"
    assert client.post("/v1/tenants", json={"tenantId": "initech", "name": "again"},
                       headers=auth(root)).status_code == 409
    # a platform-admin key reads no tenant's customer data
    assert client.get("/v1/customers/c1", headers=auth(root)).status_code == 403
