"""Fair order of a delivery round: which delivery goes to the next free thread.

The delivery worker (``shared.webhooks.delivery``) puts a round's due work in a
``FairQueue`` (per tenant, per endpoint, oldest first) and asks ``take`` each
time a thread of its pool is free. ``take`` guarantees:

* caps: a tenant never has more than ``per_tenant`` deliveries in flight, an
  endpoint never more than ``per_endpoint``; so one tenant's hung endpoints
  hold at most ``per_tenant`` threads of the pool, each for at most the
  sender's deadline, and the rest of the pool serves the others;
* fairness: the next delivery goes to the tenant with the fewest in flight,
  ties to the one served least recently (round-robin), then to the one added
  first; inside a tenant, the same rule over its endpoints. A tenant with one
  due delivery is so served among the first ones of the round, whatever
  another tenant's backlog;
* ``stop``: an endpoint that gave no answer (or was disabled) is not offered
  again in this round; its remaining deliveries stay due for the next one.

Work not taken when the round's budget ends is not lost: it stays ``pending``
and due in the store, and since the worker adds tenants and endpoints oldest
due first, what waited longest goes first next round.

Plain data structure, no threads: the worker calls it from one thread only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


@dataclass
class _Lane(Generic[T]):
    key: str
    order: int
    items: deque[T] = field(default_factory=deque)
    in_flight: int = 0
    served: int = 0  # the tick of the last take (0: never)
    stopped: bool = False


@dataclass
class _Tenant(Generic[T]):
    key: str
    order: int
    endpoints: dict[str, _Lane[T]] = field(default_factory=dict)
    in_flight: int = 0
    served: int = 0


class FairQueue(Generic[T]):
    def __init__(self, per_tenant: int, per_endpoint: int) -> None:
        if per_tenant < 1 or per_endpoint < 1:
            raise ValueError("the per-tenant and per-endpoint caps must be at least 1")
        self.per_tenant = per_tenant
        self.per_endpoint = per_endpoint
        self._tenants: dict[str, _Tenant[T]] = {}
        self._tick = 0

    def add(self, tenant_id: str, endpoint_id: str, items: Iterable[T]) -> None:
        """Queue an endpoint's items (in the order given); call in priority order (oldest due first)."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = self._tenants[tenant_id] = _Tenant(tenant_id, len(self._tenants))
        lane = tenant.endpoints.get(endpoint_id)
        if lane is None:
            lane = tenant.endpoints[endpoint_id] = _Lane(endpoint_id, len(tenant.endpoints))
        lane.items.extend(items)

    def _ready(self, lane: _Lane[T]) -> bool:
        return not lane.stopped and bool(lane.items) and lane.in_flight < self.per_endpoint

    def take(self) -> tuple[str, str, T] | None:
        """The next (tenant, endpoint, item) to send, now counted in flight; None if nothing may go now."""
        best: tuple[tuple[int, int, int], _Tenant[T], _Lane[T]] | None = None
        for tenant in self._tenants.values():
            rank = (tenant.in_flight, tenant.served, tenant.order)
            if tenant.in_flight >= self.per_tenant or (best is not None and rank >= best[0]):
                continue  # capped, or no better than the best so far: its lanes need not be looked at
            lanes = [lane for lane in tenant.endpoints.values() if self._ready(lane)]
            if lanes:
                best = (rank, tenant, min(lanes, key=lambda e: (e.in_flight, e.served, e.order)))
        if best is None:
            return None
        _, tenant, lane = best
        self._tick += 1
        tenant.in_flight += 1
        lane.in_flight += 1
        tenant.served = lane.served = self._tick
        assert tenant.in_flight <= self.per_tenant and lane.in_flight <= self.per_endpoint
        return tenant.key, lane.key, lane.items.popleft()

    def done(self, tenant_id: str, endpoint_id: str, *, stop: bool = False) -> None:
        """A taken item finished; ``stop``: offer nothing more of this endpoint in this round."""
        tenant = self._tenants[tenant_id]
        lane = tenant.endpoints[endpoint_id]
        assert tenant.in_flight > 0 and lane.in_flight > 0, "done() without a matching take()"
        tenant.in_flight -= 1
        lane.in_flight -= 1
        if stop:
            lane.stopped = True

    def in_flight(self, tenant_id: str) -> int:
        tenant = self._tenants.get(tenant_id)
        return tenant.in_flight if tenant else 0

    def waiting(self, measure: Callable[[T], int] = lambda item: 1) -> int:
        """Items not taken yet, of endpoints not stopped (what the round leaves for the next one),
        each counted as ``measure`` says (the worker's items are units of several deliveries)."""
        return sum(measure(item) for tenant in self._tenants.values() for lane in tenant.endpoints.values()
                   if not lane.stopped for item in lane.items)
