"""Tenant settings, read through a short-lived cache (settings change rarely and
every order needs them)."""

from __future__ import annotations

import threading
import time
from typing import Callable

from shared.domain.tenants import TenantSettings
from shared.errors import NotFound
from shared.store.layout import TENANTS
from shared.store.port import DocumentStore

CACHE_SECONDS = 5.0


class TenantDirectory:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store
        self._cache: dict[str, tuple[float, TenantSettings]] = {}
        self._lock = threading.Lock()
        # Tells the platform's other processes (shared.app.tenant_changes); None: none.
        self.announce: Callable[[str], None] | None = None

    def get(self, tenant_id: str) -> TenantSettings:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant_id)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        doc = self._store.read(TENANTS, tenant_id, tenant_id)
        if doc is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        settings = TenantSettings.from_doc(doc)
        with self._lock:
            self._cache[tenant_id] = (now, settings)
        return settings

    def exists(self, tenant_id: str) -> bool:
        return self._store.read(TENANTS, tenant_id, tenant_id) is not None

    def save(self, settings: TenantSettings) -> TenantSettings:
        self._store.upsert(TENANTS, settings.to_doc())
        self.invalidate(settings.tenant_id)
        return settings

    def forget(self, tenant_id: str) -> None:
        with self._lock:
            self._cache.pop(tenant_id, None)

    def invalidate(self, tenant_id: str) -> None:
        """The tenant's settings changed here: forget them, and tell the other processes."""
        self.forget(tenant_id)
        if self.announce is not None:
            self.announce(tenant_id)
