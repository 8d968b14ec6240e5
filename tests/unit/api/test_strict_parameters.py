"""Strict parameters (issue 13, part 7): on every route, an unknown query parameter
or an unknown ``x-accrue-*`` header is a 400 problem naming it, and nothing runs;
every parameter a route declares is accepted by name. Checked over all routes of
the app, so a new route is covered the day it is added."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from shared.api.app import create_app
from shared.api.introspect import api_routes
from shared.api.strict import _declared
from shared.platform import Platform
from tests.conftest import TenantKeys, auth, order_body


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def all_routes(platform: Platform) -> list[tuple[str, str, APIRoute]]:
    app = create_app(platform)
    return [(method, concrete(path), route) for path, route in api_routes(app.routes)
            for method in sorted(route.methods)]


def test_every_route_refuses_unknown_query_parameters_and_our_headers(client: TestClient, platform: Platform,
                                                                      tenant: TenantKeys) -> None:
    routes = all_routes(platform)
    assert len(routes) > 60
    for method, path, _ in routes:
        answer = client.request(method, path, params={"bogusParam": "1", "dryrun": "true"},
                                headers={**auth(tenant.admin), "X-Accrue-Bogus": "1"})
        assert answer.status_code == 400, (method, path, answer.status_code, answer.text)
        body = answer.json()
        assert body["type"].endswith("/unknown-parameter")
        assert [e["field"] for e in body["errors"]] == ["bogusParam", "dryrun", "x-accrue-bogus"], (method, path)


def test_every_declared_query_parameter_is_accepted_by_name(client: TestClient, platform: Platform,
                                                            tenant: TenantKeys) -> None:
    for method, path, route in all_routes(platform):
        query, _ = _declared(route)
        for name in query:
            answer = client.request(method, path, params={name: "1"}, headers=auth(tenant.admin))
            assert not (answer.status_code == 400 and answer.json()["type"].endswith("/unknown-parameter")), \
                (method, path, name)


def test_a_typo_changes_nothing(client: TestClient, tenant: TenantKeys) -> None:
    refused = client.post("/v1/orders", params={"wiat": "5"}, json=order_body("c1", "typo"),
                          headers=auth(tenant.merchant))
    assert refused.status_code == 400 and "'wiat'" in refused.json()["detail"]
    assert client.get("/v1/orders/typo", headers=auth(tenant.merchant)).status_code == 404


@pytest.mark.parametrize("path", ["/health", "/v1/customers"])
def test_other_headers_are_not_ours_to_refuse(client: TestClient, tenant: TenantKeys, path: str) -> None:
    answer = client.get(path, headers={**auth(tenant.merchant), "X-Request-Id": "abc", "X-Forwarded-For": "1.2.3.4"})
    assert answer.status_code == 200
