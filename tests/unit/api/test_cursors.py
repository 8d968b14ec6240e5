"""Page cursors (shared.api.pagination, issue 12): a cursor this API did not give out for
the list is a 400 problem naming it, on every keyset route, never a 500 or a page.

The checksum inside a cursor is not secret, so these tests craft cursors the way a
hostile client could (a valid checksum around any position) and check that the
positions themselves are bounded before a store sees them: a ``seq`` beyond 64 bits
was an ``OverflowError`` from SQLite, a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.api import pagination
from tests.conftest import auth

# Each keyset route: a path to call, and the route's path format its cursors are bound to.
KEYSET_ROUTES = [
    ("/v1/customers/c1/ledger", "/v1/customers/{customerId}/ledger"),
    ("/v1/customers/c1/tier/history", "/v1/customers/{customerId}/tier/history"),
    ("/v1/audit", "/v1/audit"),
    ("/v1/customers", "/v1/customers"),
    ("/v1/rewards", "/v1/rewards"),
]


def _crafted(path: str, key: list[Any], version: int = 1) -> str:
    """A cursor with a valid checksum around any position, as anyone reading the code could make."""
    payload = json.dumps({"v": version, "r": path, "k": key}, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + pagination._checksum(payload)


def test_the_crafted_form_is_the_modules_own_form() -> None:
    assert _crafted("/v1/x", [1]) == pagination.encode("/v1/x", [1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-pagination.MAX_JSON_INTEGER, pagination.MAX_JSON_INTEGER),
                          st.text(max_size=pagination.MAX_KEY_TEXT)), min_size=1, max_size=3))
def test_a_cursor_reads_back_as_its_position(key: list[Any]) -> None:
    assert pagination.decode("/v1/x", pagination.encode("/v1/x", key), len(key)) == key


@pytest.mark.parametrize("key", [[2**64], [2**63], [-(2**63) - 1], [pagination.MAX_JSON_INTEGER + 1], [True],
                                 [1.5], [{"a": 1}], [[1]], ["x" * (pagination.MAX_KEY_TEXT + 1)]])
def test_crafted_positions_are_refused_before_any_store(key: list[Any]) -> None:
    with pytest.raises(pagination.BadCursor):
        pagination.decode("/v1/x", _crafted("/v1/x", key), 1)


def test_a_cursor_is_bound_to_its_list_version_and_checksum() -> None:
    good = pagination.encode("/v1/a", [5])
    for other in (pagination.encode("/v1/b", [5]), _crafted("/v1/a", [5], version=2), good[:-1] + "0"
                  if good[-1] != "0" else good[:-1] + "1", "garbage", good.replace(".", "")):
        with pytest.raises(pagination.BadCursor):
            pagination.decode("/v1/a", other, 1)


# --- over HTTP, on every keyset route ---------------------------------------------------


@pytest.mark.parametrize("path, scope", KEYSET_ROUTES)
@pytest.mark.parametrize("key", [[2**64], [2**63], [-1], [0], ["x" * 300], [None]])
def test_a_crafted_cursor_is_a_400_problem_never_a_500(client, tenant, path: str, scope: str, key) -> None:
    response = client.get(path, params={"cursor": _crafted(scope, key)}, headers=auth(tenant.admin))
    # A plausible position in the caller's own list may be a page (200, 404 for an unknown customer);
    # an implausible one is a 400. Never a 500.
    assert response.status_code in (200, 400, 404), response.text
    if abs(key[0]) >= 2**53 if isinstance(key[0], int) else (isinstance(key[0], str) and len(key[0]) > 256):
        assert response.status_code == 400, response.text
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["type"].endswith("/bad-cursor")
        assert [e["field"] for e in problem["errors"]] == ["query.cursor"]


@pytest.mark.parametrize("path, scope", KEYSET_ROUTES)
@pytest.mark.parametrize("cursor", ["garbage!", "x" * 2000, "e30.000000000000", " 1", "Zm9v",
                                    _crafted("/v1/another/list", [1])])
def test_a_malformed_cursor_is_a_400_problem(client, tenant, path: str, scope: str, cursor: str) -> None:
    response = client.get(path, params={"cursor": cursor}, headers=auth(tenant.admin))
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/bad-cursor")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(seq=st.integers(min_value=-2**70, max_value=2**70))
def test_no_crafted_ledger_cursor_is_a_server_error(client, tenant, seq: int) -> None:
    response = client.get("/v1/customers/c1/ledger", params={"cursor": _crafted("/v1/customers/{customerId}/ledger",
                                                                                   [seq])}, headers=auth(tenant.admin))
    assert response.status_code in (200, 400, 404), response.text
    if abs(seq) > pagination.MAX_JSON_INTEGER or seq < 1:
        assert response.status_code == 400, response.text
