"""Builders of the tier tests: programmes, bare tenants (no API keys: fast enough for
hypothesis), and earns/refunds written through the real ledger and corrections."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from shared.app.corrections import RefundRequest
from shared.app.customers import CustomerProfile
from shared.ledger.entries import order_record_id
from shared.clock import iso
from shared.domain.tenants import TenantSettings
from shared.ledger.entries import EntryDraft, EntryType
from shared.ledger.service import Plan, TransactionRequest
from shared.platform import Platform
from shared.tiers.model import TierProgram

GOLDEN = {
    "windowMonths": 12,
    "tiers": [
        {"name": "silver", "minPoints": 100, "multiplier": "1.25"},
        {"name": "gold", "minPoints": 500, "multiplier": "1.5"},
        {"name": "platinum", "minPoints": 2000, "multiplier": "2"},
    ],
    "evaluation": {"frequency": "monthly", "dayOfMonth": 1},
    "grace": {"kind": "nextEvaluation"},
}


def program(**changes: Any) -> TierProgram:
    return TierProgram.model_validate({**GOLDEN, **changes})


def bare_tenant(platform: Platform, tenant_id: str, customers: tuple[str, ...] = ("c1",),
                time_zone: str = "Europe/Paris") -> None:
    platform.tenants.save(TenantSettings(tenantId=tenant_id, name=tenant_id, currency="EUR", timeZone=time_zone))
    for customer_id in customers:
        platform.customers.register(tenant_id, CustomerProfile(customerId=customer_id, joinDate=date(2025, 1, 1)))


def earn(platform: Platform, tenant_id: str, customer_id: str, order_id: str, points: int,
         amount: str = "10.00") -> None:
    """An order credited with ``points``: EARN entry and order record in one ledger append."""
    now = iso(platform.clock.now())
    record = {"id": order_record_id(order_id), "docType": "order", "orderId": order_id, "status": "credited",
              "points": points, "acceptedAt": now,
              "order": {"orderId": order_id, "customerId": customer_id, "amount": amount, "currency": "EUR",
                        "timestamp": now, "channel": "web", "items": []}}

    def plan(head):  # type: ignore[no-untyped-def]
        return Plan(entries=[EntryDraft(EntryType.EARN, points, reference_order_id=order_id, counts_order=True)],
                    outcome={"status": "credited", "points": points}, records=[record])

    platform.ledger.append_one(TransactionRequest(tenant_id, customer_id, f"order:{order_id}", order_id, plan))


def refund(platform: Platform, tenant_id: str, order_id: str, refund_id: str, amount: Decimal) -> int:
    """A refund through the real corrections service; returns the points clawed back."""
    outcome = platform.corrections.refund(tenant_id, order_id, RefundRequest(
        refundId=refund_id, amount=amount, currency="EUR"))
    return outcome.outcome["pointsClawedBack"]
