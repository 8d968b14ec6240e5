"""Strict parameters: a query parameter a route does not declare, or a header that
looks like ours (``x-accrue-*``) that it does not declare, is a 400 problem naming
each one, so a typo (``?dryrun=true``, ``?limt=5``) never silently changes what a
call means. The declared names are derived from the route itself (FastAPI's
flattened dependant: the route's parameters and those of its dependencies), never
listed by hand, so a new parameter is accepted the moment a route declares it.

Installed as an app-wide dependency (``create_app``), it runs before the route's
own dependencies: an unknown parameter is refused before authentication, rate
limiting or any read."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shared.errors import FieldProblem, ValidationFailed

OUR_HEADER_PREFIX = "x-accrue-"


class UnknownParameters(ValidationFailed):
    """400: the request names parameters the route does not know."""

    code = "unknown-parameter"
    status = 400


def _collect(dependant: Dependant, query: set[str], headers: set[str]) -> None:
    """The query and header names of a dependant and of all its sub-dependencies."""
    query.update(p.alias for p in dependant.query_params)
    headers.update(p.alias.lower().replace("_", "-") for p in dependant.header_params)
    for sub in dependant.dependencies:
        _collect(sub, query, headers)


def _declared(route: APIRoute) -> tuple[frozenset[str], frozenset[str]]:
    cached: tuple[frozenset[str], frozenset[str]] | None = getattr(route, "_accrue_declared", None)
    if cached is None:
        query: set[str] = set()
        headers: set[str] = set()
        _collect(route.dependant, query, headers)
        cached = (frozenset(query), frozenset(headers))
        route._accrue_declared = cached  # type: ignore[attr-defined]
    return cached


def unknown_parameters(route: APIRoute, query_names: Any, header_names: Any) -> list[FieldProblem]:
    query, headers = _declared(route)
    problems = [FieldProblem(name, "is not a query parameter of this route")
                for name in sorted(set(query_names) - query)]
    ours = {h.lower() for h in header_names if h.lower().startswith(OUR_HEADER_PREFIX)}
    problems += [FieldProblem(name, "is not a header of this route") for name in sorted(ours - headers)]
    return problems


async def strict_parameters(request: HTTPConnection) -> None:
    # HTTPConnection, not Request: an app-wide dependency also runs for WebSocket routes.
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    problems = unknown_parameters(route, request.query_params.keys(), request.headers.keys())
    if problems:
        names = ", ".join(repr(p.field) for p in problems)
        raise UnknownParameters(f"unknown parameter(s) {names}: check the spelling; nothing was done", problems)
