"""Rate limiting at the edge: every authenticated request is charged to its API
key and its tenant (``shared.ratelimit``) right after the key is verified, so a
request the limit refuses never reaches a route. Unauthenticated routes (health,
the OpenAPI document and the docs page) never call ``principal`` and are exempt.

A route declares what one call costs with ``@costs(...)``; undeclared, it costs 1.
The order batch costs one per order (``orders_in_body``), read from the body
before the route parses it.

Failed authentication is limited too, per client address: a request without a key,
or with a malformed, unknown or revoked one, is charged to that address's bucket
(``FAILED_AUTH_LIMITS``), so a 401 carries the same RateLimit headers as any other
answer, and an address that keeps presenting bad keys gets 429 with Retry-After
instead of an unbounded stream of key checks. A valid key is never refused by it.

The decision is left in the request's state; ``shared.api.route_contract`` writes the
``RateLimit-Policy`` / ``RateLimit`` headers (draft-ietf-httpapi-ratelimit-headers)
on the response, and ``Retry-After`` on a 429, whatever the route answered."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Awaitable, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from shared.app.auth import Principal
from shared.errors import NotFound
from shared.ratelimit.counters import LeasedCounter, SqliteWindowCounter, StoreWindowCounter, WindowCounter
from shared.ratelimit.policy import Decision, RateLimited, RateLimits
from shared.store.port import inline_reads
from shared.telemetry import tracing

F = TypeVar("F", bound=Callable[..., Any])
Cost = Callable[[Request], Awaitable[int]]

STATE_KEY = "rate_limit"
# Scope key: the request is refused at the edge (shared.api.edge) and charged one unit; its
# declared cost (e.g. the orders of a batch) would read a body that was refused.
REFUSAL = "accrue.edge_refusal"
DEFAULT_LIMITS = RateLimits()
# Failed authentications: 30 a minute per client address (a client whose key was revoked
# finds out long before), 10,000 a minute over all addresses. Counted under a pseudo-tenant
# that no real tenant id can equal (tenant ids cannot start with "_").
FAILED_AUTH_LIMITS = RateLimits(perKey=30, perTenant=10_000, windowSeconds=60)
FAILED_AUTH_SCOPE = "_failed-auth"
FAILED_AUTH_POLICY = "failed-auth"


def costs(cost: Cost) -> Callable[[F], F]:
    """Mark a route function: one call costs ``await cost(request)`` units."""

    def mark(fn: F) -> F:
        fn.__accrue_cost__ = cost  # type: ignore[attr-defined]
        return fn

    return mark


async def orders_in_body(request: Request) -> int:
    """The number of orders of a batch body; 1 when the body is not a batch (the
    route then refuses it with its own 4xx, which is charged as one request)."""
    try:
        # request.json(): the body FastAPI (or shared.api.batch_body, on a thread) already parsed.
        parsed = await request.json()
        # A dict, or the OrderBatch shared.api.batch_body built from it.
        orders = parsed.get("orders") if isinstance(parsed, dict) else getattr(parsed, "orders", None)
    except (ValueError, AttributeError):
        return 1
    return max(1, len(orders)) if isinstance(orders, list) else 1


def build_counter(platform: Any) -> WindowCounter:
    """The local platform's counter file beside its store, or the store-backed counter on Azure."""
    if platform.settings.store == "sqlite":
        return LeasedCounter(SqliteWindowCounter(platform.settings.data_dir / "ratelimits.db"))
    return LeasedCounter(StoreWindowCounter(platform.store))


def _limits(platform: Any, tenant_id: str) -> RateLimits:
    try:
        configured = platform.tenants.get(tenant_id).rate_limits
    except NotFound:  # the platform tenant of platform-admins has no settings document
        configured = None
    return configured or DEFAULT_LIMITS


async def admit(request: Request, who: Principal) -> None:
    """Charge this request; raise ``RateLimited`` (429) when it does not fit."""
    counter: WindowCounter | None = getattr(request.app.state, "rate_counter", None)
    if counter is None:
        return
    platform = request.app.state.platform
    tracing.set_attributes(tenant=who.tenant_id, key_id=who.key_id)  # the request span's (key id, never the key)
    route = request.scope.get("route")
    cost_of: Cost | None = getattr(getattr(route, "endpoint", None), "__accrue_cost__", None)
    cost = await cost_of(request) if cost_of is not None and not request.scope.get(REFUSAL) else 1

    def take() -> Decision:
        return counter.take(who.tenant_id, who.key_id, cost, _limits(platform, who.tenant_id),
                            platform.clock.now().timestamp())

    inline = counter.inline and inline_reads(platform.store)
    decision = take() if inline else await run_in_threadpool(take)
    request.state.rate_limit = decision
    if not decision.allowed:
        raise RateLimited(decision)


def client_address(request: Request) -> str:
    """The peer's address. Without one (the Functions host's ASGI bridge gives none), the last
    ``X-Forwarded-For`` entry: the one the platform's front end appended, which a client
    cannot forge (entries a client sends come before it)."""
    if request.client is not None and request.client.host:
        return request.client.host
    forwarded = [part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()]
    return forwarded[-1][:64] if forwarded else "unknown"


async def charge_failed_authentication(request: Request) -> None:
    """Charge one failed authentication to the client's address; ``RateLimited`` (429)
    when the address has used its allowance, so the caller answers 429, not 401."""
    counter: WindowCounter | None = getattr(request.app.state, "rate_counter", None)
    if counter is None:
        return
    platform, address = request.app.state.platform, "addr:" + client_address(request)

    def take() -> Decision:
        return counter.take(FAILED_AUTH_SCOPE, address, 1, FAILED_AUTH_LIMITS, platform.clock.now().timestamp())

    inline = counter.inline and inline_reads(platform.store)
    decision = replace(take() if inline else await run_in_threadpool(take), policy=FAILED_AUTH_POLICY)
    request.state.rate_limit = decision
    if not decision.allowed:
        raise RateLimited(decision)


def headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    """The draft's structured fields: the policy (quota ``q``, window ``w`` seconds)
    and the current state (remaining ``r``, seconds to reset ``t``)."""
    name = decision.policy
    out = [(b"ratelimit-policy", f'"{name}";q={decision.quota};w={decision.window_seconds}'.encode()),
           (b"ratelimit", f'"{name}";r={decision.remaining};t={decision.reset_seconds}'.encode())]
    if not decision.allowed:
        out.append((b"retry-after", str(decision.reset_seconds).encode()))
    return out
