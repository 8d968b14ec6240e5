"""Authentication at the edge: the API key from ``Authorization: Bearer`` or
``x-api-key``, verified by ``ApiKeys`` (cached), turned into a ``Principal``.

Every route except health and the OpenAPI document depends on ``principal``;
routes then declare the capability they need with ``requires(...)``, so the
role check is visible at each route."""

from __future__ import annotations

from typing import Annotated, Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from shared.app.auth import Principal
from shared.errors import Unauthenticated

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer acr_<keyId>_<secret>")
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="x-api-key: acr_<keyId>_<secret>")


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> Principal:
    presented = credentials.credentials if credentials is not None else header_key
    if not presented:
        raise Unauthenticated("an API key is required: Authorization: Bearer <key> or x-api-key: <key>")
    return request.app.state.platform.keys.verify(presented.strip())


def requires(capability: str) -> Callable[..., Principal]:
    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        who.require(capability)
        return who

    check.__name__ = f"requires_{capability}"
    return check
