"""The single-order route's intake on an event loop: the same outcome as ``accept``,
and point reads on the loop only where the store says they are local."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from shared.app.orders import OrderIntake
from shared.domain.orders import Order
from shared.errors import ValidationFailed
from shared.platform import Platform
from shared.store.layout import ORDER_STATUS
from shared.store.port import inline_reads
from tests.conftest import order_body


class _ThreadRecordingStore:
    """The platform's store, reached through a proxy that remembers which threads
    read, and that does not claim ``inline_reads`` (as the Cosmos adapter does not)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.read_threads: set[int] = set()

    def read(self, *args: Any, **kwargs: Any) -> Any:
        self.read_threads.add(threading.get_ident())
        return self._inner.read(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("inline_reads", "batches_async"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def _intake(platform: Platform, store: Any) -> OrderIntake:
    return OrderIntake(store, platform.event_bus, platform.tenants, platform.customers, platform.ledger,
                       platform.clock)


def test_a_remote_store_is_read_from_a_worker_thread_never_the_event_loop(platform: Platform, tenant) -> None:
    store = _ThreadRecordingStore(platform.store)
    assert inline_reads(platform.store) and not inline_reads(store)

    async def send() -> tuple[int, list]:
        return threading.get_ident(), await _intake(platform, store).accept_async(
            "acme", [Order.model_validate(order_body(order_id="remote-1"))])

    loop_thread, accepted = asyncio.run(send())
    assert accepted[0].status["status"] == "queued" and accepted[0].newly_queued
    assert store.read_threads and loop_thread not in store.read_threads
    assert platform.store.read(ORDER_STATUS, "acme:remote-1", "remote-1") is not None
    assert platform.bus.depth() == 1


def test_the_embedded_store_is_read_inline_and_a_refusal_writes_nothing(platform: Platform, tenant) -> None:
    async def send(body: dict) -> list:
        return await platform.intake.accept_async("acme", [Order.model_validate(body)])

    accepted = asyncio.run(send(order_body(order_id="local-1")))
    again = asyncio.run(send(order_body(order_id="local-1")))  # a resend: the same outcome, not queued twice
    assert accepted[0].newly_queued and not again[0].newly_queued and platform.bus.depth() == 1
    with pytest.raises(ValidationFailed) as refused:
        asyncio.run(send(order_body(order_id="local-2", customer_id="nobody")))
    assert refused.value.problems[0].field == "customerId"
    assert platform.bus.depth() == 1 and platform.store.read(ORDER_STATUS, "acme:local-2", "local-2") is None
