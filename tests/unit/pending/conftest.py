"""Helpers of the pending-points tests: a tenant with a return window, orders through
the real API and ingestion, and the ledger as written."""

from __future__ import annotations

from typing import Any

from shared.expiry.policy import ExpiryPolicy
from shared.platform import Platform
from tests.conftest import TenantKeys, add_customer, make_tenant


def window_tenant(platform: Platform, tenant_id: str, days: int = 14, time_zone: str = "Europe/Paris",
                  policy: dict[str, Any] | None = None, customers: tuple[str, ...] = ("c1",)) -> TenantKeys:
    keys = make_tenant(platform, tenant_id)
    settings = platform.tenants.get(tenant_id)
    platform.tenants.save(settings.model_copy(update={
        "time_zone": time_zone, "pending_days": days,
        "expiry_policy": ExpiryPolicy.model_validate(policy) if policy else None}))
    for customer_id in customers:
        add_customer(platform, tenant_id, customer_id)
    return keys
