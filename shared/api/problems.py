"""RFC 9457 problem responses: the one mapping from errors to HTTP.

Every error response of the API is ``application/problem+json`` with ``type``,
``title``, ``status``, ``detail`` and, for validation failures, ``errors``: a
list of ``{field, message}`` naming each bad field. Client mistakes are 4xx;
only a fault of ours is a 500, and its detail never leaks internals.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.api.edge import authenticated_refusal, route_index
from shared.api.pagination import PAGE_TOKEN_PARAMETERS
from shared.errors import AccrueError, ValidationFailed
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.api")

PROBLEM_BASE = "https://accrue.dev/problems/"
MEDIA_TYPE = "application/problem+json"


def problem(status: int, code: str, title: str, detail: str, instance: str | None = None,
            errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path or "body"


def _is_page_token(loc: tuple[Any, ...]) -> bool:
    return len(loc) == 2 and loc[0] == "query" and loc[1] in PAGE_TOKEN_PARAMETERS


def _message_of(error: dict[str, Any]) -> str:
    message = error.get("msg", "invalid")
    if error.get("type") == "extra_forbidden":
        return "is not a known field"
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return message


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` serves at ``path`` (for a 405's Allow header), sorted;
    ``HEAD`` wherever ``GET`` is (shared/api/head.py serves it)."""
    served = {m for regex, methods, _ in route_index(app) if regex.match(path) for m in methods}
    return sorted(served | {"HEAD"} if "GET" in served else served)


def _route(request: Request) -> str:
    """The route template that matched (``/v1/customers/{customer_id}``) for logs: the
    concrete path can carry ids a log line should not."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return f"{request.method} {template}" if isinstance(template, str) else f"{request.method} (no route)"


# Refusals decided before a route's dependencies run: authenticated and charged first
# (shared.api.edge), so a keyed route's answer carries its RateLimit headers.
_EDGE_CODES = frozenset({"unknown-parameter", "malformed-parameter"})
_EDGE_STATUSES = frozenset({400, 413, 415})


def install(app: FastAPI) -> None:
    @app.exception_handler(AccrueError)
    async def accrue_error(request: Request, exc: AccrueError) -> Response:
        if exc.code in _EDGE_CODES and (instead := await authenticated_refusal(request)) is not None:
            return instead
        errors = None
        if isinstance(exc, ValidationFailed):
            errors = [{"field": p.field, "message": p.message} for p in exc.problems]
        if exc.status >= 500:
            log.error("%s on %s: %s", exc.code, _route(request), exc.message,
                      extra=fields(route=_route(request), error=exc.code, status=exc.status))
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        if exc.status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="accrue"'}
        response = problem(exc.status, exc.code, exc.code.replace("-", " ").capitalize(), exc.message,
                           request.url.path, errors, headers)
        extensions = getattr(exc, "extensions", None)
        if extensions:
            # RFC 9457 extension members, opted into by the error (e.g. the available balance).
            body = json.loads(response.body)
            body.update({k: v for k, v in extensions.items() if k not in body})
            response = JSONResponse(body, status_code=exc.status, media_type=MEDIA_TYPE, headers=headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        raw = exc.errors()
        if any(e.get("type") == "json_invalid" for e in raw):
            if (instead := await authenticated_refusal(request)) is not None:
                return instead
            first = next(e for e in raw if e.get("type") == "json_invalid")
            ctx = first.get("ctx") or {}
            return problem(400, "malformed-json", "Malformed JSON",
                           f"the body is not valid JSON: {ctx.get('error', 'parse error')}", request.url.path)
        errors = [{"field": _field_of(tuple(e.get("loc", ()))), "message": _message_of(e)} for e in raw][:50]
        if raw and all(_is_page_token(tuple(e.get("loc", ()))) for e in raw):
            # A page token that is not one we gave out: the same 400 as a forged cursor.
            return problem(400, "bad-cursor", "Bad cursor", "the page token is not one this API gave out",
                           request.url.path, errors)
        return problem(422, "validation-failed", "Validation failed",
                       f"{len(raw)} invalid field(s); nothing was changed", request.url.path, errors)

    @app.exception_handler(PydanticValidationError)
    async def model_error(request: Request, exc: PydanticValidationError) -> JSONResponse:
        # A model built inside a route (e.g. settings merged with a patch) refused
        # the client's values: still the client's mistake, still named.
        raw = exc.errors()
        errors = [{"field": _field_of(tuple(e.get("loc", ()))), "message": _message_of(e)} for e in raw][:50]
        return problem(422, "validation-failed", "Validation failed",
                       f"{len(raw)} invalid field(s); nothing was changed", request.url.path, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in _EDGE_STATUSES and (instead := await authenticated_refusal(request)) is not None:
            return instead
        codes = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large", 400: "bad-request",
                 415: "unsupported-media-type"}
        code = codes.get(exc.status_code, "http-error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route that matched the path only;
            # a path served by several routes (GET and POST /v1/customers) allows all of theirs.
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.app, request.url.path))}
        return problem(exc.status_code, code, code.replace("-", " ").capitalize(), str(exc.detail),
                       request.url.path, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", _route(request), extra=fields(route=_route(request), status=500))
        return problem(500, "internal-error", "Internal error",
                       "an unexpected error occurred; nothing was changed by this request", request.url.path)
