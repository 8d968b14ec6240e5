"""Page cursors (shared.api.pagination, issue 12): a cursor this API did not give out for
the list is a 400 problem naming it, on every keyset route, never a 500 or a page.

A cursor carries a keyed digest (the platform's cursor key) of its body and of its list,
so no client can make one. These tests sign cursors with the platform's key, as only the
server could, around positions no list gives out, and check that the positions
themselves are still bounded before a store sees them: a ``seq`` beyond 64 bits was an
``OverflowError`` from SQLite, a 500."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.api import pagination
from tests.conftest import auth

# Each keyset route: a path to call, the route's path format and its path's ids.
KEYSET_ROUTES = [
    ("/v1/customers/c1/ledger", "/v1/customers/{customerId}/ledger", {"customerId": "c1"}),
    ("/v1/customers/c1/tier/history", "/v1/customers/{customerId}/tier/history", {"customerId": "c1"}),
    ("/v1/audit", "/v1/audit", {}),
    ("/v1/customers", "/v1/customers", {}),
    ("/v1/rewards", "/v1/rewards", {}),
]
SECRET = b"k" * 32
BOUND = pagination.Binding(SECRET, pagination.context_of("/v1/x", "acme", {}, []))


def _signed(platform, scope: str, ids: dict[str, str], key: list[Any]) -> str:
    """A cursor of the tenant acme's list with the server's own key around any position."""
    return pagination.encode(pagination.Binding(pagination.cursor_key(platform),
                                                pagination.context_of(scope, "acme", ids, [])), key)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-pagination.MAX_JSON_INTEGER, pagination.MAX_JSON_INTEGER),
                          st.text(max_size=pagination.MAX_KEY_TEXT)), min_size=1, max_size=3))
def test_a_cursor_reads_back_as_its_position(key: list[Any]) -> None:
    assert pagination.decode(BOUND, pagination.encode(BOUND, key), len(key)) == key


@pytest.mark.parametrize("key", [[2**64], [2**63], [-(2**63) - 1], [pagination.MAX_JSON_INTEGER + 1], [True],
                                 [1.5], [{"a": 1}], [[1]], ["x" * (pagination.MAX_KEY_TEXT + 1)]])
def test_signed_implausible_positions_are_refused_before_any_store(key: list[Any]) -> None:
    with pytest.raises(pagination.BadCursor):
        pagination.decode(BOUND, pagination.encode(BOUND, key), 1)


def test_a_cursor_is_bound_to_its_key_list_tenant_ids_and_filters() -> None:
    good = pagination.encode(BOUND, [5])
    body, _, mac = good.partition(".")
    others = [pagination.Binding(b"j" * 32, BOUND.context)] + [
        pagination.Binding(SECRET, pagination.context_of(*change)) for change in (
            ("/v1/y", "acme", {}, []), ("/v1/x", "other", {}, []), ("/v1/x", "acme", {"customerId": "c2"}, []),
            ("/v1/x", "acme", {}, [("entryType", "EARN")]))]
    for other in others:
        with pytest.raises(pagination.BadCursor):
            pagination.decode(other, good, 1)
    # another spelling of the same bytes: the padding bits of a body's last character set
    long_body, _, long_mac = pagination.encode(BOUND, [55]).partition(".")
    assert len(long_body) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = long_body[:-1] + alphabet[alphabet.index(long_body[-1]) | 1]
    assert respelled != long_body and base64.urlsafe_b64decode(respelled + "==") == \
        base64.urlsafe_b64decode(long_body + "==")
    with pytest.raises(pagination.BadCursor):
        pagination.decode(BOUND, f"{respelled}.{long_mac}", 1)
    for bad in (good[:-1] + ("A" if good[-1] != "A" else "B"), "garbage", body, body + ".", f"{body}.{mac[:-1]}",
                pagination.encode(BOUND, [6]).partition(".")[0] + "." + mac):
        with pytest.raises(pagination.BadCursor):
            pagination.decode(BOUND, bad, 1)


# --- over HTTP, on every keyset route ---------------------------------------------------


@pytest.mark.parametrize("path, scope, ids", KEYSET_ROUTES)
@pytest.mark.parametrize("key", [[2**64], [2**63], [-1], [0], ["x" * 300], [None]])
def test_a_signed_odd_cursor_is_a_400_problem_never_a_500(client, platform, tenant, path: str, scope: str, ids,
                                                           key) -> None:
    response = client.get(path, params={"cursor": _signed(platform, scope, ids, key)}, headers=auth(tenant.admin))
    # A plausible position in the caller's own list may be a page (200, 404 for an unknown customer);
    # an implausible one is a 400. Never a 500.
    assert response.status_code in (200, 400, 404), response.text
    if abs(key[0]) >= 2**53 if isinstance(key[0], int) else (isinstance(key[0], str) and len(key[0]) > 256):
        assert response.status_code == 400, response.text
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["type"].endswith("/bad-cursor")
        assert [e["field"] for e in problem["errors"]] == ["query.cursor"]


@pytest.mark.parametrize("path, scope, ids", KEYSET_ROUTES)
@pytest.mark.parametrize("cursor", ["garbage!", "x" * 2000, "e30.000000000000", " 1", "Zm9v",
                                    pagination.encode(BOUND, [1])])
def test_a_malformed_cursor_is_a_400_problem(client, tenant, path: str, scope: str, ids, cursor: str) -> None:
    response = client.get(path, params={"cursor": cursor}, headers=auth(tenant.admin))
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/bad-cursor")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(seq=st.integers(min_value=-2**70, max_value=2**70))
def test_no_signed_ledger_cursor_is_a_server_error(client, platform, tenant, seq: int) -> None:
    cursor = _signed(platform, "/v1/customers/{customerId}/ledger", {"customerId": "c1"}, [seq])
    response = client.get("/v1/customers/c1/ledger", params={"cursor": cursor}, headers=auth(tenant.admin))
    assert response.status_code in (200, 400, 404), response.text
    if abs(seq) > pagination.MAX_JSON_INTEGER or seq < 1:
        assert response.status_code == 400, response.text
