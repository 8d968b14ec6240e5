"""Headers of the API's contract written on every response, whatever produced it
(a route, an error handler, a 429): the rate limit's state (``shared.api.ratelimit``)
and a retiring route's ``Deprecation``/``Sunset``/``Link`` (``shared.api.deprecation``).

A plain ASGI middleware: it adds headers to ``http.response.start`` and never
touches the body, so streaming and the body limit are unaffected."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from shared.api import ratelimit
from shared.api.deprecation import notice_of

Scope = dict[str, Any]
Message = dict[str, Any]


class ContractHeaders:
    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # The rate limit's decision is left in scope["state"]; make sure inner layers that copy
        # the scope (shared.api.head) share this very dict with us.
        scope.setdefault("state", {})

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra: list[tuple[bytes, bytes]] = []
                decision = (scope.get("state") or {}).get(ratelimit.STATE_KEY)
                if decision is not None:
                    extra += ratelimit.headers(decision)
                notice = notice_of(scope.get("route"))
                if notice is not None:
                    extra += notice.headers()
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    message = {**message, "headers": [*message.get("headers", []),
                                                       *(h for h in extra if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, with_headers)
