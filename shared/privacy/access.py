"""The access right: everything Accrue holds about one customer, as one JSON document.

The profile with its personal fields decrypted (or marked erased), the balance
read model, the whole ledger (oldest first), and tier history once tiers keep
one (``tierHistory``; empty until then). Nothing is written except the audit
record of the export itself (by the caller)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.app.corrections import entry_view
from shared.app.customers import public_view
from shared.clock import iso
from shared.store.layout import BALANCES, customer_pk
from shared.store.port import Query

if TYPE_CHECKING:
    from shared.platform import Platform

PAGE = 500
TIER_HISTORY_CONTAINER = "tierhistory"  # read if the tiers work adds it to the layout


def access_export(platform: "Platform", tenant_id: str, customer_id: str) -> dict[str, Any]:
    doc = platform.customers.get(tenant_id, customer_id)
    profile = public_view(doc)
    profile["personalData"] = platform.vault.open(doc)
    entries: list[dict[str, Any]] = []
    before = None
    while True:
        page = platform.ledger.entries(tenant_id, customer_id, before_seq=before, limit=PAGE)
        entries.extend(entry_view(e) for e in page)
        if len(page) < PAGE:
            break
        before = page[-1]["seq"]
    entries.sort(key=lambda e: e.get("seq", 0))
    balance = platform.store.read(BALANCES, customer_pk(tenant_id, customer_id), "balance")
    tiers: list[dict[str, Any]] = []
    from shared.store.layout import BY_NAME

    if TIER_HISTORY_CONTAINER in BY_NAME:
        tiers = [{k: v for k, v in d.items() if not k.startswith("_")} for d in platform.store.query(
            TIER_HISTORY_CONTAINER, Query(pk=customer_pk(tenant_id, customer_id), limit=10_000))]
    return {
        "tenantId": tenant_id, "customerId": customer_id, "exportedAt": iso(platform.clock.now()),
        "profile": profile,
        "balance": None if balance is None else {k: balance.get(k) for k in (
            "available", "pending", "lifetimeEarned", "ordersCredited", "lastEntryAt")},
        "ledger": entries, "tierHistory": tiers,
    }
