"""Batched loading: one store call per kind of document per request tick, not one per
customer (no N+1). A 100-customer page that asks every customer's balance and tier costs
the page query plus one ``read_many`` per loader, whatever the page size.

Loaders live for one request (``Context.loaders``): their cache never outlives it, so a
later request sees fresh documents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.dataloader import DataLoader

from shared.app.projections import BALANCE_ID
from shared.store.layout import BALANCES, CUSTOMERS, customer_pk
from shared.store.port import read_many


@dataclass
class Loaders:
    balances: DataLoader[str, dict[str, Any] | None]
    customers: DataLoader[str, dict[str, Any] | None]


def build(context: Any, cache: bool = True) -> Loaders:
    async def balances(customer_ids: list[str]) -> list[dict[str, Any] | None]:
        tenant_id = context.tenant_id
        keys = [(customer_pk(tenant_id, c), BALANCE_ID) for c in customer_ids]
        return await context.call(read_many, context.platform.store, BALANCES, keys)

    async def customers(customer_ids: list[str]) -> list[dict[str, Any] | None]:
        tenant_id = context.tenant_id
        keys = [(customer_pk(tenant_id, c), c) for c in customer_ids]
        return await context.call(read_many, context.platform.store, CUSTOMERS, keys)

    return Loaders(balances=DataLoader(load_fn=balances, cache=cache),
                   customers=DataLoader(load_fn=customers, cache=cache))
