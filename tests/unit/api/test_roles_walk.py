"""Least privilege, walked: every route of the OpenAPI document, with every role.

Each route declares the capability it needs (``requires(...)``); the role map is
``shared.app.auth.CAPABILITIES``. A role without the capability gets 403 and the
store and the bus are exactly as before; a role with it is never refused (any
answer but 401/403). A route that declares no capability fails the walk.

Platform routes (capability ``platform``, the key of an operator with a security
key): a read answers at once; every mutating one needs the ceremony: it answers a
pending approval request (202) or refuses, and nothing but the approvals, the audit
log and pending registration challenges changes: no act runs on one key
(tests/unit/governance/test_fido2.py runs each act through the two approvals)."""

from __future__ import annotations

import hashlib
import re
import sqlite3

from fastapi.routing import APIRoute

from shared.api.app import OPENAPI_URL
from shared.app.auth import CAPABILITIES, Role
from tests.conftest import auth

PUBLIC = {"/health", "/healthz", "/livez", "/readyz"}
SAMPLE = {"customerId": "c1", "keyId": "aaaaaaaaaaaa", "requestId": "req-0000000000000000", "chain": "acme",
          "orderId": "o1", "tenantId": "acme"}


# Valid bodies for platform routes, so the walk sees them file a request (and nothing else).
BODIES = {
    ("post", "/v1/tenants"): {"tenantId": "walked", "name": "Walked"},
    ("post", "/v1/platform/approvals"): {"action": "tenant.kek.rotate", "tenantId": "acme", "reason": "walk"},
    ("put", "/v1/platform/partners/{partnerId}"): {"baseUrl": "https://partner.example.com"},
}


def _capability(route: APIRoute) -> str | None:
    def walk(dependant) -> str | None:
        for dep in dependant.dependencies:
            name = getattr(dep.call, "__name__", "")
            if name.startswith("requires_"):
                return name[len("requires_"):]
            found = walk(dep)
            if found:
                return found
        return None

    return walk(route.dependant)


def _api_routes(routes, prefix: str = ""):
    """Every APIRoute, also inside included routers (FastAPI keeps those as wrappers)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix, route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes, prefix + route.include_context.prefix)


def _fingerprint(platform, acts_only: bool = False) -> str:
    """The store and the bus; ``acts_only``: without what filing a request writes."""
    db = sqlite3.connect(platform.store.path)
    rows = db.execute("SELECT container, pk, id, etag FROM docs ORDER BY container, pk, id").fetchall()
    db.close()
    if acts_only:
        rows = [r for r in rows if r[0] not in ("approvals", "audit") and not (r[0] == "system" and r[1] == "operators"
                                                                               and r[2].startswith("chal-"))]
    return hashlib.sha256(repr((rows, platform.bus.depth())).encode()).hexdigest()


def test_every_route_with_every_role(client, platform, tenant, operators) -> None:
    keys = {Role.MERCHANT: tenant.merchant, Role.ANALYST: tenant.analyst, Role.TENANT_ADMIN: tenant.admin,
            Role.PLATFORM_ADMIN: operators[0].api_key,
            Role.AGENT: platform.keys.issue(tenant.tenant_id, Role.AGENT, None).secret_key}
    ceremonies = 0
    document = client.get(OPENAPI_URL).json()
    routes = {(m, prefix + r.path): r for prefix, r in _api_routes(client.app.routes) for m in r.methods}
    walked = 0
    for path, operations in document["paths"].items():
        for method in operations:
            route = routes.get((method.upper(), path))
            capability = _capability(route) if route is not None else None
            if path in PUBLIC or capability is None:
                assert path in PUBLIC, f"{method.upper()} {path} declares no role (add requires(...))"
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "x1"), path)
            for role, key in keys.items():
                before = _fingerprint(platform)
                acts_before = _fingerprint(platform, acts_only=True)
                response = client.request(method.upper(), url, json=BODIES.get((method, path), {}),
                                          headers=auth(key))
                if capability in CAPABILITIES[role]:
                    assert response.status_code not in (401, 403), (method, path, role, response.text)
                    if capability == "platform" and method != "get":
                        assert response.status_code == 202 or 400 <= response.status_code < 500, \
                            (method, path, response.status_code)
                        if response.status_code == 202:
                            assert response.json()["status"] == "pending" and not response.json()["approvals"]
                            ceremonies += 1
                        assert _fingerprint(platform, acts_only=True) == acts_before, \
                            f"{method} {path} acted on one platform-admin key, without the ceremony"
                else:
                    assert response.status_code == 403, (method, path, role, response.status_code)
                    assert _fingerprint(platform) == before, f"{method} {path} as {role.value} changed state"
                walked += 1
    assert walked >= 5 * 20
    assert ceremonies >= 2, "the walk filed requests on the platform routes that take a valid body"
