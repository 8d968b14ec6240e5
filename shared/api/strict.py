"""Strict parameters: a query parameter a route does not declare, or a header that
looks like ours (``x-accrue-*``) that it does not declare, is a 400 problem naming
each one, so a typo (``?dryrun=true``, ``?limt=5``) never silently changes what a
call means. The declared names are derived from the route itself (FastAPI's
flattened dependant: the route's parameters and those of its dependencies), never
listed by hand, so a new parameter is accepted the moment a route declares it.

Installed as an app-wide dependency (``create_app``), it runs before the route's
own dependencies: an unknown parameter is refused before the route's own checks or
any read. The refusal is answered to an authenticated client only, and charged one
unit (shared/api/edge.py, from the problem handler).

Numbers in the query are read as written in digits, nothing else: pydantic's lax
parsing would take ``?limit=5.0``, ``+5``, `` 5``, ``05`` or ``1_0`` as a number,
so one client's typo or odd encoder would mean something another client's would
not. A number parameter (declared ``int`` or ``float``) whose value is not plain
decimal digits, and any single-valued parameter given twice (``?limit=5&limit=6``:
which one counts is an accident of the framework), is a 400 problem naming it.

A boolean parameter (``dryRun``) takes ``true`` or ``false`` and nothing else: pydantic
also read ``1``/``yes``/``on``/``t``/``y`` as true and ``0``/``no``/``off``/``f``/``n`` as
false, so a client that meant a dry run could write for real."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
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


INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
_NUMBER_SHAPES = {int: (INTEGER, "a whole number in plain digits (no sign, spaces, leading zeros, "
                                 "separators or decimal point)"),
                  float: (DECIMAL, "a number in plain decimal digits (no sign, spaces, leading zeros, "
                                   "separators or exponent)")}

BOOLEAN = re.compile(r"true|false")
_BOOLEAN_SHAPE = "true or false, in lower case (no 1/0, yes/no, on/off)"


@dataclass(frozen=True)
class Declared:
    """What a route accepts in its query and headers, derived once from the route itself."""

    query: frozenset[str]
    headers: frozenset[str]
    numbers: dict[str, type]  # query name -> int or float
    single: frozenset[str]  # query names that take one value, not a list
    booleans: frozenset[str] = frozenset()  # query names declared bool


def _bare(annotation: Any) -> Any:
    """``int`` for ``int``, ``int | None`` and ``Optional[int]``; the annotation otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


class MalformedParameters(ValidationFailed):
    """400: a query number not in plain digits, a boolean not ``true``/``false``, or a
    single-valued parameter repeated."""

    code = "malformed-parameter"
    status = 400


def _collect(dependant: Dependant, found: dict[str, Any]) -> None:
    """The query and header parameters of a dependant and of all its sub-dependencies."""
    for p in dependant.query_params:
        found["query"].add(p.alias)
        bare = _bare(p.field_info.annotation)
        if bare in _NUMBER_SHAPES:  # bool is not int here: `is`-style lookup by the type itself
            found["numbers"][p.alias] = bare
        if bare is bool:
            found["booleans"].add(p.alias)
        if typing.get_origin(bare) not in (list, tuple, set, frozenset) and bare not in (list, tuple, set):
            found["single"].add(p.alias)
    found["headers"].update(p.alias.lower().replace("_", "-") for p in dependant.header_params)
    for sub in dependant.dependencies:
        _collect(sub, found)


def _declared(route: APIRoute) -> Declared:
    cached: Declared | None = getattr(route, "_accrue_declared", None)
    if cached is None:
        found: dict[str, Any] = {"query": set(), "headers": set(), "numbers": {}, "single": set(),
                                 "booleans": set()}
        _collect(route.dependant, found)
        cached = Declared(frozenset(found["query"]), frozenset(found["headers"]), found["numbers"],
                          frozenset(found["single"]), frozenset(found["booleans"]))
        route._accrue_declared = cached  # type: ignore[attr-defined]
    return cached


def unknown_parameters(route: APIRoute, query_names: Any, header_names: Any) -> list[FieldProblem]:
    declared = _declared(route)
    problems = [FieldProblem(name, "is not a query parameter of this route")
                for name in sorted(set(query_names) - declared.query)]
    ours = {h.lower() for h in header_names if h.lower().startswith(OUR_HEADER_PREFIX)}
    problems += [FieldProblem(name, "is not a header of this route") for name in sorted(ours - declared.headers)]
    return problems


def malformed_parameters(route: APIRoute, query_items: list[tuple[str, str]]) -> list[FieldProblem]:
    """Numbers not in plain digits, booleans not ``true``/``false``, and single-valued parameters
    given more than once."""
    declared = _declared(route)
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for name, value in query_items:
        if name in declared.single and name in seen:
            problems.append(FieldProblem(name, "is given more than once; give it once"))
        seen.add(name)
        shape = _NUMBER_SHAPES.get(declared.numbers.get(name))  # type: ignore[arg-type]
        if shape is not None and not shape[0].fullmatch(value):
            problems.append(FieldProblem(name, f"must be {shape[1]}; got {value[:40]!r}"))
        if name in declared.booleans and not BOOLEAN.fullmatch(value):
            problems.append(FieldProblem(name, f"must be {_BOOLEAN_SHAPE}; got {value[:40]!r}"))
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
    problems = malformed_parameters(route, request.query_params.multi_items())
    if problems:
        names = ", ".join(repr(p.field) for p in problems)
        raise MalformedParameters(f"malformed parameter(s) {names}; nothing was done", problems)
