"""A tenant's fraud policy: velocity limits per customer and per tenant, and the
anomaly check's parameters.

Stored as ``fraud:policy`` in the tenant's partition of the ``tenants`` container
(next to its settings and spending policy); a tenant that never set one gets the
defaults. Every limit is optional (``None``: no limit). Exceeding a limit never
refuses an order: its points are held (a PENDING earn) and go to review.

Defaults, and why: velocity limits are off, because a sensible number depends on
the programme (a coffee shop and an airline differ by orders of magnitude); the
anomaly check is on (``multiplier`` 50 over a 30-day baseline, with a floor of
100,000 points a day), because it adapts to each customer's own history and the
floor keeps new customers and ordinary programmes clear of it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from shared.clock import Clock, iso
from shared.store.layout import TENANTS
from shared.store.port import DocumentStore
from shared.store.replace import Change, replace

POLICY_ID = "fraud:policy"
MAX_LIMIT = 10**15

Limit = StrictInt | None


def _limit(alias: str, description: str) -> Any:
    return Field(default=None, alias=alias, ge=1, le=MAX_LIMIT, description=description)


class CustomerLimits(BaseModel):
    """Per customer, over rolling windows ending now (hour = 60 min, day = 24 h, month = 30 days)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    points_per_hour: Limit = _limit("pointsPerHour", "points earned in the last hour")
    points_per_day: Limit = _limit("pointsPerDay", "points earned in the last 24 hours")
    points_per_month: Limit = _limit("pointsPerMonth", "points earned in the last 30 days")
    redemptions_per_hour: Limit = _limit("redemptionsPerHour", "redemptions (reservations included) in the last hour")
    # Transfers (shared/transfers): a sender over it is refused (nothing moves), not held.
    transfers_per_hour: Limit = _limit("transfersPerHour", "transfers sent to other customers in the last hour")
    distinct_cards_per_day: Limit = _limit("distinctCardsPerDay",
                                           "different cardFingerprint values on orders in the last 24 hours")
    distinct_devices_per_day: Limit = _limit("distinctDevicesPerDay",
                                             "different deviceId values on orders in the last 24 hours")

    @model_validator(mode="after")
    def _windows_nest(self) -> "CustomerLimits":
        _nested(self.points_per_hour, self.points_per_day, "pointsPerHour", "pointsPerDay")
        _nested(self.points_per_day, self.points_per_month, "pointsPerDay", "pointsPerMonth")
        _nested(self.points_per_hour, self.points_per_month, "pointsPerHour", "pointsPerMonth")
        return self


class TenantLimits(BaseModel):
    """Across all customers of the tenant, over fixed UTC windows (the clock hour, the UTC day)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    points_per_hour: Limit = _limit("pointsPerHour", "points earned by all customers in the current UTC hour")
    points_per_day: Limit = _limit("pointsPerDay", "points earned by all customers in the current UTC day")

    @model_validator(mode="after")
    def _windows_nest(self) -> "TenantLimits":
        _nested(self.points_per_hour, self.points_per_day, "pointsPerHour", "pointsPerDay")
        return self


class AnomalyPolicy(BaseModel):
    """Hold an earn when the customer's last 24 hours exceed ``multiplier`` times their
    daily average over the ``baselineDays`` before, and also exceed ``floorPoints``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: StrictBool = True
    multiplier: StrictInt = Field(default=50, ge=2, le=10_000)
    baseline_days: StrictInt = Field(default=30, alias="baselineDays", ge=7, le=365)
    floor_points: StrictInt = Field(default=100_000, alias="floorPoints", ge=0, le=MAX_LIMIT,
                                    description="never held below this many points in 24 hours (new customers)")


class FraudPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    customer: CustomerLimits = Field(default_factory=CustomerLimits)
    tenant: TenantLimits = Field(default_factory=TenantLimits)
    anomaly: AnomalyPolicy = Field(default_factory=AnomalyPolicy)

    def view(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def screens_earns(self) -> bool:
        c, t = self.customer, self.tenant
        return self.anomaly.enabled or any(v is not None for v in (
            c.points_per_hour, c.points_per_day, c.points_per_month, c.distinct_cards_per_day,
            c.distinct_devices_per_day, t.points_per_hour, t.points_per_day))


def _nested(shorter: int | None, longer: int | None, short_name: str, long_name: str) -> None:
    if shorter is not None and longer is not None and shorter > longer:
        raise ValueError(f"{short_name} ({shorter}) cannot exceed {long_name} ({longer}): "
                         "a shorter window is part of the longer one")


class FraudPolicies:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def get(self, tenant_id: str) -> FraudPolicy:
        doc = self._store.read(TENANTS, tenant_id, POLICY_ID)
        if doc is None:
            return FraudPolicy()
        return FraudPolicy.model_validate(doc["policy"])

    def save(self, tenant_id: str, policy: FraudPolicy) -> Change:
        """Replace the policy (shared.store.replace: a repeat changes nothing, concurrent saves are
        serialised); ``before`` is the policy it replaced (the default when none was saved)."""
        view = policy.view()
        done = replace(self._store, TENANTS, tenant_id, POLICY_ID,
                       lambda _current: {"id": POLICY_ID, "pk": tenant_id, "docType": "fraudPolicy",
                                         "tenantId": tenant_id, "policy": view, "updatedAt": iso(self._clock.now())},
                       content=lambda doc: doc.get("policy"))
        before = done.before["policy"] if done.before is not None else FraudPolicy().view()
        return Change(before, view, done.changed and before != view)
