"""The ASGI application: FastAPI with the problem-JSON error mapping, the body
limit, and the routers. ``create_app`` takes a built ``Platform`` so tests, the
local runner and the Azure Functions host each choose their adapters."""

from __future__ import annotations

from fastapi import FastAPI

from shared.api import contract, problems
from shared.api.limits import BodyLimit
from shared.api.routes import audit, customers, exports, governance, health, keys, orders, privacy, tenants, webhooks
from shared.api.routes import rules
from shared.api.routes import redemptions, rewards
from shared.api.routes import fraud, reviews
from shared.api.routes import tiers
from shared.api.routes import expiries
from shared.platform import Platform

OPENAPI_URL = "/openapi/v1.json"


def create_app(platform: Platform) -> FastAPI:
    app = FastAPI(
        title="Accrue",
        version="1.0.0",
        summary="Multi-tenant loyalty platform: orders in, points on an append-only ledger, balances out.",
        openapi_url=OPENAPI_URL,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.platform = platform
    problems.install(app)
    rules.install(app)
    for module in (health, privacy, customers, orders, keys, tenants, audit, governance, webhooks, exports, rules,
                   rewards, redemptions, tiers, expiries, fraud, reviews):
        app.include_router(module.router)
    app.add_middleware(BodyLimit)
    contract.install(app)
    return app
