"""Rate limits per API key and per tenant (issue 13, part 4). See docs/api-policies.md.

``policy``: the tenant's limits (a tenant setting) and the decision a counter gives.
``counters``: the counter port and its two adapters (a SQLite file shared by every
local process; any ``DocumentStore`` with ETags, i.e. Cosmos DB on Azure)."""

from shared.ratelimit.counters import LeasedCounter, SqliteWindowCounter, StoreWindowCounter, WindowCounter
from shared.ratelimit.policy import Decision, RateLimits, RateLimited

__all__ = ["Decision", "LeasedCounter", "RateLimited", "RateLimits", "SqliteWindowCounter", "StoreWindowCounter", "WindowCounter"]
