"""The change-feed hub behind subscriptions: events per kind, tenant and customer, replay from
a cursor without gaps or duplicates, and ``refetch-required`` when a cursor is too old or a
subscriber falls behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.graphql import feed
from shared.graphql.feed import FeedHub, RefetchRequired
from shared.store.layout import LEDGER
from tests.conftest import auth, drain, order_body


def _orders(client, platform, keys, customer: str, *order_ids: str) -> None:
    for order_id in order_ids:
        assert client.post("/v1/orders", json=order_body(customer, order_id), headers=auth(keys.merchant)
                           ).status_code == 202
    drain(platform)


async def _take(stream: Any, count: int) -> list[feed.Event]:
    out = []
    async for event in stream:
        out.append(event)
        if len(out) == count:
            break
    return out


def test_replay_gives_each_kind_of_the_tenant_and_customer_once(client, platform, tenant, other_tenant) -> None:
    _orders(client, platform, tenant, "c1", "a1", "a2")
    _orders(client, platform, tenant, "c2", "b1")
    _orders(client, platform, other_tenant, "c1", "z1")
    hub = FeedHub(platform.store)

    async def scenario() -> None:
        orders = await asyncio.wait_for(_take(hub.subscribe("acme", "order", "c1", "0"), 2), 5)
        assert [e.docs[0]["orderId"] for e in orders] == ["a1", "a2"]
        transactions = await asyncio.wait_for(_take(hub.subscribe("acme", "transaction", None, "0"), 3), 5)
        assert {e.customer_id for e in transactions} == {"c1", "c2"}
        assert all(e.tenant_id == "acme" for e in transactions)
        assert len({e.docs[0]["transactionId"] for e in transactions}) == 3
        after_first = await asyncio.wait_for(_take(hub.subscribe("acme", "order", "c1", orders[0].cursor), 1), 5)
        assert after_first[0].docs[0]["orderId"] == "a2"

    try:
        asyncio.run(scenario())
    finally:
        hub.stop()


def test_live_events_follow_the_replay_without_a_gap(client, platform, tenant) -> None:
    _orders(client, platform, tenant, "c1", "l1")
    hub = FeedHub(platform.store)

    async def scenario() -> None:
        stream = hub.subscribe("acme", "order", None, "0")
        first = await asyncio.wait_for(_take(stream, 1), 5)
        await asyncio.to_thread(_orders, client, platform, tenant, "c3", "l2")
        second = await asyncio.wait_for(_take(stream, 1), 5)
        assert [first[0].docs[0]["orderId"], second[0].docs[0]["orderId"]] == ["l1", "l2"]
        await stream.aclose()

    try:
        asyncio.run(scenario())
    finally:
        hub.stop()


def test_a_too_old_cursor_or_a_slow_subscriber_must_refetch(client, platform, tenant, monkeypatch) -> None:
    _orders(client, platform, tenant, "c1", "r1", "r2", "r3")
    hub = FeedHub(platform.store)
    monkeypatch.setattr(feed, "REPLAY_LIMIT", 1)

    async def too_old() -> None:
        with pytest.raises(RefetchRequired):
            await _take(hub.subscribe("acme", "transaction", None, "0"), 1)

    async def slow() -> None:
        stream = hub.subscribe("acme", "order", None, None)
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.2)  # registered
        [subscriber] = list(hub._subscribers)  # noqa: SLF001 - the test fills its queue to the brim
        subscriber.overflowed = True
        await asyncio.to_thread(_orders, client, platform, tenant, "c2", "r4")
        with pytest.raises(RefetchRequired):
            await asyncio.wait_for(task, 5)
            await asyncio.wait_for(stream.__anext__(), 5)

    try:
        asyncio.run(too_old())
        asyncio.run(slow())
    finally:
        hub.stop()
    assert platform.store.latest_lsn(LEDGER) > 0


def test_a_malformed_cursor_is_refused() -> None:
    with pytest.raises(RefetchRequired):
        feed.parse_cursor("abc")
