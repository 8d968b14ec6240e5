"""How a change of a tenant's configuration reaches every cache of it.

Tenant settings, rule routing, the tier programme and the webhook endpoints are
read on every order through short per-process caches (about 5 s). That TTL is
the bound on how stale another process may be (another Functions instance on
Azure). ``TenantChanges`` makes the common case immediate: a service that
changed a tenant's configuration forgets its own cache entry and calls
``announce``; the announcement goes to the ``peer`` callback, which the local
runner points at its worker process (``shared.local.worker_process``), whose
platform then calls ``forget`` on each registered cache.

Guarantee: ``forget`` never announces, so an announcement cannot echo back.
"""

from __future__ import annotations

from typing import Callable

Forget = Callable[[str], None]


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
