"""Any query the schema admits gets an answer, never a server fault: hypothesis-graphql
generates valid queries (arguments included) from the committed schema; each answer is 200
JSON whose errors, if any, are product errors with a code (never ``internal``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import hypothesis_graphql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes

from tests.conftest import auth

SDL = (Path(__file__).resolve().parents[3] / "docs" / "graphql" / "schema.graphql").read_text()
# Scalars as a hostile client writes them, not only as the schema's examples: instants with and
# without an offset, at both ends of the calendar with offsets that overflow UTC, and text that
# is no instant at all (an outside review found the tame "...Z" strategy hid 500s).
OFFSETS = st.sampled_from(["", "Z", "+00:00", "+14:00", "-12:00", "+01:00", "-01:00"])
INSTANT_TEXT = st.one_of(
    st.tuples(st.datetimes(), OFFSETS).map(lambda t: t[0].isoformat() + t[1]),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00",
                     "1969-12-31T23:59:59Z", "9000-01-01T00:00:01Z", "2026-02-30T00:00:00Z", "", "now", "1e309"]))
SCALARS = {"Date": st.one_of(st.dates().map(lambda d: d.isoformat()),
                             st.sampled_from(["0000-01-01", "2026-02-30", "", "9999-12-31"])).map(nodes.String),
           "DateTime": INSTANT_TEXT.map(nodes.String),
           "JSON": st.just(nodes.String("{}"))}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(query=hypothesis_graphql.queries(SDL, custom_scalars=SCALARS))
def test_a_valid_query_never_faults_the_server(app, tenant, query: str) -> None:
    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accrue.test") as c:
            return await c.post("/graphql/v1", json={"query": query}, headers=auth(tenant.admin))

    response = asyncio.run(post())
    assert response.status_code == 200, (query, response.text)
    for error in response.json().get("errors") or ():
        code = (error.get("extensions") or {}).get("code")
        assert code not in (None, "internal"), (query, error)


@pytest.mark.parametrize("body", [b"null", b"1", b'"x"', b"true", b"[]", b"[1]", b"[null]", b"{}", b'{"query": 1}',
                                  b'{"query": null}', b'{"query": "{ tenant { id } }", "variables": 1}', b"{",
                                  b"\xff\xfe"])
def test_a_body_that_is_no_graphql_request_is_a_client_error(client, tenant, body: bytes) -> None:
    response = client.post("/graphql/v1", content=body,
                           headers={**auth(tenant.admin), "content-type": "application/json"})
    assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
