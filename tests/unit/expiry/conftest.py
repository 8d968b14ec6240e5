"""Helpers of the expiry tests: tenants with an expiry policy, earning through the
real order flow, and direct ledger writes for spending."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.clock import ManualClock, iso
from shared.expiry.policy import ExpiryPolicy
from shared.ledger.entries import EntryDraft
from shared.ledger.service import Plan, TransactionRequest
from shared.platform import Platform
from shared.store.layout import LEDGER, customer_pk
from shared.store.port import Filter, Query
from tests.conftest import TenantKeys, add_customer, auth, drain, make_tenant, order_body


def policy_tenant(platform: Platform, tenant_id: str, time_zone: str = "UTC",
                  policy: dict[str, Any] | None = None, customers: tuple[str, ...] = ("c1",)) -> TenantKeys:
    keys = make_tenant(platform, tenant_id)
    settings = platform.tenants.get(tenant_id)
    platform.tenants.save(settings.model_copy(update={
        "time_zone": time_zone, "expiry_policy": ExpiryPolicy.model_validate(policy) if policy else None}))
    for customer_id in customers:
        add_customer(platform, tenant_id, customer_id)
    return keys


def earn(client, platform: Platform, clock: ManualClock, keys: TenantKeys, order_id: str, amount: str = "10.00",
         customer_id: str = "c1") -> None:
    """An order through the API and ingestion (10 points per EUR): its EARN is stamped by the policy."""
    response = client.post("/v1/orders", json=order_body(customer_id=customer_id, order_id=order_id, amount=amount,
                                                         timestamp=iso(clock.now())),
                           headers=auth(keys.merchant))
    assert response.status_code == 202, response.text
    drain(platform)


def write(platform: Platform, tenant_id: str, customer_id: str, key: str, *drafts: EntryDraft) -> list[dict]:
    """Entries straight through the ledger (what the spending services write)."""
    outcome = platform.ledger.append_one(TransactionRequest(tenant_id, customer_id, key, key,
                                                            lambda head: Plan(list(drafts), {})))
    drain(platform)
    return outcome.entries


def entries(platform: Platform, tenant_id: str, customer_id: str) -> list[dict]:
    return platform.store.query(LEDGER, Query(pk=customer_pk(tenant_id, customer_id),
                                              filters=(Filter("docType", "=", "entry"),), order_by="seq",
                                              limit=10_000))


def move_to(clock: ManualClock, moment: datetime) -> None:
    assert moment >= clock.now(), "the manual clock only moves forward"
    clock.advance(moment - clock.now())
