"""Authentication at the edge: the API key from ``Authorization: Bearer`` or
``x-api-key``, verified by ``ApiKeys`` (cached), turned into a ``Principal``.

Every route except health and the OpenAPI document depends on ``principal``;
routes then declare the capability they need with ``requires(...)``, so the
role check is visible at each route. Each authenticated request is charged to
the key's and the tenant's rate limits here (``shared.api.ratelimit``).

The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its
thread pool, a hop that cost more than the check itself on every request. A key
the cache knows is answered on the event loop; only a cache miss (a store read
and an Argon2 hash) goes to the thread pool, so it never blocks the loop."""

from __future__ import annotations

from typing import Annotated, Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from shared.api.ratelimit import admit, charge_failed_authentication
from shared.app.auth import Principal
from shared.errors import Unauthenticated

bearer = HTTPBearer(auto_error=False, scheme_name="bearerKey", description="Authorization: Bearer acr_<keyId>_<secret>")
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="apiKeyHeader",
                              description="x-api-key: acr_<keyId>_<secret>")


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> Principal:
    return await authenticate(request, credentials, header_key)


async def principal_of(request: Request) -> Principal:
    """``principal`` without FastAPI's dependency resolution (``shared.api.hot_reads``): the
    same two security objects read the headers, the same ``authenticate`` decides."""
    return await authenticate(request, await bearer(request), await api_key_header(request))


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None,
                       header_key: str | None) -> Principal:
    """The key presented (Bearer first, then ``x-api-key``) verified, the failure or the request
    charged to the rate limits: ``Unauthenticated`` (401) or ``RateLimited`` (429) otherwise."""
    presented = credentials.credentials if credentials is not None else header_key
    try:
        if not presented:
            raise Unauthenticated("an API key is required: Authorization: Bearer <key> or x-api-key: <key>")
        keys, presented = request.app.state.platform.keys, presented.strip()
        known = keys.cached(presented)
        who = known if known is not None else await run_in_threadpool(keys.verify, presented)
    except Unauthenticated:
        await charge_failed_authentication(request)  # 429 instead once the address is over its allowance
        raise
    await admit(request, who)  # the key's and the tenant's rate limits (429 when over)
    return who


def requires(capability: str) -> Callable[..., Awaitable[Principal]]:
    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        who.require(capability)
        return who

    check.__name__ = f"requires_{capability}"
    return check
