"""Dependencies shared by the routes."""

from __future__ import annotations

from fastapi import Request

from shared.platform import Platform


def platform(request: Request) -> Platform:
    return request.app.state.platform
