"""Order intake (the API side of ingestion) and order status.

``OrderIntake.accept`` checks what can be checked before queuing (the tenant's
currency, that the customer exists, that the order id is not already used for
another customer), puts the accepted orders on the bus, and only then records
them as ``queued``. An order already decided is answered with its original
outcome and not queued again.

Status is read from the ``orderstatus`` read model and, while that still says
``queued``, from the ledger's own order record: so a caller waiting for the
outcome sees it as soon as the ledger commits, not when the projector catches up.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from shared.app.customers import CustomerService
from shared.app.messages import order_message_body
from shared.app.tenants import TenantDirectory
from shared.bus.port import BusMessage, OrderBus, publish_async
from shared.clock import Clock, iso
from shared.domain.orders import Order
from shared.errors import BatchSkipped, DocumentExists, FieldProblem, NotFound, ValidationFailed
from shared.ledger.entries import order_record_id
from shared.ledger.service import Ledger, fingerprint_of
from shared.store.layout import ORDER_STATUS, customer_pk, order_pk
from shared.store.port import Create, DocumentStore, PartitionBatch, batches_async, inline_reads, read_many

FINAL = ("credited", "held", "rejected")
MAX_WAIT_SECONDS = 10.0


@dataclass
class Accepted:
    order_id: str
    customer_id: str
    status: dict[str, Any]
    newly_queued: bool


class OrderIntake:
    def __init__(self, store: DocumentStore, bus: OrderBus, tenants: TenantDirectory,
                 customers: CustomerService, ledger: Ledger, clock: Clock) -> None:
        self._store = store
        self._bus = bus
        self._tenants = tenants
        self._customers = customers
        self._ledger = ledger
        self._clock = clock

    def accept(self, tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        plan = self._plan(tenant_id, orders)
        self._bus.publish(plan.messages)
        # One group commit for the batch's "queued" markers, not one fsync per order.
        self._store.batches(ORDER_STATUS, plan.queued)
        return plan.finish()

    async def accept_async(self, tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        """``accept`` on an event loop, for a few orders (the single-order route). On a
        store whose point reads are local (``inline_reads``: the embedded SQLite store)
        the checks run inline and the two durable commits are awaited without holding
        a thread (``publish_async``, ``batches_async``); on any other (Cosmos: a
        network round trip per read) the whole call runs in a worker thread, so the
        event loop never waits on the network."""
        if not inline_reads(self._store):
            return await asyncio.to_thread(self.accept, tenant_id, orders)
        plan = self._plan(tenant_id, orders)
        await publish_async(self._bus, plan.messages)
        await batches_async(self._store, ORDER_STATUS, plan.queued)
        return plan.finish()

    def _plan(self, tenant_id: str, orders: Sequence[Order]) -> "_IntakePlan":
        """Check the orders (``ValidationFailed`` names every problem; nothing is
        written) and prepare what ``accept`` writes: messages first, then markers."""
        tenant = self._tenants.get(tenant_id)
        problems: list[FieldProblem] = []
        seen: dict[str, str] = {}
        for index, order in enumerate(orders):
            prefix = f"orders[{index}]." if len(orders) > 1 else ""
            if order.currency != tenant.currency:
                problems.append(FieldProblem(f"{prefix}currency",
                                             f"this tenant settles in {tenant.currency}, not {order.currency}"))
            if order.order_id in seen and seen[order.order_id] != order.customer_id:
                problems.append(FieldProblem(f"{prefix}orderId", "the same order id appears for two customers"))
            seen[order.order_id] = order.customer_id
        customers = self._customers.find_many(tenant_id, sorted({o.customer_id for o in orders}))
        for customer_id, customer in customers.items():
            if customer is None:
                where = [i for i, o in enumerate(orders) if o.customer_id == customer_id]
                prefix = f"orders[{where[0]}]." if len(orders) > 1 else ""
                problems.append(FieldProblem(f"{prefix}customerId", f"customer {customer_id!r} does not exist"))
        existing: dict[str, dict[str, Any]] = {}
        payloads = [order.to_message() for order in orders]
        fingerprints = {order.order_id: fingerprint_of(payload) for order, payload in zip(orders, payloads)}
        statuses = read_many(self._store, ORDER_STATUS, [(order_pk(tenant_id, o.order_id), o.order_id) for o in orders])
        for index, (order, status) in enumerate(zip(orders, statuses)):
            if status is not None:
                prefix = f"orders[{index}]." if len(orders) > 1 else ""
                if status["customerId"] != order.customer_id:
                    problems.append(FieldProblem(f"{prefix}orderId",
                                                 f"order {order.order_id!r} was already sent for another customer"))
                elif status.get("fingerprint") not in (None, fingerprints[order.order_id]):
                    # A resend must be the same order: answering a changed one with the
                    # first outcome would silently drop the change.
                    problems.append(FieldProblem(f"{prefix}orderId", f"order {order.order_id!r} was already sent "
                                                 "with different content; a new order needs a new order id"))
                existing[order.order_id] = status
        if problems:
            raise ValidationFailed(f"{len(problems)} problem(s) in the order(s); nothing was queued", problems)

        now = self._clock.now()
        accepted_at = iso(now)
        plan = _IntakePlan()
        for order, payload in zip(orders, payloads):
            if order.order_id in existing:
                plan.results.append(Accepted(order.order_id, order.customer_id, existing[order.order_id], False))
                continue
            body = order_message_body(tenant_id, payload, now)
            plan.messages.append(BusMessage(partition_key=customer_pk(tenant_id, order.customer_id), body=body))
            status = {
                "id": order.order_id, "pk": order_pk(tenant_id, order.order_id), "docType": "orderStatus",
                "tenantId": tenant_id, "customerId": order.customer_id, "orderId": order.order_id,
                "status": "queued", "acceptedAt": accepted_at, "fingerprint": fingerprints[order.order_id],
            }
            plan.queued.append(PartitionBatch(status["pk"], [Create(status)]))
            plan.results.append(Accepted(order.order_id, order.customer_id, status, True))
        return plan

    def status(self, tenant_id: str, order_id: str) -> dict[str, Any]:
        doc = self._store.read(ORDER_STATUS, order_pk(tenant_id, order_id), order_id)
        if doc is None:
            raise NotFound(f"order {order_id!r} is not known")
        if doc["status"] not in FINAL:
            record = self._ledger.record(tenant_id, doc["customerId"], order_record_id(order_id))
            if record is not None:
                return status_view_from_record(record)
        return status_view(doc)

    def wait(self, tenant_id: str, order_ids: Sequence[str], seconds: float) -> list[dict[str, Any]]:
        """Statuses of the orders, waiting up to ``seconds`` (bounded) for all to be final."""
        polls = self._polls(tenant_id, order_ids, seconds)
        for views, pause in polls:
            if pause is None:
                return views
            time.sleep(pause)
        raise AssertionError("unreachable: the polls end with a final answer")

    async def wait_async(self, tenant_id: str, order_ids: Sequence[str], seconds: float) -> list[dict[str, Any]]:
        """``wait`` on an event loop: the pauses are awaited; the status reads run inline
        on a store with ``inline_reads``, else the whole wait runs in a worker thread."""
        if not inline_reads(self._store):
            return await asyncio.to_thread(self.wait, tenant_id, order_ids, seconds)
        for views, pause in self._polls(tenant_id, order_ids, seconds):
            if pause is None:
                return views
            await asyncio.sleep(pause)
        raise AssertionError("unreachable: the polls end with a final answer")

    def _polls(self, tenant_id: str, order_ids: Sequence[str],
               seconds: float) -> Iterator[tuple[list[dict[str, Any]], float | None]]:
        """The statuses after each poll and the pause before the next (None: answer now)."""
        deadline = time.monotonic() + min(max(seconds, 0.0), MAX_WAIT_SECONDS)
        pause = 0.002
        while True:
            views = [self.status(tenant_id, order_id) for order_id in order_ids]
            if all(v["status"] in FINAL for v in views) or time.monotonic() >= deadline:
                yield views, None
                return
            yield views, pause
            pause = min(pause * 2, 0.05)


@dataclass
class _IntakePlan:
    """What an accepted call writes: the bus messages of its new orders, then
    their "queued" markers; and the answer for every order."""

    messages: list[BusMessage] = field(default_factory=list)
    queued: list[PartitionBatch] = field(default_factory=list)
    results: list[Accepted] = field(default_factory=list)

    def finish(self) -> list[Accepted]:
        for batch in self.queued:
            if batch.error is not None and not isinstance(batch.error, (DocumentExists, BatchSkipped)):
                raise batch.error  # exists: the projector already wrote the outcome (or a twin in this call did)
        return self.results


def status_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: doc.get(k) for k in ("orderId", "customerId", "status", "points", "transactionId", "ruleSetId",
                                    "ruleSetVersion", "arm", "reason", "acceptedAt", "decidedAt")}
    return {k: v for k, v in view.items() if v is not None}


def status_view_from_record(record: dict[str, Any]) -> dict[str, Any]:
    return status_view(dict(record, decidedAt=record.get("createdAt")))

