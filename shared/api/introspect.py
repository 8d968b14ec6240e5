"""Every route of the app with its full path, also inside included routers (this
FastAPI keeps an included router as a wrapper, ``_IncludedRouter``, instead of
copying its routes into the app). Used to mark deprecated routes and by the
tests that walk every route."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from fastapi.routing import APIRoute


def api_routes(routes: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes, prefix + route.include_context.prefix)
