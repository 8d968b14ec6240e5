"""Refusals at the edge of a keyed route are answered like any other answer of that route:
to an authenticated client, charged to its key, with the ``RateLimit`` headers.

A request can be refused before the route's dependencies run: malformed JSON (FastAPI's
parser, shared/api/strict_json.py), a body over the limit or a ``Content-Length`` that is
not a length (shared/api/limits.py), a body of another media type (415), an unknown or
malformed parameter (shared/api/strict.py). Authentication (``shared.api.security``) was a
dependency that never ran for them, so these answers carried no ``RateLimit`` /
``RateLimit-Policy`` headers (docs/api-policies.md promises them on every answer of an
authenticated route), cost the key nothing, and told a client without a key about the
route's parameters.

``authenticated_refusal`` is called by the problem handlers (shared/api/problems.py) and
by the middlewares' ``refuse`` before they answer such a refusal. On a route that takes a
key, and when nothing was charged yet, it authenticates the request the way the route
would (``principal_of``): a missing, unknown or revoked key is answered 401 (429 past the
address's allowance) instead of the refusal; a valid key is charged one unit (whatever
the route's declared cost: the body is not read again) and the refusal is answered with
the headers (``shared.api.route_contract`` writes them). Routes that take no key
(``/health``) and paths that are no route are refused as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from re import Pattern
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from shared.api import ratelimit
from shared.api.ratelimit import REFUSAL
from shared.errors import AccrueError

Scope = dict[str, Any]
Message = dict[str, Any]

def _takes_key(dependant: Dependant) -> bool:
    from shared.api.security import principal

    return any(sub.call is principal or _takes_key(sub) for sub in dependant.dependencies)


def keyed(route: Any) -> bool:
    """Whether ``route`` authenticates its caller (it depends on ``principal``, directly or not)."""
    if not isinstance(route, APIRoute):
        return False
    cached: bool | None = getattr(route, "_accrue_keyed", None)
    if cached is None:
        cached = _takes_key(route.dependant)
        route._accrue_keyed = cached  # type: ignore[attr-defined]
    return cached


async def authenticated_refusal(request: Request) -> Response | None:
    """The 401/429 problem to answer instead of a refusal when the request's key does not
    authenticate; None when the refusal stands (the key was charged, or the route takes none)."""
    from shared.api.security import principal_of

    scope = request.scope
    if not keyed(scope.get("route")) or ratelimit.STATE_KEY in (scope.get("state") or {}):
        return None
    scope[REFUSAL] = True
    try:
        await principal_of(request)
    except AccrueError as refused:
        handler = request.app.exception_handlers[AccrueError]
        return await handler(request, refused)
    return None


async def refuse(scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]],
                 answer: Response) -> None:
    """Send ``answer`` (a refusal decided by a middleware, before routing) after authenticating
    the request on the route it is for, as the problem handlers do."""
    route = _route_of(scope)
    if route is not None:
        scope.setdefault("state", {})  # shared with the outer layers' scope: the decision reaches them
        instead = await authenticated_refusal(Request({**scope, "route": route}, receive))
        if instead is not None:
            answer = instead
    await answer(scope, receive, send)


def route_index(app: Any) -> list[tuple[Pattern[str], frozenset[str], Any]]:
    """Every route of ``app`` with a path: its compiled path, its methods and the route, built
    once per app (a 405's ``Allow`` in shared/api/problems.py, ``_route_of`` here)."""
    index = getattr(app.state, "route_index", None)
    if index is None:
        index = [(compile_path(ctx.path)[0], frozenset(ctx.methods or ()), ctx.original_route)
                 for ctx in iter_route_contexts(app.routes) if ctx.path]
        app.state.route_index = index
    return index


def _route_of(scope: Scope) -> APIRoute | None:
    """The API route that would serve this request (its path and method), before routing."""
    app = scope.get("app")
    if getattr(app, "state", None) is None:
        return None
    path, method = scope.get("path", ""), scope.get("method", "")
    return next((route for regex, methods, route in route_index(app)
                 if isinstance(route, APIRoute) and method in methods and regex.match(path)), None)
