"""The subscription fields through the schema (in process): ``orderDecided`` filtered by
customer with the order's outcome, ``transactionCreated`` with the customer loaded, and the
role and tenant checks, replayed from the start of the feed so no timing is involved."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.app.auth import Principal, Role
from shared.graphql import loaders
from shared.graphql.context import Context
from shared.graphql.feed import hub_of
from shared.graphql.schema import schema
from shared.graphql.settings import GraphQLSettings
from tests.conftest import auth, drain, order_body


def _context(platform, tenant_id: str = "acme", role: Role = Role.ANALYST) -> Context:
    context = Context(platform=platform, who=Principal("k1", tenant_id, role), settings=GraphQLSettings())
    context.loaders = loaders.build(context, cache=False)
    return context


async def _first(platform, query: str, count: int = 1, **kwargs: Any) -> list[Any]:
    stream = await schema.subscribe(query, context_value=_context(platform, **kwargs))
    out = []
    if not hasattr(stream, "__aiter__"):  # refused before it started
        return [stream]
    async for result in stream:
        out.append(result)
        if len(out) == count or result.errors:
            break
    await stream.aclose()
    return out


def test_order_decided_for_one_customer_and_transaction_created_with_its_customer(client, platform, tenant) -> None:
    for customer, order_id in (("c1", "s1"), ("c2", "s2"), ("c1", "s3")):
        assert client.post("/v1/orders", json=order_body(customer, order_id, "4.00"),
                           headers=auth(tenant.merchant)).status_code == 202
    drain(platform)

    async def scenario() -> None:
        orders = await _first(platform, 'subscription { orderDecided(customerId: "c1", after: "0") '
                                         '{ orderId customerId status points decidedAt cursor dataAsOf } }', 2)
        assert [(r.data["orderDecided"]["orderId"], r.data["orderDecided"]["status"],
                 r.data["orderDecided"]["points"]) for r in orders] == [("s1", "credited", 40), ("s3", "credited", 40)]
        assert orders[0].data["orderDecided"]["dataAsOf"] == orders[0].data["orderDecided"]["decidedAt"]
        [created] = await _first(platform, 'subscription { transactionCreated(customerId: "c2", after: "0") '
                                           '{ id customer { id pointsBalance } entries { signedAmount } } }')
        assert created.data["transactionCreated"]["customer"] == {"id": "c2", "pointsBalance": 40}
        assert created.data["transactionCreated"]["entries"] == [{"signedAmount": 40}]

    try:
        asyncio.run(scenario())
    finally:
        hub_of(platform).stop()


def test_subscriptions_check_the_tenant_and_the_role(platform, tenant) -> None:
    async def scenario() -> None:
        [other] = await _first(platform, 'subscription { tierChanged(tenantId: "globex") { customerId } }')
        assert other.errors[0].extensions["code"] == "tenant-mismatch"
        [admin_only] = await _first(platform, "subscription { redemptionChanged { redemptionId } }",
                                    role=Role.PLATFORM_ADMIN)
        assert admin_only.errors[0].extensions["code"] == "forbidden"

    try:
        asyncio.run(scenario())
    finally:
        hub_of(platform).stop()
