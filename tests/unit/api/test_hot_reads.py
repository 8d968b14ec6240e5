"""The hot reads (shared/api/hot_reads.py) answer exactly as the FastAPI routes do.

Each request of a table (good and bad credentials, roles, tenants, revoked keys, strict
parameters, cursors, rate limits) is sent twice: once with the hot routes on, once with
them off (the FastAPI route answers), the clock moved to a fresh rate-limit window in
between so both start from the same counts. Status, headers and body must be equal, and
the hot route must have served exactly the requests it claims (plain ones), no others."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.api import hot_reads
from shared.app.auth import Role
from shared.platform import Platform
from shared.ratelimit.policy import RateLimits
from tests.conftest import TenantKeys, auth, drain, order_body

WINDOW = timedelta(hours=1)  # a multiple of every window in play: each pass starts one afresh


@pytest.fixture
def hot(client: TestClient, monkeypatch) -> Iterator[dict[str, Any]]:
    """The app's hot routes, and a count of the requests they authenticated."""
    routes = [r for r in client.app.router.routes if isinstance(r, hot_reads.HotRead)]
    assert len(routes) == 2
    served = {"count": 0, "routes": routes}
    real = hot_reads.principal_of

    async def counting(request):
        served["count"] += 1
        return await real(request)

    monkeypatch.setattr(hot_reads, "principal_of", counting)
    yield served
    for route in routes:
        route.enabled = True


@pytest.fixture
def history(client: TestClient, platform: Platform, tenant: TenantKeys) -> None:
    """Five credited orders for c1, so pages have entries and a next link."""
    body = {"orders": [order_body("c1", f"o{i}") for i in range(5)]}
    assert client.post("/v1/orders/batch", json=body, headers=auth(tenant.merchant)).status_code == 202
    drain(platform)


def answer(response: Any) -> tuple[int, dict[str, str], bytes]:
    return response.status_code, dict(response.headers), response.content


def both(client: TestClient, platform: Platform, hot: dict[str, Any], requests: list[tuple[str, dict]],
         plain: bool) -> list[tuple[int, dict[str, str], bytes]]:
    """``requests`` (path, headers) in order with the hot routes on, then off; the answers of
    both passes must be equal; ``plain``: the hot routes took every one of the first pass."""
    passes = []
    for enabled in (True, False):
        platform.clock.advance(WINDOW)  # type: ignore[attr-defined]
        for route in hot["routes"]:
            route.enabled = enabled
        before = hot["count"]
        passes.append([answer(client.get(path, headers=headers)) for path, headers in requests])
        assert hot["count"] - before == (len(requests) if plain and enabled else 0), (requests, enabled)
    assert passes[0] == passes[1]
    return passes[0]


def credentials(platform: Platform, tenant: TenantKeys, client: TestClient) -> dict[str, dict[str, str]]:
    key_id = tenant.merchant.split("_")[1]
    revoked = client.post("/v1/api-keys", json={"role": "analyst", "label": "old till"},
                          headers=auth(tenant.admin)).json()
    assert client.delete(f"/v1/api-keys/{revoked['keyId']}", headers=auth(tenant.admin)).status_code == 200
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic": {"Authorization": "Basic Zm9vOmJhcg=="},
        "bearer without key shape": {"Authorization": "Bearer nope"},
        "unknown key id": {"Authorization": "Bearer acr_aaaaaaaaaaaa_" + "x" * 43},
        "wrong secret": {"Authorization": f"Bearer acr_{key_id}_{'A' * 43}"},
        "revoked": auth(revoked["apiKey"]),
        "merchant": auth(tenant.merchant),
        "merchant, lower-case scheme": {"Authorization": f"bearer {tenant.merchant}"},
        "merchant, padded": {"Authorization": f"Bearer  {tenant.merchant} "},
        "merchant in x-api-key": {"x-api-key": tenant.merchant},
        "bad bearer wins over a good x-api-key": {"Authorization": "Bearer nope", "x-api-key": tenant.merchant},
        "basic falls back to x-api-key": {"Authorization": "Basic Zm9vOmJhcg==", "x-api-key": tenant.merchant},
        "analyst": auth(tenant.analyst),
        "tenant admin": auth(tenant.admin),
        "agent (no read)": auth(platform.keys.issue("acme", Role.AGENT, None).secret_key),
        "platform admin (no read)": auth(platform.keys.issue("acme", Role.PLATFORM_ADMIN, None).secret_key),
    }


PATHS = ["/v1/customers/c1/balance", "/v1/customers/c1/ledger", "/v1/customers/c1/ledger?limit=2",
         "/v1/customers/c2/balance", "/v1/customers/nobody/balance", "/v1/customers/nobody/ledger?limit=200"]


def test_every_credential_answers_alike_on_both_paths(client, platform, tenant, other_tenant, history, hot) -> None:
    table = credentials(platform, tenant, client)
    table["other tenant"] = auth(other_tenant.merchant)  # globex has a c1 of its own, and no c2
    for name, headers in table.items():
        for path in PATHS:
            [(status, response_headers, body)] = both(client, platform, hot, [(path, headers)], plain=True)
            assert status in (200, 401, 403, 404), (name, path, status, body)
            if status == 401:
                assert response_headers["www-authenticate"] == 'Bearer realm="accrue"'
            assert response_headers["content-type"] in ("application/json", "application/problem+json")
    # The table covered each outcome (so the comparison above compared something).
    outcomes = {both(client, platform, hot, [("/v1/customers/c1/ledger", table[name])], plain=True)[0][0]
                for name in ("none", "merchant", "agent (no read)")}
    assert outcomes == {200, 401, 403}


def test_tenants_stay_apart_on_the_hot_path(client, tenant, other_tenant, history, hot) -> None:
    ours = client.get("/v1/customers/c1/ledger", headers=auth(tenant.merchant)).json()
    theirs = client.get("/v1/customers/c1/ledger", headers=auth(other_tenant.merchant)).json()
    assert len(ours["items"]) == 5 and {e["tenantId"] for e in ours["items"]} == {"acme"}
    assert theirs["items"] == []
    assert client.get("/v1/customers/c2/balance", headers=auth(other_tenant.merchant)).status_code == 404
    assert hot["count"] == 3


def test_cursors_follow_and_fail_alike(client, platform, tenant, history, hot) -> None:
    merchant = auth(tenant.merchant)
    first = client.get("/v1/customers/c1/ledger?limit=2", headers=merchant).json()
    assert first["next"]
    forged = first["next"][:-3] + "abc"
    other_list = client.get("/v1/customers?limit=1", headers=auth(tenant.admin)).json()["next"]
    [page, bad, foreign] = both(client, platform, hot, [(first["next"], merchant),
                                                        (forged, merchant),
                                                        (f"/v1/customers/c1/ledger?cursor={other_list.split('cursor=')[1]}",
                                                         merchant)], plain=True)
    assert page[0] == 200 and bad[0] == 400 and foreign[0] == 400


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?limit=05", "?limit=5.0", "?limit=+5", "?limit=",
                                   "?limit=1&limit=2", "?cursor=", "?cursor=a%20b", "?cursor=" + "a" * 1025,
                                   "?entryType=EARN", "?from=2026-01-01T00:00:00Z", "?wallet=main", "?limt=5",
                                   "?asOf=2026-11-01T12:00:00Z"])
def test_anything_but_a_plain_request_is_the_fastapi_routes(client, platform, tenant, history, hot, query) -> None:
    for path in ("/v1/customers/c1/ledger", "/v1/customers/c1/balance"):
        both(client, platform, hot, [(path + query, auth(tenant.merchant))], plain=False)


@pytest.mark.parametrize("path", ["/v1/customers/bad!id/ledger", "/v1/customers/" + "a" * 65 + "/balance",
                                  "/v1/customers/-c1/balance"])
def test_a_customer_id_fastapi_refuses_is_the_fastapi_routes(client, platform, tenant, hot, path) -> None:
    [(status, _, _)] = both(client, platform, hot, [(path, auth(tenant.merchant))], plain=False)
    assert status == 422


def test_strict_headers_are_refused_on_the_hot_path(client, platform, tenant, hot) -> None:
    for path in ("/v1/customers/c1/ledger", "/v1/customers/c1/balance"):
        [(status, _, body)] = both(client, platform, hot, [(path, {**auth(tenant.merchant), "x-accrue-dry-run": "1"})],
                                   plain=False)  # refused (then charged, shared/api/edge.py), on both paths
        assert status == 400 and b"unknown-parameter" in body


def test_head_is_the_get_without_its_body(client, platform, tenant, hot) -> None:
    # shared/api/head.py hands HEAD to the app as GET: the hot path answers it, the body is dropped.
    both(client, platform, hot, [("/v1/customers/c1/balance", auth(tenant.merchant))], plain=True)
    got = client.get("/v1/customers/c1/balance", headers=auth(tenant.merchant))
    response = client.head("/v1/customers/c1/balance", headers=auth(tenant.merchant))
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == got.headers["content-length"] and response.headers["ratelimit"]


def limit(platform: Platform, tenant_id: str, **quotas: int) -> None:
    settings = platform.tenants.get(tenant_id)
    platform.tenants.save(settings.model_copy(update={"rate_limits": RateLimits(**quotas)}))


def test_rate_limits_count_and_refuse_alike(client, platform, tenant, history, hot) -> None:
    limit(platform, "acme", perKey=3, perTenant=4, windowSeconds=60)
    sequence = [("/v1/customers/c1/balance", auth(tenant.merchant)), ("/v1/customers/c1/ledger", auth(tenant.merchant)),
                ("/v1/customers/nobody/ledger", auth(tenant.merchant)),  # errors are counted too
                ("/v1/customers/c1/ledger", auth(tenant.merchant)),  # over the key's 3
                ("/v1/customers/c1/balance", auth(tenant.analyst)),  # the tenant's 4th
                ("/v1/customers/c1/balance", auth(tenant.analyst))]  # over the tenant's 4
    answers = both(client, platform, hot, sequence, plain=True)
    assert [status for status, _, _ in answers] == [200, 200, 404, 429, 200, 429]
    assert answers[0][1]["ratelimit"].startswith('"key";r=2;') and answers[3][1]["retry-after"]


def test_failed_authentication_is_limited_alike(client, platform, tenant, hot) -> None:
    bad = {"Authorization": "Bearer acr_aaaaaaaaaaaa_" + "x" * 43}
    answers = both(client, platform, hot, [("/v1/customers/c1/ledger", bad)] * 31, plain=True)
    assert [status for status, _, _ in answers] == [401] * 30 + [429]
    assert answers[0][1]["ratelimit-policy"].startswith('"failed-auth"')
