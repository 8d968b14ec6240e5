"""The order bus port: where the API puts accepted orders for ingestion.

``publish`` returns only once every message is durably accepted by the bus
(committed to the local queue's SQLite file, or acknowledged by Event Hubs); the
API answers 202 only after that. Messages of one partition key (a customer)
keep their order. Delivery to the consumer is at least once: the ingest handler
is idempotent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class BusMessage:
    partition_key: str
    body: dict[str, Any]


class OrderBus(Protocol):
    def publish(self, messages: Sequence[BusMessage]) -> None: ...

    def close(self) -> None: ...


async def publish_async(bus: OrderBus, messages: Sequence[BusMessage]) -> None:
    """``publish`` from an event loop: the bus's own ``publish_async`` where it has
    one (the local queue), else ``publish`` in a worker thread."""
    native = getattr(type(bus), "publish_async", None)
    if native is not None:
        await native(bus, messages)
    else:
        await asyncio.to_thread(bus.publish, messages)
