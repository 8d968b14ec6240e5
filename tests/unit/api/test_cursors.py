"""Page cursors and page tokens (shared.api.cursors, issue 12): a token this API did not
give out is a 400 problem naming it, on every paginated route, never a 500 or a page."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.api import cursors
from tests.conftest import auth


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["seq", "tier"]), st.integers(min_value=1, max_value=cursors.MAX_SEQ - 1))
def test_a_cursor_reads_back_as_its_sequence_number(kind: str, seq: int) -> None:
    assert cursors.decode(kind, cursors.encode(kind, seq)) == seq


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=70),
                 st.text(alphabet="seqtir:0123456789 +-_\u0661", max_size=30).map(_token),
                 st.integers().map(lambda n: _token(f"seq:{n}"))))
def test_any_other_token_is_refused_and_a_cursor_is_only_its_own_spelling(token: str) -> None:
    try:
        seq = cursors.decode("seq", token)
    except cursors.BadCursor as refused:
        assert refused.status == 400 and [p.field for p in refused.problems] == ["query.cursor"]
        return
    assert cursors.encode("seq", seq) == token


@pytest.mark.parametrize("text", ["seq:18446744073709551616", "seq:9223372036854775808", "seq:0", "seq:-1",
                                  "seq: 5", "seq:+5", "seq:1_0", "seq:05", "seq:\u0665", "tier:5", "seq:5:6", "seq"])
def test_crafted_ledger_cursors_are_refused(text: str) -> None:
    with pytest.raises(cursors.BadCursor):
        cursors.decode("seq", _token(text))


def test_a_second_spelling_of_a_cursor_is_refused() -> None:
    good = cursors.encode("seq", 5)
    for other in (good + "=", good + "\n", " " + good, good[:-1] + chr(ord(good[-1]) + 1), good + "!"):
        with pytest.raises(cursors.BadCursor):
            cursors.decode("seq", other)


# --- over HTTP, on every paginated route ---------------------------------------------

BEYOND_64_BITS = _token("seq:" + str(2**64))


@pytest.mark.parametrize("path, params", [
    # The review's case: a seq beyond 64 bits was an OverflowError from SQLite, a 500.
    ("/v1/customers/c1/ledger", {"cursor": BEYOND_64_BITS}),
    ("/v1/customers/c1/ledger", {"cursor": _token("seq:9223372036854775808")}),
    ("/v1/customers/c1/tier/history", {"cursor": _token("tier:" + str(2**64))}),
    ("/v1/customers/c1/ledger", {"cursor": _token("tier:5")}),
    ("/v1/customers/c1/ledger", {"cursor": "garbage!"}),
    ("/v1/customers", {"after": "a:b"}),
    ("/v1/rewards", {"after": "x" * 65}),
    ("/v1/audit", {"after": "18446744073709551616"}),
    ("/v1/audit", {"after": "-1"}),
    ("/v1/audit", {"after": "1_000"}),
    ("/v1/audit", {"after": " 10"}),
    ("/v1/audit", {"after": "+5"}),
    ("/v1/audit", {"after": "007"}),
])
def test_a_bad_page_token_is_a_400_problem_naming_it(client, tenant, path, params) -> None:
    response = client.get(path, params=params, headers=auth(tenant.admin))
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("/bad-cursor")
    assert [e["field"] for e in problem["errors"]] == [f"query.{next(iter(params))}"]


def test_the_audit_page_token_still_pages(client, tenant) -> None:
    first = client.get("/v1/audit", params={"after": "0", "limit": 1}, headers=auth(tenant.admin))
    assert first.status_code == 200, first.text
    after = first.json()["next"]
    if after is not None:
        assert client.get("/v1/audit", params={"after": str(after)}, headers=auth(tenant.admin)).status_code == 200


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(token=st.one_of(st.text(min_size=1, max_size=64),
                       st.integers(min_value=-2**70, max_value=2**70).map(lambda n: _token(f"seq:{n}"))))
def test_no_ledger_cursor_is_a_server_error(client, tenant, token: str) -> None:
    response = client.get("/v1/customers/c1/ledger", params={"cursor": token}, headers=auth(tenant.admin))
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert cursors.decode("seq", token) >= 1
