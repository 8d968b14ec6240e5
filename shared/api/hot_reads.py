"""The two hot reads (a balance now, an unfiltered history page) answered without
FastAPI's dependency resolution, with the same checks in the same order.

FastAPI resolves seven dependencies and validates each parameter per request, recomputing
what kind of callable every dependency is: that was ~60 % of a history page's server time
(docs/performance.md, target 3). For these two routes this module puts a plain Starlette
route in front of the app's routes that does, by hand, what the FastAPI route does:

1. ``strict_parameters`` (the same function: unknown query parameters and ``x-accrue-*``
   headers are a 400);
2. ``principal_of`` (``shared.api.security``): the same ``bearer`` and ``api_key_header``
   objects read the key, the same ``authenticate`` verifies it (its cache, the failed-
   authentication limit per address, the key's and the tenant's rate limits);
3. ``who.require("read")`` (403 for a key without it);
4. the route's own answer (``balance_answer`` / ``history_answer`` in
   ``shared.api.routes.customers``, which the FastAPI routes call too), scoped to the
   key's tenant.

What it guarantees:

* It only takes a request whose parameters FastAPI's validation could not refuse: a
  ``GET``, a customer id that matches ``ID_PATTERN``, and a query that is empty (balance)
  or holds at most one ``limit`` in plain digits within 1-200 and one well-formed
  ``cursor`` (history). Anything else (``asOf``, filters, a bad id or limit, a repeated or
  unknown parameter) is not matched here and goes to the FastAPI route, which
  answers it as before (a ``HEAD`` reaches it as a ``GET``, shared/api/head.py). So every 4xx of parameter validation is still FastAPI's own, and
  nothing is charged twice: the decision is taken before any check runs.
* Errors are raised as the FastAPI route raises them and answered by the app's own
  exception handlers (Starlette's ``request_response`` wraps the endpoint as FastAPI's
  does): the same RFC 9457 problems, ``WWW-Authenticate``, ``RateLimit`` and ``Retry-After``
  headers.
* ``scope["route"]`` is the FastAPI route, so everything that looks at it (the rate limit's
  cost, the strict parameters' declared names, the cursor's scope, the deprecation
  headers, the request span's name, log lines) sees the same route either way.
* The OpenAPI document is unchanged: these routes are not in the schema.

``tests/unit/api/test_hot_reads.py`` answers a table of good and bad credentials and
parameters through both paths and compares the answers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams
from starlette.routing import Match, Route

from shared.api.pagination import MAX_CURSOR
from shared.api.routes import customers
from shared.api.security import principal_of
from shared.api.strict import INTEGER, strict_parameters
from shared.domain.ids import ID_MAX_LENGTH, ID_RE

Scope = dict[str, Any]
Answer = Callable[[Request, Any, Any, str, dict[str, Any]], Awaitable[Response]]

# The cursor's declared pattern (shared.api.pagination.Cursor), compiled for a fullmatch.
CURSOR_RE = re.compile(r"[A-Za-z0-9_\-.]+")
HISTORY_MAX_LIMIT = 200  # the history route's Query(le=200)
HISTORY_DEFAULT_LIMIT = 50


def _no_query(query: QueryParams) -> dict[str, Any] | None:
    return {} if not query else None


def _page_query(query: QueryParams) -> dict[str, Any] | None:
    """``{"cursor", "limit"}`` when the query is at most one valid ``limit`` and one valid
    ``cursor``; None for anything FastAPI's validation or the strict parameters might refuse."""
    items = query.multi_items()
    names = [name for name, _ in items]
    if len(names) != len(set(names)) or not set(names) <= {"limit", "cursor"}:
        return None
    limit, cursor = HISTORY_DEFAULT_LIMIT, None
    for name, value in items:
        if name == "limit":
            if not INTEGER.fullmatch(value) or not 1 <= int(value) <= HISTORY_MAX_LIMIT:
                return None
            limit = int(value)
        elif len(value) > MAX_CURSOR or not CURSOR_RE.fullmatch(value):
            return None
        else:
            cursor = value
    return {"cursor": cursor, "limit": limit}


async def _balance(request: Request, p: Any, who: Any, customer_id: str, params: dict[str, Any]) -> Response:
    return await customers.balance_answer(p, who, customer_id)


async def _history(request: Request, p: Any, who: Any, customer_id: str, params: dict[str, Any]) -> Response:
    return await customers.history_answer(request, p, who, customer_id, params["cursor"], params["limit"])


class HotRead(Route):
    """A plain route in front of ``api_route`` that matches only the simple requests (above)."""

    def __init__(self, api_route: APIRoute, query: Callable[[QueryParams], dict[str, Any] | None],
                 answer: Answer, capability: str) -> None:
        super().__init__(api_route.path, self.serve, methods=["GET"], include_in_schema=False,
                         name=f"hot:{api_route.name}")
        self.methods = {"GET"}  # Starlette adds HEAD to a GET route; the FastAPI route serves GET only
        self.api_route, self.query, self.answer, self.capability = api_route, query, answer, capability
        self.enabled = True  # the tests turn it off to compare with the FastAPI route

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not self.enabled or scope["type"] != "http" or scope["method"] != "GET":
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is not Match.FULL:
            return Match.NONE, {}
        customer_id = child["path_params"].get("customerId", "")
        if len(customer_id) > ID_MAX_LENGTH or not ID_RE.fullmatch(customer_id):
            return Match.NONE, {}
        params = self.query(QueryParams(scope.get("query_string", b"")))
        if params is None:
            return Match.NONE, {}
        child.update({"route": self.api_route, "endpoint": self.api_route.endpoint, "accrue.hot_params": params})
        return Match.FULL, child

    async def serve(self, request: Request) -> Response:
        await strict_parameters(request)
        who = await principal_of(request)
        who.require(self.capability)
        return await self.answer(request, request.app.state.platform, who, request.path_params["customerId"],
                                 request.scope["accrue.hot_params"])


def install(app: FastAPI) -> list[HotRead]:
    """Put the hot routes in front of the app's routes; they are returned (for the tests)."""
    by_endpoint = {route.endpoint: route for route in customers.router.routes if isinstance(route, APIRoute)}
    hot = [HotRead(by_endpoint[customers.balance], _no_query, _balance, "read"),
           HotRead(by_endpoint[customers.history], _page_query, _history, "read")]
    app.router.routes[0:0] = hot
    app.router._mark_routes_changed()  # FastAPI caches what its included routers match
    return hot
