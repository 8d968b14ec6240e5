"""Strict parameters (issue 13, part 7): on every route, an unknown query parameter
or an unknown ``x-accrue-*`` header is a 400 problem naming it, and nothing runs;
every parameter a route declares is accepted by name; every number parameter takes
plain digits only, and a single-valued parameter given twice is refused. Checked
over all routes of the app, so a new route is covered the day it is added."""

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
        for name in _declared(route).query:
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


LAX_NUMBERS = ["5.0", "+5", " 5", "5 ", "05", "1_0", "5e0", "0x5", "٥", ""]


def test_every_number_parameter_refuses_anything_but_plain_digits(client: TestClient, platform: Platform,
                                                                  tenant: TenantKeys) -> None:
    """The outside review: ``?limit=5.0``, ``+5``, `` 5`` and ``1_0`` were read as 5 or 10."""
    checked = 0
    for method, path, route in all_routes(platform):
        for name, kind in _declared(route).numbers.items():
            for value in LAX_NUMBERS if kind is int else [v for v in LAX_NUMBERS if v != "5.0"]:
                answer = client.request(method, path, params={name: value}, headers=auth(tenant.admin))
                assert answer.status_code == 400, (method, path, name, value, answer.status_code, answer.text)
                body = answer.json()
                assert body["type"].endswith("/malformed-parameter"), (method, path, name, value, body)
                assert [e["field"] for e in body["errors"]] == [name]
                checked += 1
    assert checked > 100  # every list route has a limit: the walk really walked


def test_a_single_valued_parameter_given_twice_is_refused(client: TestClient, tenant: TenantKeys) -> None:
    answer = client.get("/v1/audit", params=[("limit", "5"), ("limit", "6")], headers=auth(tenant.admin))
    assert answer.status_code == 400
    assert answer.json()["errors"] == [{"field": "limit", "message": "is given more than once; give it once"}]


def test_plain_digits_and_repeated_list_parameters_are_accepted(client: TestClient, tenant: TenantKeys) -> None:
    assert client.get("/v1/audit", params={"limit": "7"}, headers=auth(tenant.admin)).status_code == 200
    answer = client.get("/v1/customers/c1/ledger", params=[("entryType", "EARN"), ("entryType", "REDEEM")],
                        headers=auth(tenant.admin))
    assert answer.status_code == 200, answer.text
    refused = client.get("/v1/orders/wait-typo", params={"wait": "1.5e0"}, headers=auth(tenant.merchant))
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "wait"
