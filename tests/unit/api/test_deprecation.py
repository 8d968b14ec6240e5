"""Deprecation (issue 13, part 8): a route marked ``@deprecated`` answers every call,
errors included, with ``Deprecation`` (RFC 9745), ``Sunset`` (RFC 8594) and the
links to the policy and its successor, and is ``deprecated: true`` in OpenAPI;
no other route carries any of it."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from shared.api.route_contract import ContractHeaders
from shared.api.deprecation import deprecated, mark_routes
from shared.api.introspect import api_routes
from shared.platform import Platform
from tests.conftest import TenantKeys, auth

DEPRECATED = {("GET", "/v1/redemption-reviews")}


def test_the_retired_route_says_when_and_what_instead(client: TestClient, tenant: TenantKeys) -> None:
    answer = client.get("/v1/redemption-reviews", headers=auth(tenant.admin))
    assert answer.status_code == 200
    assert answer.headers["Deprecation"] == f"@{int(datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp())}"
    assert parsedate_to_datetime(answer.headers["Sunset"]) == datetime(2027, 6, 30, tzinfo=timezone.utc)
    assert 'rel="deprecation"' in answer.headers["Link"]
    assert '</v1/reviews?kind=redemption>; rel="successor-version"' in answer.headers["Link"]
    refused = client.get("/v1/redemption-reviews", headers=auth(tenant.merchant))  # errors carry it too
    assert refused.status_code == 403 and "Sunset" in refused.headers


def test_openapi_flags_exactly_the_marked_routes(client: TestClient) -> None:
    document = client.get("/openapi/v1.json").json()
    flagged = {(method.upper(), path) for path, item in document["paths"].items()
               for method, operation in item.items() if operation.get("deprecated")}
    assert flagged == DEPRECATED


def test_no_other_route_carries_deprecation_headers(client: TestClient, tenant: TenantKeys,
                                                    platform: Platform) -> None:
    for path in ("/v1/reviews", "/v1/customers", "/health", "/v1/tenant"):
        answer = client.get(path, headers=auth(tenant.admin))
        assert "Deprecation" not in answer.headers and "Sunset" not in answer.headers, path


def test_the_decorator_marks_any_route() -> None:
    router = APIRouter()

    @router.get("/old")
    @deprecated(since=datetime(2026, 1, 1, tzinfo=timezone.utc), sunset=datetime(2026, 7, 1, tzinfo=timezone.utc),
                successor="/new")
    def old() -> dict:
        return {}

    @router.get("/new")
    def new() -> dict:
        return {}

    app = FastAPI()
    app.include_router(router)
    mark_routes(app)
    app.add_middleware(ContractHeaders)
    assert [r.deprecated for _, r in api_routes(app.routes)] == [True, None]
    with TestClient(app) as http:
        assert http.get("/old").headers["Sunset"] == "Wed, 01 Jul 2026 00:00:00 GMT"
        assert "Sunset" not in http.get("/new").headers
