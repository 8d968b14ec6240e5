"""A tenant's spending policy: how long a reservation may wait for its
confirmation, and the size above which a redemption needs a person's approval.

Stored as ``spend:policy`` in the tenant's partition of the ``tenants``
container (next to its settings); a tenant that never set it gets the defaults.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shared.clock import Clock, iso
from shared.store.layout import TENANTS
from shared.store.port import DocumentStore

POLICY_ID = "spend:policy"
DEFAULT_TTL_SECONDS = 15 * 60


class SpendPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # At least a minute: the expiry job's watermark assumes a reservation becomes
    # visible well before it expires (shared/spend/redemptions.py).
    reservation_ttl_seconds: StrictInt = Field(default=DEFAULT_TTL_SECONDS, alias="reservationTtlSeconds",
                                               ge=60, le=7 * 24 * 3600)
    # Redemptions and conversions of at least this many points go to manual review
    # instead of being confirmed; None: never.
    review_threshold_points: StrictInt | None = Field(default=None, alias="reviewThresholdPoints", ge=1, le=10**15)


class SpendPolicies:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def get(self, tenant_id: str) -> SpendPolicy:
        doc = self._store.read(TENANTS, tenant_id, POLICY_ID)
        if doc is None:
            return SpendPolicy()
        return SpendPolicy.model_validate({k: v for k, v in doc.items() if k in ("reservationTtlSeconds",
                                                                                  "reviewThresholdPoints")})

    def save(self, tenant_id: str, policy: SpendPolicy) -> dict[str, Any]:
        self._store.upsert(TENANTS, {"id": POLICY_ID, "pk": tenant_id, "docType": "spendPolicy", "tenantId": tenant_id,
                                     **policy.model_dump(mode="json", by_alias=True),
                                     "updatedAt": iso(self._clock.now())})
        return policy.model_dump(mode="json", by_alias=True)
