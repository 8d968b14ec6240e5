"""A sandbox tenant's sample data: customers, an active rule set, a reward catalogue
(one reward fulfilled by the partner simulator) and orders to earn on it.

Called by tenant provisioning (``shared.app.provisioning``) for ``sandbox: true``, on
Azure as locally; the local first start provisions its sandbox through the same path.
Every part is idempotent on its own ids (customer ids, reward ids, order ids, the
rule set's first version), so provisioning may repeat it after a crash at any point
and still end with one of each. The rule set is active before the orders are
accepted, so the sample orders earn under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from shared.app.customers import CustomerProfile
from shared.audit.log import Actor, HasActor
from shared.domain.orders import LineItem, Order
from shared.errors import Conflict
from shared.rules import models
from shared.spend.catalogue import NewReward
from shared.spend.simulator import SIMULATOR_ID

if TYPE_CHECKING:
    from shared.platform import Platform

RULE_SET_ID = "sandbox"
# Ten points per whole currency unit of the order: simple to check by hand in the simulator.
RULES = (
    'rule "base" then earn floor(order.total * 10) points\n'
)
CUSTOMER_TAGS = (["vip"], [], ["newsletter"], [], ["student"])
ORDERS = 10
REWARDS = (
    {"rewardId": "free-coffee", "name": "Free coffee", "pointsCost": 300, "stock": 1000, "perCustomerLimit": 5},
    {"rewardId": "pastry", "name": "Pastry of the day", "pointsCost": 200},
    {"rewardId": "voucher-5", "name": "5 EUR partner voucher (simulated partner)", "pointsCost": 500,
     "partnerId": SIMULATOR_ID, "partnerSku": "VOUCHER-5"},
)


@dataclass
class SampleData:
    customers: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    rewards: list[str] = field(default_factory=list)
    rule_set: str = RULE_SET_ID
    rule_version: int = 0


def seed(platform: "Platform", tenant_id: str, who: HasActor | Actor | None = None) -> SampleData:
    actor = who if who is not None else Actor("system:provisioning", "system")
    sample = SampleData()
    today = platform.clock.now().date()
    for number, tags in enumerate(CUSTOMER_TAGS, start=1):
        customer_id = f"cust-{number:03d}"
        try:
            platform.customers.register(tenant_id, CustomerProfile(
                customerId=customer_id, joinDate=today - timedelta(days=30 * number), tags=tags))
        except Conflict:
            pass  # an earlier attempt registered it
        sample.customers.append(customer_id)
    for reward in REWARDS:
        try:
            platform.spend.catalogue.create(tenant_id, NewReward.model_validate(reward))
        except Conflict:
            pass
        sample.rewards.append(reward["rewardId"])
    sample.rule_version = _active_rule_set(platform, tenant_id, actor)
    currency = platform.tenants.get(tenant_id).currency
    now = platform.clock.now()
    orders = []
    for number in range(1, ORDERS + 1):
        customer_id = sample.customers[number % len(sample.customers)]
        items = (LineItem(sku="LATTE-M", category="coffee", quantity=number % 3 + 1, unitPrice=Decimal("3.60")),
                 LineItem(sku="CROISSANT", category="bakery", quantity=1, unitPrice=Decimal("2.10")))
        amount = sum((i.unit_price * i.quantity for i in items), Decimal(0))
        orders.append(Order(customerId=customer_id, orderId=f"sample-{number:04d}", amount=amount,
                            currency=currency, items=items, channel="store" if number % 2 else "web",
                            timestamp=now - timedelta(hours=number)))
    # Idempotent on the order ids: a repeat is answered as a duplicate, never earned twice.
    platform.intake.accept(tenant_id, orders)
    sample.orders = [o.order_id for o in orders]
    return sample


def _active_rule_set(platform: "Platform", tenant_id: str, actor: HasActor | Actor) -> int:
    """Version 1 of the sample rule set, saved once and active."""
    active = platform.rule_sets.active(tenant_id)
    if active is not None:
        return active.version
    versions = platform.rule_sets.list_versions(tenant_id, RULE_SET_ID)
    reason = models.Reason(code="new-programme", text="sandbox sample programme")
    if versions:
        version = versions[0].version if len(versions) == 1 else min(v.version for v in versions)
    else:
        version = platform.rule_admin.save_version(tenant_id, models.SaveVersionInput(
            ruleSetId=RULE_SET_ID, source=RULES, reason=reason), actor).version
    platform.rule_admin.activate(tenant_id, models.ActivateInput(
        target=models.VersionRef(ruleSetId=RULE_SET_ID, version=version), reason=reason), actor)
    return version
