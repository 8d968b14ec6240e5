"""Request body limit, enforced before the body is parsed: an oversized body
gets a 413 problem whether or not it declares its length.

A declared length over the limit is refused before the body is read. A body sent
without a length (chunked) is counted as it is read: past the limit, reading raises
``_BodyTooLarge``, an ``HTTPException`` so that FastAPI, which turns any other error
met while reading a body into a 400 "There was an error parsing the body", passes it
on to the app's problem handler (413). Raised outside a route, it is answered here."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from shared.api.edge import refuse

MAX_BODY_BYTES = 1_048_576  # a 500-order batch with full line items fits well inside

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyLimit:
    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():  # bytes: ASCII digits only
            # Not a length (RFC 9110 8.6: 1*DIGIT): a malformed request, not a large one.
            await self._refuse(scope, receive, send, 400, "bad-request", "Bad request",
                               "the Content-Length header must be a number of bytes in digits")
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self._detail())
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                      send: Callable[[Message], Awaitable[None]], status: int = 413, code: str = "payload-too-large",
                      title: str = "Payload too large", detail: str | None = None) -> None:
        body = {"type": f"https://accrue.dev/problems/{code}", "title": title, "status": status,
                "detail": detail or self._detail(), "instance": scope.get("path")}
        # Authenticated and charged on a keyed route first (shared.api.edge): its RateLimit headers.
        await refuse(scope, receive, send, JSONResponse(body, status_code=status, media_type="application/problem+json"))

    def _detail(self) -> str:
        return f"the request body exceeds {self.max_bytes} bytes; send fewer orders per batch (max 500)"


class _BodyTooLarge(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)
