"""JSON request bodies are read strictly at the edge: text Python's ``json`` module
accepts but that is not a JSON text a client can mean is refused with the same 400
``malformed-json`` problem as a syntax error, on every route, before any route runs.

* A name twice in one object (``{"points": 1, "points": 1000}``): ``json`` kept the last,
  where a proxy or a log keeping the first would disagree with Accrue about the request.
* A lone UTF-16 surrogate (``"\\ud800"``, or its raw UTF-8 bytes, which ``json.loads``
  of bytes lets through with ``surrogatepass``), in a key or a value: it is no Unicode
  character, so no store, log or serialiser (orjson) can write it. A typed field answered
  422; the free-form agent policy reached the store and answered 500.
* ``NaN``, ``Infinity`` and ``-Infinity``: not JSON (RFC 8259 has no such literals).
  ``json.loads`` read them as floats; the free-form agent policy stored them as null
  and typed fields answered 422.

Every JSON body is parsed once here by ``shared.domain.json_text.strict_loads`` (the same
rules as import files and voucher uploads): inline for a small body, on a worker thread for
one over ``OFF_LOOP_BYTES`` (a batch of orders), so the event loop is not held by it.

A JSON route (one whose body FastAPI reads as a model) takes only a JSON media type:
given a body of another type, or none (``text/plain``, no ``Content-Type``), it answered
422 "body: Input should be a valid dictionary", as if the JSON were wrong. It is a 415
``unsupported-media-type`` problem (``json_media_type``, an app-wide dependency), declared
on every operation with a JSON request body.

``StrictJson`` is a plain ASGI middleware inside ``BodyLimit``: it reads the body through the limited
``receive`` (an oversized body is still the body limit's 413) and hands the route the
very bytes it read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.params import Form
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from shared.api.batch_body import reads_as_json
from shared.api.edge import refuse
from shared.domain.json_text import NotJson, strict_loads

Scope = dict[str, Any]
Message = dict[str, Any]

# Bodies larger than this are checked on a worker thread: the parse with its duplicate-name
# hook is ~2.7 ms for a batch of 500 orders, which would hold the event loop (and every read
# arriving meanwhile) that long.
OFF_LOOP_BYTES = 16 * 1024


def json_problem(body: bytes) -> str | None:
    """Why ``body`` (a JSON text ``json.loads`` may accept) is not acceptable JSON
    (``shared.domain.json_text``); None when it is, or when it does not parse at all:
    FastAPI then answers its own malformed-json problem."""
    try:
        strict_loads(body)
    except NotJson as refused:
        return str(refused)
    except (ValueError, RecursionError):
        return None
    return None


def malformed_json(detail: str, instance: str | None) -> dict[str, Any]:
    return {"type": "https://accrue.dev/problems/malformed-json", "title": "Malformed JSON", "status": 400,
            "detail": f"the body is not valid JSON: {detail}", "instance": instance}


class StrictJson:
    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or not reads_as_json(_header(scope, b"content-type")):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = await run_in_threadpool(json_problem, body) if len(body) > OFF_LOOP_BYTES else json_problem(body)
        if problem is not None:
            # Authenticated and charged on a keyed route first (shared.api.edge): its RateLimit headers.
            answer = JSONResponse(malformed_json(problem, scope.get("path")), status_code=400,
                                  media_type="application/problem+json")
            await refuse(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send,
                         answer)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _replay(messages: list[Message], receive: Callable[[], Awaitable[Message]]) -> Callable[[], Awaitable[Message]]:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _takes_json(route: APIRoute) -> bool:
    cached: bool | None = getattr(route, "_accrue_takes_json", None)
    if cached is None:
        field = route.body_field
        cached = field is not None and not isinstance(field.field_info, Form)
        route._accrue_takes_json = cached  # type: ignore[attr-defined]
    return cached


async def json_media_type(request: HTTPConnection) -> None:
    """415 for a body that is not declared JSON sent to a route that reads its body as JSON.
    No body at all (no length, or 0, and not chunked) is left to the route's validation."""
    route = request.scope.get("route")
    if request.scope["type"] != "http" or not isinstance(route, APIRoute) or not _takes_json(route):
        return
    headers = request.headers
    content_type = headers.get("content-type")
    if reads_as_json(content_type):
        return
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return
    raise HTTPException(415, detail=f"send the body as application/json; got "
                                    f"{(content_type or 'no Content-Type')[:100]!r}")
