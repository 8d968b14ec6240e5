"""``/graphql/v1`` as an ASGI app mounted on the API's FastAPI app: the same server, the same
process and, on Azure, the same HTTP function as REST.

* HTTP (POST, and GET for queries): the API key is checked before GraphQL sees the request,
  by the REST dependency itself (``shared.graphql.auth``); a missing or bad key raises the
  REST error, which the app's problem handler turns into the same 401 problem JSON (a 429
  for a key over its rate limit: one GraphQL request is charged as one REST request).
* WebSocket (graphql-transport-ws, locally): the key in the upgrade headers or the
  ``connection_init`` payload; a bad key closes the socket with 4403 before any subscription.
* The GraphiQL page (GET with ``Accept: text/html``) is served where a sandbox can exist (the
  embedded store: the local platform); it holds no data, and the schema explorer in it only
  works for keys whose tenant has introspection on (sandbox tenants)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from shared.errors import AccrueError, FieldProblem, ValidationFailed
from shared.graphql import loaders, settings
from shared.graphql.auth import authenticate
from shared.graphql.context import Context
from shared.graphql.feed import SubscriptionsUnavailable, hub_of
from shared.graphql.schema import schema
from shared.platform import Platform

PATH = "/graphql/v1"
PRINCIPAL_KEY = "graphql.principal"


def _settings_for(platform: Platform, tenant_id: str) -> settings.GraphQLSettings:
    marker = bool(getattr(platform.tenants.get(tenant_id), "sandbox", False))
    return settings.load(platform.store, tenant_id, sandbox_marker=marker)


class AccrueGraphQL(GraphQL):
    def __init__(self, platform: Platform, ide: bool) -> None:
        super().__init__(schema, graphql_ide="graphiql" if ide else None, allow_queries_via_get=True,
                         keep_alive=True, keep_alive_interval=15,
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        self.platform = platform

    def parse_json(self, data: str | bytes) -> Any:
        """Strawberry's parse (400 for text that is not JSON), then: a JSON body that is not an
        object or a batch (``null``, a number, a string) is refused as REST refuses a malformed
        body, a 422 problem (strawberry itself would fail on it with a 500). Raised before
        anything is sent: the app's handler answers it."""
        parsed = super().parse_json(data)
        if not isinstance(parsed, (dict, list)):
            raise ValidationFailed("a GraphQL request body is a JSON object such as {\"query\": \"{ tenant { id } }\"}",
                                   [FieldProblem("body", f"must be a JSON object, not {type(parsed).__name__}")])
        return parsed

    async def get_context(self, request: Any, response: Any = None) -> Context:
        context = Context(platform=self.platform, connection=request)
        websocket = request.scope.get("type") == "websocket"
        # A WebSocket lives for many events: its loaders must not cache (a tier read once would go stale).
        context.loaders = loaders.build(context, cache=not websocket)
        who = (request.scope.get("state") or {}).get(PRINCIPAL_KEY)
        if who is not None:
            context.who = who
            context.settings = await context.call(_settings_for, self.platform, who.tenant_id)
        return context

    async def on_ws_connect(self, context: Context) -> Any:
        try:
            who = await authenticate(context.connection, context.connection_params)
        except AccrueError as error:
            raise ConnectionRejectionError({"code": error.code, "message": error.message}) from None
        context.who = who
        context.settings = await context.call(_settings_for, self.platform, who.tenant_id)
        return {"tenantId": who.tenant_id, "role": who.role.value}


class GraphQLEndpoint:
    """Authenticates plain HTTP requests, then hands every request to strawberry."""

    def __init__(self, platform: Platform) -> None:
        self.ide = platform.settings.store == "sqlite"
        self.graphql = AccrueGraphQL(platform, ide=self.ide)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._ide_page(scope):
            # Raised before anything is sent: the app's handler answers with the REST problem JSON.
            who = await authenticate(HTTPConnection(scope))
            scope.setdefault("state", {})[PRINCIPAL_KEY] = who
        await self.graphql(scope, receive, send)

    def _ide_page(self, scope: dict[str, Any]) -> bool:
        if not self.ide or scope.get("method") != "GET" or scope.get("query_string"):
            return False
        accept = dict(scope.get("headers") or []).get(b"accept", b"")
        return b"text/html" in accept


def mount(app: Any, platform: Platform) -> GraphQLEndpoint:
    """Serve ``/graphql/v1`` (exactly that path: no redirect to a trailing slash) over HTTP and
    WebSocket, outside the OpenAPI document and the REST-only parameter checks."""
    endpoint = GraphQLEndpoint(platform)

    async def negotiate(request: Request) -> JSONResponse:
        """A short-lived Web PubSub client URL for the key's tenant group (Azure's live updates)."""
        who = await authenticate(request)
        who.require("read")
        if platform.live_updates is None:
            raise SubscriptionsUnavailable("live updates here are GraphQL subscriptions over WebSocket at "
                                           f"{PATH}; Web PubSub is not configured")
        return JSONResponse(await run_in_threadpool(platform.live_updates.negotiate, who))

    app.router.routes.append(Route(PATH + "/negotiate", negotiate, methods=["POST"], include_in_schema=False))
    app.router.routes.append(Route(PATH, endpoint, include_in_schema=False))
    app.router.routes.append(WebSocketRoute(PATH, endpoint))
    app.router.on_shutdown.append(lambda: hub_of(platform).stop())
    return endpoint
