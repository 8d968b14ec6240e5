"""TenantCache: cached for its lifetime, nothing cached from a failed load, invalidation announces."""

from __future__ import annotations

import time

import pytest

from shared.app.tenant_changes import TenantCache


def test_a_value_is_loaded_once_within_its_lifetime_and_again_after() -> None:
    loads: list[str] = []
    cache: TenantCache[str] = TenantCache(ttl=0.2)

    def load() -> str:
        loads.append("x")
        return f"v{len(loads)}"

    assert cache.get("acme", load) == "v1" and cache.get("acme", load) == "v1"
    time.sleep(0.25)
    assert cache.get("acme", load) == "v2"


def test_a_failed_load_caches_nothing() -> None:
    cache: TenantCache[str] = TenantCache(ttl=60)

    def missing() -> str:
        raise LookupError("no such tenant")

    with pytest.raises(LookupError):
        cache.get("acme", missing)
    assert cache.get("acme", lambda: "created since") == "created since"


def test_invalidate_forgets_and_announces_forget_only_forgets() -> None:
    announced: list[str] = []
    cache: TenantCache[str] = TenantCache(ttl=60)
    cache.announce = announced.append
    cache.get("acme", lambda: "old")
    cache.forget("acme")
    assert cache.get("acme", lambda: "new") == "new" and announced == []
    cache.invalidate("acme")
    assert cache.get("acme", lambda: "newer") == "newer" and announced == ["acme"]
