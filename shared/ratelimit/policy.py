"""What a tenant's rate limits are and what a counter answers.

A fixed window per tenant (``windowSeconds``, default 60 s), two quotas inside it:
``perKey`` (every API key of the tenant, each on its own) and ``perTenant`` (all
its keys together). A request costs 1; an order batch costs one per order, so a
batch of 500 cannot slip past a per-minute order budget. A request is admitted
only if both quotas have room for its whole cost; a refused request consumes
nothing (a client backing off is not punished for having asked).

``evaluate`` is the one decision rule both counter adapters apply to the counts
they read, so SQLite and Cosmos DB cannot disagree about who is admitted."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.errors import AccrueError

MAX_QUOTA = 10_000_000


class RateLimits(BaseModel):
    """A tenant's limits (``TenantSettings.rateLimits``; absent: these defaults)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    per_key: int = Field(default=600_000, alias="perKey", ge=1, le=MAX_QUOTA,
                         description="requests (orders, for batches) per window for each API key")
    per_tenant: int = Field(default=1_200_000, alias="perTenant", ge=1, le=MAX_QUOTA,
                            description="requests (orders, for batches) per window for all the tenant's keys")
    window_seconds: int = Field(default=60, alias="windowSeconds", ge=1, le=3600)

    @model_validator(mode="after")
    def _key_within_tenant(self) -> "RateLimits":
        if self.per_key > self.per_tenant:
            raise ValueError("perKey cannot exceed perTenant")
        return self


@dataclass(frozen=True)
class Counts:
    """What a counter read for the current window (0 when the stored window is older)."""

    key: int
    tenant: int


@dataclass(frozen=True)
class Decision:
    """The answer for one request, and what the RateLimit headers advertise: the
    binding quota (the one with less room left) and when the window ends."""

    allowed: bool
    policy: str  # "key" or "tenant": the quota that binds
    quota: int
    remaining: int
    reset_seconds: int
    window_seconds: int
    cost: int

    def __post_init__(self) -> None:
        assert 0 <= self.remaining <= self.quota, "remaining outside the quota"
        assert 1 <= self.reset_seconds <= self.window_seconds, "reset outside the window"


def window_of(now: float, limits: RateLimits) -> int:
    """The number of the fixed window ``now`` (epoch seconds) falls in."""
    return math.floor(now / limits.window_seconds)


def evaluate(counts: Counts, cost: int, limits: RateLimits, now: float) -> Decision:
    """Admit iff both quotas have room for the whole cost; report the tighter one
    as it stands after this request."""
    assert cost >= 1, "a request costs at least 1"
    allowed = counts.key + cost <= limits.per_key and counts.tenant + cost <= limits.per_tenant
    used_key = counts.key + (cost if allowed else 0)
    used_tenant = counts.tenant + (cost if allowed else 0)
    room_key, room_tenant = limits.per_key - used_key, limits.per_tenant - used_tenant
    window_end = (window_of(now, limits) + 1) * limits.window_seconds
    reset = max(1, min(limits.window_seconds, math.ceil(window_end - now)))
    if room_key <= room_tenant:
        return Decision(allowed, "key", limits.per_key, max(0, room_key), reset, limits.window_seconds, cost)
    return Decision(allowed, "tenant", limits.per_tenant, max(0, room_tenant), reset, limits.window_seconds, cost)


class RateLimited(AccrueError):
    """429: the key's or the tenant's quota for this window has no room for the request."""

    code = "rate-limited"
    status = 429

    def __init__(self, decision: Decision) -> None:
        scope = "this API key" if decision.policy == "key" else "this tenant (all its keys)"
        if decision.cost > decision.quota:
            message = (f"the request costs {decision.cost} (one per order) but {scope} may spend at most "
                       f"{decision.quota} per {decision.window_seconds} s: send smaller batches")
        else:
            message = (f"{scope} has used its quota of {decision.quota} per {decision.window_seconds} s; "
                       f"retry after {decision.reset_seconds} s")
        super().__init__(message)
        self.decision = decision
