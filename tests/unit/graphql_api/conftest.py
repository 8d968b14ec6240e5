"""GraphQL over real HTTP: the ``gql`` client (its httpx transport) against the ASGI app,
in-process (httpx's ASGI transport), with the tenant's REST keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport import httpx as gql_transport_module
from gql.transport.httpx import HTTPXAsyncTransport

# gql's transport uses httpx2 when it is installed (the mcp SDK brings it) and plain httpx otherwise;
# the ASGI transport handed to it must be of the same library.
gql_httpx = gql_transport_module.httpx

from shared.api.app import create_app
from shared.platform import Platform

URL = "http://accrue.test/graphql/v1"


class GraphQLClient:
    """Runs queries with a given key; ``errors`` of a partial answer are returned, not raised."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def run(self, key: str | None, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            transport = HTTPXAsyncTransport(URL, headers=headers, transport=gql_httpx.ASGITransport(app=self.app))
            async with Client(transport=transport) as session:
                try:
                    result = await session.execute(GraphQLRequest(query, variable_values=variables),
                                                   get_execution_result=True)
                    return {"data": result.data, "errors": None, "extensions": result.extensions}
                except TransportQueryError as error:
                    return {"data": error.data, "errors": error.errors, "extensions": None}

        return asyncio.run(go())

    def data(self, key: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.run(key, query, variables)
        assert not answer["errors"], answer["errors"]
        return answer["data"]


@pytest.fixture
def app(platform: Platform) -> Any:
    return create_app(platform)


@pytest.fixture
def graphql(app: Any) -> GraphQLClient:
    return GraphQLClient(app)


def codes(answer: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in answer["errors"] or ()]
