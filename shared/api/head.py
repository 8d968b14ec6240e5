"""``HEAD`` on every ``GET`` route (RFC 9110, 9.3.2): the same answer as ``GET`` (status and
headers, ``Content-Length`` included) without the body.

FastAPI's routes serve only the methods they declare, so ``HEAD /health`` was a 405. This
middleware hands the app a ``HEAD`` request as a ``GET`` (so everything the ``GET`` does
runs: strict parameters, authentication, rate limits and their headers) and sends the
answer's start unchanged with the body dropped. The OpenAPI document lists the ``GET``
operations only; a 405's ``Allow`` names ``HEAD`` beside ``GET`` (shared/api/problems.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


class HeadAsGet:
    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": b"", "more_body": message.get("more_body", False)}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
