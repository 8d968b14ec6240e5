"""The ASGI application: FastAPI with the problem-JSON error mapping, the body
limit, strict parameters, rate limits, the contract headers (rate limit state,
deprecation) and the routers. ``create_app`` takes a built ``Platform`` so tests, the
local runner and the Azure Functions host each choose their adapters."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from shared.api import contract, hot_reads, problems
from shared.api.deprecation import mark_routes
from shared.api.head import HeadAsGet
from shared.api.limits import BodyLimit
from shared.api.ratelimit import build_counter
from shared.api.route_contract import ContractHeaders
from shared.api.strict import strict_parameters
from shared.api.strict_json import StrictJson, json_media_type
from shared.graphql.endpoint import mount as mount_graphql
from shared.api.mcp import mount as mount_mcp
from shared.api.routes import audit, customers, exports, governance, health, keys, orders, privacy, tenants, webhooks
from shared.api.routes import rules
from shared.api.routes import redemptions, rewards, vouchers
from shared.api.routes import referrals
from shared.api.routes import fraud, reviews
from shared.api.routes import tiers
from shared.api.routes import agents as agents_routes
from shared.api.routes import expiries
from shared.api.routes import ledger as ledger_routes
from shared.api.routes import imports, occasions
from shared.api.routes import metrics as metrics_route
from shared.api.routes import operator_page, operators
from shared.platform import Platform
from shared.telemetry.http_tracing import HttpTracing

OPENAPI_URL = "/openapi/v1.json"


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="Accrue",
        version="1.0.0",
        summary="Multi-tenant loyalty platform: orders in, points on an append-only ledger, balances out.",
        openapi_url=OPENAPI_URL,
        docs_url="/docs",
        redoc_url=None,
        # Unknown query parameters and x-accrue-* headers are a 400 before anything else runs.
        # A JSON route given a body of another media type is a 415.
        dependencies=[Depends(strict_parameters), Depends(json_media_type)],
        # The request span is ours (shared.telemetry.http_tracing, with the tenant):
        # FastAPI's own server and per-operation spans would double it.
        telemetry={"tracing": False, "operation_spans": False},
        # /v1/orders/ is not a route: a 404 problem, not an undeclared 307 to an absolute
        # http:// URL answered before authentication.
        redirect_slashes=False,
    )
    app.state.platform = platform
    app.state.rate_counter = counter = build_counter(platform)
    app.router.on_shutdown.append(counter.close)
    problems.install(app)
    rules.install(app)
    for module in (health, privacy, customers, orders, keys, tenants, audit, governance, webhooks, exports, rules,
                   rewards, redemptions, vouchers, referrals, tiers, expiries, fraud, reviews, agents_routes,
                   operators, operator_page, ledger_routes, imports, occasions):
        app.include_router(module.router)
    metrics_route.install(app)  # GET /metrics, loopback only, outside the OpenAPI document
    mark_routes(app)
    # Balance and the plain history page without FastAPI's dependency resolution (same checks).
    hot_reads.install(app)
    # GraphQL (issue 14): HTTP and graphql-transport-ws on the same server; outside the OpenAPI document.
    mount_graphql(app, platform)
    # The MCP tool server for agents (issue 21): JSON-RPC at /mcp, outside the OpenAPI document.
    mount_mcp(app)
    app.add_middleware(StrictJson)  # inside the body limit: it reads the body through it
    app.add_middleware(BodyLimit)
    app.add_middleware(HeadAsGet)  # HEAD is GET without the body, on every GET route
    app.add_middleware(ContractHeaders)
    app.add_middleware(HttpTracing)  # outermost: the span covers every other layer
    contract.install(app)
    return app
