"""Builders shared by the rule tests: orders, customers and tenants with sane defaults."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from shared.domain.orders import Order
from shared.domain.tenants import TenantSettings
from shared.earning import CustomerContext

TENANT = TenantSettings(tenant_id="t1", name="Test", time_zone="Europe/Paris")
WASM_TENANT = TenantSettings(tenant_id="t1", name="Test", time_zone="Europe/Paris", evaluator="wasm")


def order(amount: str = "100.00", items: tuple = (), channel: str = "web",
          timestamp: str = "2026-05-01T10:00:00Z", order_id: str = "o1", customer_id: str = "c1") -> Order:
    return Order.model_validate({
        "customerId": customer_id, "orderId": order_id, "amount": amount, "currency": "EUR", "channel": channel,
        "timestamp": timestamp,
        "items": [{"sku": sku, "category": category, "quantity": quantity, "unitPrice": str(price)}
                  for sku, category, quantity, price in items],
    })


def customer(tier: str | None = None, tags: tuple[str, ...] = (), lifetime_points: int = 0, order_count: int = 0,
             join_date: date = date(2025, 1, 1), customer_id: str = "c1") -> CustomerContext:
    return CustomerContext(customer_id, join_date, tier, tags, lifetime_points, order_count)


def dec(text: str) -> Decimal:
    return Decimal(text)
