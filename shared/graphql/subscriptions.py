"""The ``Subscription`` root: ``transactionCreated``, ``orderDecided``, ``tierChanged`` and
``redemptionChanged``, fed by the change feed (``shared.graphql.feed``), filtered by the key's
tenant and, where given, by customer. Each takes ``after`` (an event's ``cursor``) to resume
after a reconnection: the events committed meanwhile are replayed first."""

from __future__ import annotations

from typing import AsyncGenerator, Optional

import strawberry
from graphql import GraphQLError

from shared.errors import AccrueError
from shared.graphql.auth import require, same_tenant
from shared.graphql.feed import Event, hub_of
from shared.graphql.types import LedgerEntry, Order, TierChange

Info = strawberry.Info


@strawberry.type
class TierChangeEvent:
    customer_id: str
    change: TierChange
    cursor: str


@strawberry.type
class RedemptionEvent:
    redemption_id: str
    customer_id: str
    # "created" (reserved, completed or in review) or "settled" (with the resolution).
    event: str
    kind: Optional[str]
    points: Optional[int]
    resolution: Optional[str]
    at: Optional[str]
    cursor: str


def _transaction(event: Event) -> "Transaction":
    from shared.graphql.types import Transaction
    first = event.docs[0]
    return Transaction(id=first.get("transactionId", ""), customer_id=event.customer_id,
                       entries=[LedgerEntry.of(d) for d in event.docs], created_at=first.get("createdAt", ""),
                       cursor=event.cursor)


def _order(event: Event) -> Order:
    doc = event.docs[0]
    view = {k: doc.get(k) for k in ("orderId", "customerId", "status", "points", "ruleSetId", "ruleSetVersion",
                                    "arm", "reason", "acceptedAt")}
    view["transactionId"] = doc.get("transactionId")
    view["decidedAt"] = doc.get("createdAt")
    return Order.of(view, cursor=event.cursor)


def _redemption(event: Event) -> RedemptionEvent:
    doc = event.docs[0]
    settled = doc.get("docType") == "settlement"
    return RedemptionEvent(redemption_id=doc.get("redemptionId", ""), customer_id=event.customer_id,
                           event="settled" if settled else "created", kind=doc.get("kind"),
                           points=doc.get("points"), resolution=doc.get("resolution") if settled else None,
                           at=doc.get("createdAt"), cursor=event.cursor)


async def _events(info: Info, kind: str, tenant_id: Optional[str], customer_id: Optional[str],
                  after: Optional[str]) -> AsyncGenerator[Event, None]:
    # Subscription errors bypass the execution extensions (``ErrorCodes``): code them here.
    try:
        require(info, "read")
        tenant = same_tenant(info, tenant_id)
        async for event in hub_of(info.context.platform).subscribe(tenant, kind, customer_id, after):
            yield event
    except AccrueError as error:
        raise GraphQLError(error.message, extensions={"code": error.code, "status": error.status}) from error


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Each ledger transaction as it commits (all its entries).")
    async def transaction_created(self, info: Info, tenant_id: Optional[str] = None,
                                  customer_id: Optional[str] = None,
                                  after: Optional[str] = None) -> AsyncGenerator["Transaction", None]:
        async for event in _events(info, "transaction", tenant_id, customer_id, after):
            yield _transaction(event)

    @strawberry.subscription(description="Each order as ingestion decides it: credited, held or rejected.")
    async def order_decided(self, info: Info, tenant_id: Optional[str] = None, customer_id: Optional[str] = None,
                            after: Optional[str] = None) -> AsyncGenerator[Order, None]:
        async for event in _events(info, "order", tenant_id, customer_id, after):
            yield _order(event)

    @strawberry.subscription(description="Each change of a customer's tier.")
    async def tier_changed(self, info: Info, tenant_id: Optional[str] = None, customer_id: Optional[str] = None,
                           after: Optional[str] = None) -> AsyncGenerator[TierChangeEvent, None]:
        async for event in _events(info, "tier", tenant_id, customer_id, after):
            yield TierChangeEvent(customer_id=event.customer_id, change=TierChange.of(event.docs[0]),
                                  cursor=event.cursor)

    @strawberry.subscription(description="Each redemption created or settled.")
    async def redemption_changed(self, info: Info, tenant_id: Optional[str] = None,
                                 customer_id: Optional[str] = None,
                                 after: Optional[str] = None) -> AsyncGenerator[RedemptionEvent, None]:
        async for event in _events(info, "redemption", tenant_id, customer_id, after):
            yield _redemption(event)


from shared.graphql.types import Transaction  # noqa: E402  (the annotation above names it)
