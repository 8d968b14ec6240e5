"""The official MCP client (``ClientSession`` over streamable HTTP) against Accrue's /mcp, in
process through the ASGI app or over loopback to a live local platform."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def session(key: str, *, app: Any = None, base_url: str = "http://accrue.test") -> AsyncIterator[ClientSession]:
    transport = httpx2.ASGITransport(app=app) if app is not None else None
    headers = {"Authorization": f"Bearer {key}"}
    async def show_failures(response: httpx2.Response) -> None:
        if response.status_code >= 300:  # the client reports only "an error response": say which
            await response.aread()
            print(f"MCP HTTP {response.status_code}: {response.text[:500]}")

    async with httpx2.AsyncClient(transport=transport, base_url=base_url, headers=headers, timeout=30,
                                  event_hooks={"response": [show_failures]}) as http:
        async with streamable_http_client(f"{base_url}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                yield client


async def call(client: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's answer envelope (decision, reasons, policy, result); checks both copies agree."""
    result = await client.call_tool(tool, arguments)
    body = result.structured_content
    assert body == json.loads(result.content[0].text)
    assert result.is_error == (body["decision"] == "refused")
    return body
