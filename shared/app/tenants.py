"""Tenant settings, read through a short-lived cache (settings change rarely and
every order needs them)."""

from __future__ import annotations

from typing import Any

from shared.app.tenant_changes import TenantCache
from shared.domain.tenants import TenantSettings
from shared.errors import Conflict, DocumentExists, NotFound
from shared.store.layout import TENANTS
from shared.store.port import DocumentStore
from shared.store.replace import replace

CACHE_SECONDS = 5.0


class TenantDirectory:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store
        self.cache: TenantCache[TenantSettings] = TenantCache(CACHE_SECONDS)

    def get(self, tenant_id: str) -> TenantSettings:
        return self.cache.get(tenant_id, lambda: self._read(tenant_id))

    def _read(self, tenant_id: str) -> TenantSettings:
        doc = self._store.read(TENANTS, tenant_id, tenant_id)
        if doc is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return TenantSettings.from_doc(doc)

    def exists(self, tenant_id: str) -> bool:
        return self._store.read(TENANTS, tenant_id, tenant_id) is not None

    def create(self, settings: TenantSettings) -> TenantSettings:
        """A new tenant, exactly once: a conditional create of its settings document (the
        id is the tenant id), so of concurrent creations of one id exactly one succeeds
        and every other gets ``Conflict``, in any number of processes."""
        try:
            self._store.create(TENANTS, settings.to_doc())
        except DocumentExists:
            raise Conflict(f"tenant {settings.tenant_id!r} already exists") from None
        self.cache.invalidate(settings.tenant_id)
        return settings

    def change(self, tenant_id: str, changes: dict[str, Any]) -> tuple[TenantSettings, TenantSettings]:
        """Merge ``changes`` (settings fields by their JSON names) into the stored settings;
        returns (before, after). Exactly once per change (``shared.store.replace``): a
        concurrent change is merged onto the one before it, never over a stale read, so
        two admins changing different fields at once both keep their change."""
        def build(doc: dict[str, Any] | None) -> dict[str, Any]:
            if doc is None:
                raise NotFound(f"tenant {tenant_id!r} does not exist")
            current = TenantSettings.from_doc(doc).model_dump(mode="json", by_alias=True)
            return TenantSettings.model_validate({**current, **changes}).to_doc()

        result = replace(self._store, TENANTS, tenant_id, tenant_id, build,
                         content=lambda d: TenantSettings.from_doc(d).model_dump(mode="json", by_alias=True))
        if result.changed:
            self.cache.invalidate(tenant_id)
        assert result.before is not None, "a tenant's settings are never created by a change"
        return TenantSettings.from_doc(result.before), TenantSettings.from_doc(result.after)

    def save(self, settings: TenantSettings) -> TenantSettings:
        self._store.upsert(TENANTS, settings.to_doc())
        self.cache.invalidate(settings.tenant_id)
        return settings
