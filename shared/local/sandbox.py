"""The sandbox tenant provisioned on the first start of the local platform.

Idempotent: a second start finds the tenant and changes nothing (its keys were
printed once, at creation, and are stored only as Argon2id hashes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from shared.app.auth import IssuedKey, Role
from shared.app.customers import CustomerProfile
from shared.domain.orders import LineItem, Order
from shared.domain.tenants import TenantSettings
from shared.governance.dual_control import DualControlRequired
from shared.platform import Platform
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.sandbox")

SANDBOX = "sandbox"
PLATFORM_TENANT = "_platform"


@dataclass
class Provisioned:
    keys: list[IssuedKey]
    customers: list[str]
    orders: list[str]


def provision_sandbox(platform: Platform) -> Provisioned | None:
    if platform.tenants.exists(SANDBOX):
        return None
    platform.tenants.save(TenantSettings(tenantId=SANDBOX, name="Sandbox Coffee Co.", currency="EUR",
                                         timeZone="Europe/Paris", pointsPerUnit=Decimal(10)))
    keys = [
        platform.key_admin.issue(SANDBOX, Role.MERCHANT, None, label="sandbox merchant"),
        platform.key_admin.issue(SANDBOX, Role.TENANT_ADMIN, None, label="sandbox admin"),
    ]
    # The stack's very first platform-admin key (the bootstrap, recorded as such); if an
    # operator already issued one with the CLI, dual control allows no second one here.
    try:
        keys.append(platform.key_admin.issue_platform_admin(None, label="local platform admin",
                                                            reason="local sandbox"))
    except DualControlRequired:
        log.warning("a platform-admin key exists already: the sandbox issues none (dual control is on)",
                    extra=fields(tenant="sandbox"))
    today = platform.clock.now().date()
    customers = []
    for number, tags in enumerate((["vip"], [], ["newsletter"], [], ["student"]), start=1):
        customer_id = f"cust-{number:03d}"
        platform.customers.register(SANDBOX, CustomerProfile(
            customerId=customer_id, joinDate=today - timedelta(days=30 * number), tags=tags))
        customers.append(customer_id)
    now = platform.clock.now()
    orders = []
    for number in range(1, 11):
        customer_id = customers[number % len(customers)]
        items = (LineItem(sku="LATTE-M", category="coffee", quantity=number % 3 + 1, unitPrice=Decimal("3.60")),
                 LineItem(sku="CROISSANT", category="bakery", quantity=1, unitPrice=Decimal("2.10")))
        amount = sum((i.unit_price * i.quantity for i in items), Decimal(0))
        order = Order(customerId=customer_id, orderId=f"sample-{number:04d}", amount=amount, currency="EUR",
                      items=items, channel="store" if number % 2 else "web",
                      timestamp=now - timedelta(hours=number))
        orders.append(order.order_id)
        platform.intake.accept(SANDBOX, [order])
    return Provisioned(keys=keys, customers=customers, orders=orders)
