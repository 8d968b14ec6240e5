"""Any query the schema admits gets an answer, never a server fault: hypothesis-graphql
generates valid queries (arguments included) from the committed schema; each answer is 200
JSON whose errors, if any, are product errors with a code (never ``internal``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import hypothesis_graphql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes

from tests.conftest import auth

SDL = (Path(__file__).resolve().parents[3] / "docs" / "graphql" / "schema.graphql").read_text()
SCALARS = {"Date": st.dates().map(lambda d: nodes.String(d.isoformat())),
           "DateTime": st.datetimes().map(lambda d: nodes.String(d.isoformat() + "Z")),
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
