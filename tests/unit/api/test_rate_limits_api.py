"""Rate limits over HTTP (issue 13, part 4): per API key and per tenant, configured
in the tenant's settings; 429 problem with Retry-After; the RateLimit-Policy and
RateLimit headers on every response of a limited route; batches count by orders;
health and OpenAPI exempt; N concurrent requests over a limit of L: exactly L pass."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from shared.platform import Platform
from shared.ratelimit.policy import RateLimits
from tests.conftest import TenantKeys, auth, order_body, run_in_threads


def limit(platform: Platform, tenant_id: str, **quotas: int) -> None:
    settings = platform.tenants.get(tenant_id)
    platform.tenants.save(settings.model_copy(update={"rate_limits": RateLimits(**quotas)}))


def test_every_response_of_a_limited_route_carries_the_headers(client: TestClient, tenant: TenantKeys,
                                                               platform: Platform) -> None:
    limit(platform, "acme", perKey=5, perTenant=50, windowSeconds=60)
    ok = client.get("/v1/customers/c1", headers=auth(tenant.merchant))
    assert ok.status_code == 200
    assert ok.headers["RateLimit-Policy"] == '"key";q=5;w=60'
    assert ok.headers["RateLimit"].startswith('"key";r=4;t=')
    missing = client.get("/v1/customers/nobody", headers=auth(tenant.merchant))  # errors are counted too
    assert missing.status_code == 404 and missing.headers["RateLimit"].startswith('"key";r=3;')


def test_over_the_key_limit_is_a_429_problem_with_retry_after(client: TestClient, tenant: TenantKeys,
                                                              platform: Platform) -> None:
    limit(platform, "acme", perKey=2, perTenant=50, windowSeconds=60)
    for _ in range(2):
        assert client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code == 200
    refused = client.get("/v1/customers/c1", headers=auth(tenant.merchant))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"].endswith("/rate-limited") and body["status"] == 429 and "API key" in body["detail"]
    assert int(refused.headers["Retry-After"]) == 60  # the ManualClock sits on a window boundary
    assert refused.headers["RateLimit"] == '"key";r=0;t=60'
    # the tenant's other keys have their own per-key quota
    assert client.get("/v1/customers/c1", headers=auth(tenant.analyst)).status_code == 200
    # and the next window admits again
    platform.clock.advance(timedelta(seconds=60))  # type: ignore[attr-defined]
    assert client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code == 200


def test_the_tenant_limit_spans_its_keys_and_never_other_tenants(client: TestClient, tenant: TenantKeys,
                                                                 other_tenant: TenantKeys,
                                                                 platform: Platform) -> None:
    limit(platform, "acme", perKey=3, perTenant=4, windowSeconds=60)
    limit(platform, "globex", perKey=3, perTenant=4, windowSeconds=60)
    codes = [client.get("/v1/customers/c1", headers=auth(key)).status_code
             for key in (tenant.merchant, tenant.analyst, tenant.admin, tenant.merchant, tenant.analyst)]
    assert codes == [200, 200, 200, 200, 429]
    assert client.get("/v1/customers/c1", headers=auth(other_tenant.merchant)).status_code == 200


def test_a_batch_counts_by_its_orders(client: TestClient, tenant: TenantKeys, platform: Platform) -> None:
    limit(platform, "acme", perKey=5, perTenant=50, windowSeconds=60)
    batch = {"orders": [order_body("c1", f"o{i}") for i in range(3)]}
    first = client.post("/v1/orders/batch", json=batch, headers=auth(tenant.merchant))
    assert first.status_code == 202 and first.headers["RateLimit"].startswith('"key";r=2;')
    again = client.post("/v1/orders/batch", json={"orders": [order_body("c1", f"p{i}") for i in range(3)]},
                        headers=auth(tenant.merchant))
    assert again.status_code == 429
    assert client.get("/v1/orders/p0", headers=auth(tenant.merchant)).status_code == 404  # nothing accepted
    too_big = client.post("/v1/orders/batch", json={"orders": [order_body("c1", f"q{i}") for i in range(6)]},
                          headers=auth(tenant.analyst))
    assert too_big.status_code == 429 and "smaller batches" in too_big.json()["detail"]


def test_limits_are_a_tenant_setting(client: TestClient, tenant: TenantKeys) -> None:
    changed = client.patch("/v1/tenant", json={"rateLimits": {"perKey": 1, "perTenant": 3, "windowSeconds": 10}},
                           headers=auth(tenant.admin))
    assert changed.status_code == 200 and changed.json()["rateLimits"] == {"perKey": 1, "perTenant": 3,
                                                                          "windowSeconds": 10}
    assert client.get("/v1/tenant", headers=auth(tenant.merchant)).headers["RateLimit-Policy"] == '"key";q=1;w=10'
    assert client.get("/v1/tenant", headers=auth(tenant.merchant)).status_code == 429
    bad = client.patch("/v1/tenant", json={"rateLimits": {"perKey": 9, "perTenant": 3}}, headers=auth(tenant.analyst))
    assert bad.status_code in (403, 422)
    bad = client.patch("/v1/tenant", json={"rateLimits": {"perKey": 9, "perTenant": 3}}, headers=auth(tenant.admin))
    assert bad.status_code == 422


@pytest.mark.parametrize("path", ["/health", "/openapi/v1.json", "/docs"])
def test_health_and_openapi_are_exempt(client: TestClient, tenant: TenantKeys, platform: Platform,
                                       path: str) -> None:
    limit(platform, "acme", perKey=1, perTenant=1, windowSeconds=60)
    for _ in range(3):
        answer = client.get(path, headers=auth(tenant.merchant))
        assert answer.status_code == 200 and "RateLimit" not in answer.headers


def test_n_concurrent_requests_over_a_limit_of_l_exactly_l_succeed(client: TestClient, tenant: TenantKeys,
                                                                   platform: Platform) -> None:
    limit(platform, "acme", perKey=7, perTenant=7, windowSeconds=60)
    codes: list[int] = []

    def call(number: int) -> None:
        codes.append(client.post("/v1/orders", json=order_body("c1", f"race{number}"),
                                 headers=auth(tenant.merchant)).status_code)

    run_in_threads(call, [(n,) for n in range(24)], timeout=60)
    assert len(codes) == 24
    assert sum(c in (200, 202) for c in codes) == 7 and codes.count(429) == 17


def test_a_failed_authentication_answers_with_the_failed_auth_headers(client: TestClient, tenant: TenantKeys) -> None:
    """The outside review: 401s carried no RateLimit headers, so failed key checks were unlimited."""
    missing = client.get("/v1/customers/c1")
    assert missing.status_code == 401
    assert missing.headers["RateLimit-Policy"] == '"failed-auth";q=30;w=60'
    assert missing.headers["RateLimit"].startswith('"failed-auth";r=29;t=')
    wrong = client.get("/v1/customers/c1", headers=auth(tenant.merchant[:-4] + "xxxx"))
    malformed = client.get("/v1/customers/c1", headers=auth("not-a-key"))
    assert wrong.status_code == malformed.status_code == 401
    assert malformed.headers["RateLimit"].startswith('"failed-auth";r=27;')


def test_an_address_over_its_failures_gets_429_and_a_valid_key_still_passes(
        client: TestClient, tenant: TenantKeys) -> None:
    bad = auth(tenant.merchant[:-4] + "xxxx")
    answers = [client.get("/v1/customers/c1", headers=bad).status_code for _ in range(31)]
    assert answers == [401] * 30 + [429]
    refused = client.get("/v1/customers/c1")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["type"].endswith("/rate-limited")
    ok = client.get("/v1/customers/c1", headers=auth(tenant.merchant))
    assert ok.status_code == 200 and ok.headers["RateLimit-Policy"].startswith('"key";')


def test_failed_authentications_never_spend_a_tenants_quota(client: TestClient, tenant: TenantKeys,
                                                            platform: Platform) -> None:
    limit(platform, "acme", perKey=3, perTenant=3, windowSeconds=60)
    for _ in range(10):
        client.get("/v1/customers/c1", headers=auth(tenant.merchant[:-4] + "xxxx"))
    assert [client.get("/v1/customers/c1", headers=auth(tenant.merchant)).status_code for _ in range(3)] == [200] * 3


def test_patch_null_puts_an_optional_setting_back_to_the_default(client: TestClient, tenant: TenantKeys,
                                                                 platform: Platform) -> None:
    """The outside review: once set, rateLimits could not be unset (null was read as 'not given')."""
    set_ = client.patch("/v1/tenant", json={"rateLimits": {"perKey": 5, "perTenant": 50}}, headers=auth(tenant.admin))
    assert set_.status_code == 200 and set_.json()["rateLimits"]["perKey"] == 5
    cleared = client.patch("/v1/tenant", json={"rateLimits": None}, headers=auth(tenant.admin))
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["rateLimits"] is None and platform.tenants.get("acme").rate_limits is None
    ok = client.get("/v1/customers/c1", headers=auth(tenant.merchant))
    assert ok.headers["RateLimit-Policy"] == '"key";q=600000;w=60'
    changes = [item["after"] for item in client.get("/v1/audit", headers=auth(tenant.admin)).json()["items"]
               if item["action"] == "tenant.settings.changed"]
    assert {"rateLimits": None} in changes


@pytest.mark.parametrize("field", ["name", "timeZone", "pointsPerUnit", "evaluator"])
def test_patch_null_on_a_required_setting_is_a_422_and_changes_nothing(client: TestClient, tenant: TenantKeys,
                                                                      platform: Platform, field: str) -> None:
    before = platform.tenants.get("acme")
    refused = client.patch("/v1/tenant", json={field: None, "rateLimits": {"perKey": 5, "perTenant": 50}},
                           headers=auth(tenant.admin))
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == [field]
    assert platform.tenants.get("acme") == before
