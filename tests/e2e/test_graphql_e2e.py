"""GraphQL against the local platform as users run it (uvicorn in a subprocess): queries with
``gql`` over HTTP, and subscriptions with ``gql`` over WebSocket (graphql-transport-ws) that
receive transactions committed by orders sent over REST, including after a reconnection
(replayed from the last cursor) and never across tenants or keys."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportConnectionFailed, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.e2e.conftest import LocalPlatform

pytestmark = pytest.mark.slow

LIVE = """subscription Live($after: String) {
  transactionCreated(tenantId: "sandbox", customerId: "cust-001", after: $after) {
    id cursor createdAt dataAsOf
    customer { id tier pointsBalance }
    entries { entryType signedAmount status referenceOrderId }
  }
}"""


def _order(order_id: str, amount: str = "10.00") -> dict:
    return {"customerId": "cust-001", "orderId": order_id, "amount": amount, "currency": "EUR",
            "timestamp": "2026-11-20T09:30:00+01:00", "channel": "store",
            "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 1, "unitPrice": amount}]}


def _ws(platform: LocalPlatform, key: str) -> WebsocketsTransport:
    return WebsocketsTransport(url=platform.url.replace("http://", "ws://") + "/graphql/v1",
                               init_payload={"Authorization": f"Bearer {key}"}, ack_timeout=10)


async def _send(platform: LocalPlatform, key: str, order_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=platform.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=15) as http:
        sent = await http.post("/v1/orders?wait=10", json=_order(order_id))
        assert sent.status_code in (200, 202), sent.text
        for _ in range(12):  # a busy machine: the worker processes may take a while
            if sent.json()["status"] != "queued":
                break
            sent = await http.get(f"/v1/orders/{order_id}?wait=10")
        assert sent.json()["status"] == "credited", sent.text
        return sent.json()


async def _until(subscription: Any, order_id: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for result in subscription:
            transaction = result["transactionCreated"]
            seen.append(transaction)
            if any(e.get("referenceOrderId") == order_id for e in transaction["entries"]):
                return transaction
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(first(), timeout=20)


def test_queries_and_a_subscription_that_survives_a_reconnection(local_platform: LocalPlatform) -> None:
    merchant = local_platform.keys["merchant"]

    async def scenario() -> None:
        transport = HTTPXAsyncTransport(local_platform.url + "/graphql/v1",
                                        headers={"Authorization": f"Bearer {merchant}"})
        async with Client(transport=transport) as session:
            result = await session.execute(GraphQLRequest(
                '{ customers(tenantId: "sandbox") { nodes { id } } __schema { queryType { name } } }'))
            assert "cust-001" in [n["id"] for n in result["customers"]["nodes"]]
            assert result["__schema"]["queryType"]["name"] == "Query"  # introspection: on for the sandbox

        await _send(local_platform, merchant, "gql-1")  # committed before anyone subscribes
        seen: list[dict[str, Any]] = []
        async with Client(transport=_ws(local_platform, merchant)) as live:
            subscription = live.subscribe(GraphQLRequest(LIVE, variable_values={"after": "0"}))
            replayed = await _until(subscription, "gql-1", seen)  # replayed from the start of the feed
            assert replayed["customer"]["id"] == "cust-001"
            sender = asyncio.create_task(_send(local_platform, merchant, "gql-2"))
            live_one = await _until(subscription, "gql-2", seen)  # committed while subscribed
            await sender
            earn = [e for e in live_one["entries"] if e["referenceOrderId"] == "gql-2"][0]
            assert earn["signedAmount"] > 0 and earn["status"] == "COMMITTED"
            assert live_one["dataAsOf"] == live_one["createdAt"]
            cursor = live_one["cursor"]
            await subscription.aclose()

        # Disconnected: this transaction is committed while nobody listens.
        await _send(local_platform, merchant, "gql-3")
        async with Client(transport=_ws(local_platform, merchant)) as live:
            resumed = live.subscribe(GraphQLRequest(LIVE, variable_values={"after": cursor}))
            after: list[dict[str, Any]] = []
            missed = await _until(resumed, "gql-3", after)
            assert after == [missed], "exactly the missed transaction first, nothing before the cursor again"
            await resumed.aclose()
        ids = [t["id"] for t in seen + after]
        assert len(ids) == len(set(ids)), "no transaction delivered twice"

    asyncio.run(scenario())


def test_a_subscription_refuses_a_bad_key_and_another_tenant(local_platform: LocalPlatform) -> None:
    merchant = local_platform.keys["merchant"]

    async def scenario() -> None:
        with pytest.raises(TransportConnectionFailed) as closed:
            async with Client(transport=_ws(local_platform, "acr_aaaaaaaaaaaa_" + "x" * 43)) as live:
                await live.execute(GraphQLRequest("{ viewer { tenantId } }"))
        cause = closed.value.__cause__
        assert getattr(getattr(cause, "rcvd", None), "code", None) == 4403, repr(cause)  # closed before any query
        async with Client(transport=_ws(local_platform, merchant)) as live:
            other = live.subscribe(GraphQLRequest(
                'subscription { orderDecided(tenantId: "acme") { orderId } }'))
            with pytest.raises(TransportQueryError) as refused:
                await asyncio.wait_for(other.__anext__(), timeout=10)
            assert refused.value.errors[0]["extensions"]["code"] == "tenant-mismatch"

    asyncio.run(scenario())
