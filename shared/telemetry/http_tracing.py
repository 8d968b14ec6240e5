"""The HTTP request span: one SERVER span per request, named by the route
template (``POST /v1/orders``, never the concrete path, so span names stay a
bounded set that maps to customer flows), with the status code and, once the
caller is authenticated, the tenant (``shared.api.ratelimit.admit`` sets it).

A plain ASGI middleware rather than the FastAPI auto-instrumentation: that one
would add a second server span (and per-send internal spans) for every request.
An incoming ``traceparent`` header is continued, so a merchant's own trace can
include ours. With tracing off (``tracing.enabled()`` false) the request passes
through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.telemetry import tracing

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class HttpTracing:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        status: dict[str, int] = {}

        async def send_traced(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        with tracing.tracer().start_as_current_span(
            method, context=tracing.context_from(_header(scope, b"traceparent")), kind=SpanKind.SERVER,
            attributes={"http.request.method": method}, record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, send_traced)
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                # The router put the matched route in the (shared) scope on the way in.
                route = getattr(scope.get("route"), "path", None)
                span.update_name(f"{method} {route}" if route else f"{method} (unmatched)")
                if route:
                    span.set_attribute("http.route", route)
                code = status.get("code")
                if code is not None:
                    span.set_attribute("http.response.status_code", code)
                    if code >= 500:
                        span.set_status(Status(StatusCode.ERROR))
