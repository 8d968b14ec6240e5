"""The narrow rules interface that ingestion calls to turn an order into points.

Ingestion knows nothing of how points are computed: it asks the tenant's
``EarningRules`` for an ``EarnResult`` and appends what it says. The rule
language (``shared.rules``) implements this interface; until a tenant activates
a rule set, ``PointsPerCurrencyUnitRate`` does, from the tenant's settings.

Evaluation never raises for a rule's own failure: an evaluator records the
failure in the trace and returns a defined result, so an order is never lost to
a bad rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Protocol

from shared.domain.orders import Order
from shared.domain.tenants import TenantSettings


@dataclass(frozen=True)
class CustomerContext:
    """What a rule may know of the customer, as of just before this order."""

    customer_id: str
    join_date: date
    tier: str | None = None
    tags: tuple[str, ...] = ()
    lifetime_points: int = 0
    order_count: int = 0
    # The earning multiplier of the customer's tier (``shared.tiers``); 1 without a tier.
    tier_multiplier: Decimal = Decimal(1)


@dataclass(frozen=True)
class EarnLot:
    """Points earned by one action, with their own expiry (None: tenant policy)."""

    points: int
    expires_at: datetime | None = None
    rule: str | None = None
    # The rule's own return window in days (``pending for N days``); None: the tenant's.
    pending_days: int | None = None
    # The wallet credited (``into "promo"``, docs/wallets.md); None: the tenant's default wallet.
    wallet: str | None = None


@dataclass(frozen=True)
class EarnResult:
    lots: tuple[EarnLot, ...]
    rule_set_id: str
    rule_set_version: int | None = None
    arm: str | None = None
    tags_to_add: tuple[str, ...] = ()
    trace: tuple[dict[str, Any], ...] = field(default=())

    @property
    def points(self) -> int:
        return sum(lot.points for lot in self.lots)


class EarningRules(Protocol):
    def evaluate(self, tenant: TenantSettings, order: Order, customer: CustomerContext) -> EarnResult: ...


class EarningRulesProvider(Protocol):
    def for_tenant(self, tenant: TenantSettings, customer_id: str) -> EarningRules:
        """The rules that apply to this customer's next order (the A/B arm, if any)."""
        ...


class PointsPerCurrencyUnitRate:
    """Interim rule: ``floor(order.amount * tenant.points_per_unit)`` points."""

    def evaluate(self, tenant: TenantSettings, order: Order, customer: CustomerContext) -> EarnResult:
        points = int((order.amount * tenant.points_per_unit).to_integral_value(rounding=ROUND_FLOOR))
        assert points >= 0
        rule_id = f"rate:{tenant.points_per_unit}"
        return EarnResult(
            lots=(EarnLot(points=points, rule=rule_id),),
            rule_set_id=rule_id,
            trace=({"rule": rule_id, "matched": True, "points": points},),
        )


class RateOnlyProvider:
    """Provider used until the rule language is wired in: every tenant earns by rate."""

    def __init__(self) -> None:
        self._rate = PointsPerCurrencyUnitRate()

    def for_tenant(self, tenant: TenantSettings, customer_id: str) -> EarningRules:
        return self._rate
