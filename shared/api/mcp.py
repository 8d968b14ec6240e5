"""The MCP tool server (issue 21): the agent tools over the Model Context
Protocol, mounted at ``/mcp`` on the same ASGI app that serves the REST API.

Transport: the official SDK's streamable HTTP transport in **stateless JSON-response
mode**: every POST is a complete JSON-RPC exchange answered with one JSON body, no
server-sent events and no session held by the server. That is the only mode Azure
Functions' ASGI adapter can serve (it does not stream responses), and it is the
one used everywhere, so local runs and tests exercise what runs on Azure. A fresh
session manager runs per request (its task group lives for that request only), so
nothing depends on ASGI lifespan events, which the Functions host does not send.

Authentication: an API key of role ``agent`` (``Authorization: Bearer`` or
``x-api-key``), charged to the key's and tenant's rate limits like any request;
any other role is a 403 problem, a missing or bad key a 401 (and a 429 once the
client's address has used its failed-authentication allowance), before the protocol
is spoken. What the agent may do is then its guardrail policy's to decide
(shared/agents/tools.py); every tool call lands in the decision trail.

Resources (programme knowledge): ``accrue://catalogue`` (the rewards, JSON),
``accrue://earning-rules`` (the active rule set in words, markdown) and
``accrue://terms/<docId>`` (the tenant's terms documents, newest version, markdown).

The SDK is imported on the first request, never at module import: the Functions
host imports the app on every cold start (tests/unit/functions/test_cold_import.py).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from shared.api import problems
from shared.app.auth import Principal
from shared.errors import AccrueError, Forbidden, Unauthenticated

PATH = "/mcp"
SCOPE_KEY = "accrue.principal"
SERVER_NAME = "accrue"
INSTRUCTIONS = (
    "Accrue is a loyalty platform. These tools let you help one tenant's customers: find the customer, read "
    "balances and transactions, explain an order's points, list rewards they can redeem, and act through quotes "
    "(quote, show the customer, record their consent, execute). Every answer has a decision (allowed, refused, "
    "escalated) with reasons you can relay. Escalated actions wait for a person; open_case hands a conversation "
    "to a person. Ground answers in the resources (catalogue, earning rules, terms).")


def _presented_key(scope: Scope) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return (headers.get("x-api-key") or "").strip() or None


class McpEndpoint:
    """The ASGI app mounted at /mcp."""

    def __init__(self) -> None:
        self._server: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        platform = scope["app"].state.platform
        try:
            who = await self._authenticate(request, platform)
        except AccrueError as error:
            response = problems.problem(error.status, error.code, error.code.replace("-", " ").capitalize(),
                                        error.message)
            if error.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="accrue"'
            decision = getattr(error, "decision", None)
            if decision is not None:  # 429: the key's, tenant's or address's allowance is used up
                from shared.api.ratelimit import headers  # noqa: PLC0415

                for name, value in headers(decision):
                    response.headers[name.decode()] = value.decode()
            await response(scope, receive, send)
            return
        scope[SCOPE_KEY] = who
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager  # noqa: PLC0415 - cold import

        manager = StreamableHTTPSessionManager(self._server_for(platform), json_response=True, stateless=True)
        async with manager.run():
            await manager.handle_request(scope, receive, send)

    async def _authenticate(self, request: Request, platform: Any) -> Principal:
        from shared.api.ratelimit import admit, charge_failed_authentication  # noqa: PLC0415

        presented = _presented_key(request.scope)
        try:
            if not presented:
                raise Unauthenticated("an agent API key is required: Authorization: Bearer <key> or x-api-key: <key>")
            known = platform.keys.cached(presented)
            who = known if known is not None else await run_in_threadpool(platform.keys.verify, presented)
        except Unauthenticated:
            # As on every route (shared/api/security.py): failed authentications are limited per address.
            await charge_failed_authentication(request)
            raise
        if not who.can("agent"):
            raise Forbidden(f"the MCP server serves agent keys only; this is a {who.role.value} key")
        await admit(request, who)
        return who

    def _server_for(self, platform: Any) -> Any:
        if self._server is None:
            self._server = build_server(platform)
        return self._server


def build_server(platform: Any) -> Any:
    import mcp_types as types  # noqa: PLC0415 - the SDK loads on first use
    from mcp.server.lowlevel import Server  # noqa: PLC0415

    from shared.agents.tools import output_schema  # noqa: PLC0415
    from shared.agents.words import rules_markdown  # noqa: PLC0415

    agents = platform.agents
    out_schema = output_schema()

    def principal_of(ctx: Any) -> Principal:
        who = ctx.request.scope.get(SCOPE_KEY) if ctx.request is not None else None
        assert isinstance(who, Principal), "the endpoint authenticates before the protocol runs"
        return who

    async def list_tools(ctx: Any, params: Any) -> Any:
        tools = []
        for tool in agents.tools.values():
            tools.append(types.Tool(
                name=tool.name, title=tool.title, description=tool.description,
                input_schema=agents.input_schema(tool.name), output_schema=out_schema,
                annotations=types.ToolAnnotations(title=tool.title, read_only_hint=not tool.writes,
                                                  destructive_hint=False, idempotent_hint=True,
                                                  open_world_hint=False)))
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: Any) -> Any:
        who = principal_of(ctx)
        answer = await run_in_threadpool(agents.call, who, params.name, params.arguments or {})
        body = answer.model_dump(mode="json", by_alias=True)
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(body))],
                                    structured_content=body, is_error=answer.decision == "refused")

    async def list_resources(ctx: Any, params: Any) -> Any:
        who = principal_of(ctx)
        terms = await run_in_threadpool(agents.knowledge.list_terms, who.tenant_id)
        resources = [
            types.Resource(uri="accrue://catalogue", name="catalogue", title="Reward catalogue",
                           description="Every reward: id, name, points cost, category, stock, validity.",
                           mime_type="application/json"),
            types.Resource(uri="accrue://earning-rules", name="earning-rules", title="How points are earned",
                           description="The tenant's active earning rules, rule by rule, in words.",
                           mime_type="text/markdown"),
        ]
        for doc in terms:
            resources.append(types.Resource(
                uri=f"accrue://terms/{doc['docId']}", name=f"terms-{doc['docId']}", title=doc["title"],
                description=f"Programme terms, version {doc['version']} of {doc['at']}", mime_type="text/markdown"))
        return types.ListResourcesResult(resources=resources)

    def read(tenant_id: str, uri: str) -> tuple[str, str]:
        if uri == "accrue://catalogue":
            rewards = platform.spend.catalogue.list(tenant_id, None, 500)
            return "application/json", json.dumps({"rewards": rewards})
        if uri == "accrue://earning-rules":
            active = platform.rule_sets.active(tenant_id)
            if active is None:
                return "text/markdown", "# How customers earn points\n\nNo rule set is active.\n"
            source = platform.rule_sets.load_source(tenant_id, active.rule_set_id, active.version)
            return "text/markdown", rules_markdown(active.rule_set_id, active.version, source)
        if uri.startswith("accrue://terms/"):
            doc = agents.knowledge.terms(tenant_id, uri[len("accrue://terms/"):])
            header = f"<!-- terms {doc['docId']} version {doc['version']} of {doc['at']} -->\n"
            return "text/markdown", header + doc["markdown"]
        from shared.errors import NotFound  # noqa: PLC0415
        raise NotFound(f"no resource {uri}")

    async def read_resource(ctx: Any, params: Any) -> Any:
        from mcp.shared.exceptions import MCPError  # noqa: PLC0415

        who = principal_of(ctx)
        uri = str(params.uri)
        try:
            mime, text = await run_in_threadpool(read, who.tenant_id, uri)
        except AccrueError as error:
            raise MCPError(code=-32002, message=error.message) from None
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime, text=text)])

    return Server(SERVER_NAME, version="1", title="Accrue agent tools", instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
                  on_read_resource=read_resource)


def mount(app: Any) -> None:
    """Serve the MCP endpoint at exactly /mcp (outside the OpenAPI document: it speaks JSON-RPC).
    A route, not a mount: a mount answers /mcp with a redirect to /mcp/, which clients need not follow."""
    from starlette.routing import Route  # noqa: PLC0415

    app.router.routes.append(Route(PATH, McpEndpoint(), methods=["GET", "POST", "DELETE"], include_in_schema=False))
