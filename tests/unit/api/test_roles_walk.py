"""Least privilege, walked: every route of the OpenAPI document, with every role.

Each route declares the capability it needs (``requires(...)``); the role map is
``shared.app.auth.CAPABILITIES``. A role without the capability gets 403 and the
store and the bus are exactly as before; a role with it is never refused (any
answer but 401/403). A route that declares no capability fails the walk."""

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


def _fingerprint(platform) -> str:
    db = sqlite3.connect(platform.store.path)
    rows = db.execute("SELECT container, pk, id, etag FROM docs ORDER BY container, pk, id").fetchall()
    db.close()
    return hashlib.sha256(repr((rows, platform.bus.depth())).encode()).hexdigest()


def test_every_route_with_every_role(client, platform, tenant) -> None:
    keys = {Role.MERCHANT: tenant.merchant, Role.ANALYST: tenant.analyst, Role.TENANT_ADMIN: tenant.admin,
            Role.PLATFORM_ADMIN: platform.keys.issue("_platform", Role.PLATFORM_ADMIN, None).secret_key,
            Role.AGENT: platform.keys.issue(tenant.tenant_id, Role.AGENT, None).secret_key}
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
                response = client.request(method.upper(), url, json={}, headers=auth(key))
                if capability in CAPABILITIES[role]:
                    assert response.status_code not in (401, 403), (method, path, role, response.text)
                else:
                    assert response.status_code == 403, (method, path, role, response.status_code)
                    assert _fingerprint(platform) == before, f"{method} {path} as {role.value} changed state"
                walked += 1
    assert walked >= 5 * 20
