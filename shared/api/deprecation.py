"""Retiring a route inside /v1: mark it with ``@deprecated(...)`` and it answers
every call with ``Deprecation`` (RFC 9745: when it was deprecated, as a
structured-field date), ``Sunset`` (RFC 8594: the HTTP-date after which it may
stop answering) and a ``Link`` to its successor (``rel="deprecation"`` for the
notice, ``rel="successor-version"`` for the route to use instead), and is flagged
``deprecated: true`` in the OpenAPI document. ``mark_routes`` (called by
``create_app``) turns the marks into the OpenAPI flag; ``shared.api.route_contract``
writes the headers. See docs/api-policies.md, "Versioning and deprecation"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Callable, TypeVar

from fastapi import FastAPI

from shared.api.introspect import api_routes

F = TypeVar("F", bound=Callable[..., Any])

POLICY_URL = "https://accrue.dev/docs/api-policies#versioning-and-deprecation"


@dataclass(frozen=True)
class Deprecation:
    since: datetime
    sunset: datetime
    successor: str  # the route to use instead, e.g. "/v1/reviews?kind=redemption"

    def __post_init__(self) -> None:
        assert self.since.tzinfo is not None and self.sunset.tzinfo is not None, "aware instants only"
        assert self.sunset > self.since, "a route is retired after it is deprecated"

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"deprecation", f"@{int(self.since.timestamp())}".encode()),
            (b"sunset", format_datetime(self.sunset.astimezone(timezone.utc), usegmt=True).encode()),
            (b"link", f'<{POLICY_URL}>; rel="deprecation"; type="text/html", '
                      f'<{self.successor}>; rel="successor-version"'.encode()),
        ]


def deprecated(since: datetime, sunset: datetime, successor: str) -> Callable[[F], F]:
    """Mark a route function as being retired. Put it below ``@router.get(...)``,
    directly on the function, so the router registers the marked function."""
    notice = Deprecation(since, sunset, successor)

    def mark(fn: F) -> F:
        fn.__accrue_deprecation__ = notice  # type: ignore[attr-defined]
        return fn

    return mark


def notice_of(route: Any) -> Deprecation | None:
    return getattr(getattr(route, "endpoint", None), "__accrue_deprecation__", None)


def mark_routes(app: FastAPI) -> None:
    """Flag every marked route ``deprecated`` in the OpenAPI document."""
    for _, route in api_routes(app.routes):
        if notice_of(route) is not None:
            route.deprecated = True
    app.openapi_schema = None
