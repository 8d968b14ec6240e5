"""A tenant's spending policy: how long a reservation may wait for its
confirmation, the size above which a redemption needs a person's approval, and
whether a cancelled or expired unused voucher gives its points back.

Stored as ``spend:policy`` in the tenant's partition of the ``tenants``
container (next to its settings); a tenant that never set it gets the defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shared.clock import Clock, iso
from shared.store.layout import TENANTS
from shared.store.port import DocumentStore
from shared.store.replace import Replaced, replace

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
    # What an unused voucher's points do when it is cancelled or expires (docs/vouchers.md):
    # "refund" gives its points back (an ADJUST entry), "forfeit" keeps them spent.
    voucher_cancel: Literal["refund", "forfeit"] = Field(default="refund", alias="voucherCancel")
    voucher_expiry: Literal["refund", "forfeit"] = Field(default="forfeit", alias="voucherExpiry")


_KEYS = ("reservationTtlSeconds", "reviewThresholdPoints", "voucherCancel", "voucherExpiry")


class SpendPolicies:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def get(self, tenant_id: str) -> SpendPolicy:
        doc = self._store.read(TENANTS, tenant_id, POLICY_ID)
        if doc is None:
            return SpendPolicy()
        return SpendPolicy.model_validate({k: v for k, v in doc.items() if k in _KEYS})

    def save(self, tenant_id: str, policy: SpendPolicy) -> Replaced:
        """Set the policy; exactly once per change (``shared.store.replace``). ``before`` and
        ``after`` are the policy as the API shows it (defaults when none was stored)."""
        fields = policy.model_dump(mode="json", by_alias=True)

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            return {"id": POLICY_ID, "pk": tenant_id, "docType": "spendPolicy", "tenantId": tenant_id, **fields,
                    "updatedAt": iso(self._clock.now())}

        result = replace(self._store, TENANTS, tenant_id, POLICY_ID, build,
                         content=lambda d: {k: d.get(k) for k in fields})
        return Replaced(_view(result.before), _view(result.after), result.changed)


def _view(doc: dict[str, Any] | None) -> dict[str, Any]:
    if doc is None:
        return SpendPolicy().model_dump(mode="json", by_alias=True)
    return SpendPolicy.model_validate({k: v for k, v in doc.items() if k in _KEYS}).model_dump(mode="json",
                                                                                             by_alias=True)
