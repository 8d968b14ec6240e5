"""Dependencies shared by the routes."""

from __future__ import annotations

from fastapi import Request

from shared.platform import Platform


async def platform(request: Request) -> Platform:
    # async: a plain def dependency would cost a thread-pool hop per request.
    return request.app.state.platform
