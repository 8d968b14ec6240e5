"""How a change of a tenant's configuration reaches every cache of it.

Tenant settings, rule routing, the tier programme and the webhook endpoints are
read on every order through short per-process caches (``TenantCache``, about
5 s). That TTL is
the bound on how stale another process may be (another Functions instance on
Azure). ``TenantChanges`` makes the common case immediate: a service that
changed a tenant's configuration forgets its own cache entry and calls
``announce``; the announcement goes to the ``peer`` callback, which the local
runner points at its worker process (``shared.local.worker_process``), whose
platform then calls ``forget`` on each registered cache.

Guarantee: ``forget`` never announces, so an announcement cannot echo back.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

Forget = Callable[[str], None]
T = TypeVar("T")


class TenantCache(Generic[T]):
    """One kind of tenant configuration, cached per process for ``ttl`` seconds.

    ``invalidate`` is for the service that changed the configuration (forget it
    here, then ``announce`` it to the other processes); ``forget`` is what
    ``TenantChanges`` calls on an announcement, and never announces."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()
        # Set by the platform to ``TenantChanges.announce``; None: nobody to tell.
        self.announce: Forget | None = None

    def get(self, tenant_id: str, load: Callable[[], T]) -> T:
        """The cached value, else ``load()``'s (cached; if it raises, nothing is)."""
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(tenant_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = load()
        with self._lock:
            self._entries[tenant_id] = (now, value)
        return value

    def forget(self, tenant_id: str) -> None:
        with self._lock:
            self._entries.pop(tenant_id, None)

    def invalidate(self, tenant_id: str) -> None:
        """The tenant's configuration changed in this process: forget it, tell the others."""
        self.forget(tenant_id)
        if self.announce is not None:
            self.announce(tenant_id)


class TenantChanges:
    def __init__(self) -> None:
        self._caches: list[Forget] = []
        # Where announcements go: another process of this platform; None: nowhere.
        self.peer: Forget | None = None

    def register(self, forget: Forget) -> None:
        """A cache of tenant configuration in this process, by its eviction callable."""
        self._caches.append(forget)

    def forget(self, tenant_id: str) -> None:
        """Drop the tenant from every cache of this process (a peer announced a change)."""
        for forget in self._caches:
            forget(tenant_id)

    def announce(self, tenant_id: str) -> None:
        """This process changed the tenant's configuration: tell the peer, if any."""
        if self.peer is not None:
            self.peer(tenant_id)
