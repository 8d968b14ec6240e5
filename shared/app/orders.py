"""Order intake (the API side of ingestion) and order status.

``OrderIntake.accept`` checks what can be checked before queuing (the tenant's
currency, that the customers exist, no order id or idempotency key twice in one
call), then **claims** every new order id (and explicit idempotency key) with a
conditional create (shared/app/claims.py), and only then publishes the claimed
orders to the bus. So of any number of concurrent sends of one order id exactly
one publishes it; every other send is judged against the stored claim, exactly
as a sequential resend would be:

* the same customer and body: the order's current true outcome (the ledger's
  order record first, then the status read model), never queued twice;
* another customer or body: 422 on ``orderId``; a clash of idempotency keys
  (a key already used for another order, or an order id already used as a key):
  409. Nothing is written.

A call that loses a race on one of its claims to a conflicting order withdraws
the claims it made (ETag-guarded deletes) and answers the problem: a batch is
all or nothing. A claim made by a call still in progress is *unsettled* (its
``publishDue`` is set); a twin waits for it to settle (bounded) rather than
answer "queued" for an order that might yet be withdrawn, and a call never
sleeps while it holds claims of its own, so that window lasts a few store round
trips only.

If the publish fails after the claims, the orders are still accepted: the claim
is durable and the relay (shared/app/relay.py, a timer job) publishes any claim
still unpublished after ``RELAY_GRACE``. The ledger's idempotency marker makes a
second publish (the relay racing a late original) credit nothing twice.

Status is read from the ledger's own order record first (and a held order's
review decision), then from the ``orderstatus`` read model: a caller sees the
outcome as soon as the ledger commits, not when the projector catches up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.app.claims import (
    Standing,
    Verdict,
    claim_key,
    explicit_key,
    is_order_claim,
    judge,
    key_claim,
    key_claim_key,
    order_claim,
    published,
)
from shared.app.customers import CustomerService
from shared.app.messages import order_message_body
from shared.app.tenants import TenantDirectory
from shared.bus.port import BusMessage, OrderBus, publish_async
from shared.telemetry import metrics
from shared.clock import Clock, iso, parse_iso
from shared.domain.orders import Order
from shared.errors import (
    AccrueError,
    Conflict,
    DocumentExists,
    FieldProblem,
    NotFound,
    StoreError,
    StoreUnavailable,
    ValidationFailed,
)
from shared.fraud.holds import order_decision_id
from shared.ledger.entries import order_record_id
from shared.ledger.service import Ledger, fingerprint_of
from shared.schemas.registry import EventSchemaViolation
from shared.store.layout import LEDGER, ORDER_STATUS, customer_pk, order_pk
from shared.store.port import (
    Create,
    Delete,
    DocumentStore,
    PartitionBatch,
    Upsert,
    batches_async,
    inline_reads,
    read_many,
)
from shared.telemetry import tracing
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.orders")

FINAL = ("credited", "held", "rejected")
MAX_WAIT_SECONDS = 10.0
# A claim not confirmed as published this long after it was made is published by the relay.
RELAY_GRACE = timedelta(seconds=30)
# How long a twin waits for another call's claim to settle (published or withdrawn).
SETTLE_SECONDS = 2.0
# Rounds of read-judge-create before a call gives up under contention (each lost
# race means another send created a claim meanwhile: progress for someone).
MAX_CLAIM_ROUNDS = 64


@dataclass
class Accepted:
    order_id: str
    customer_id: str
    status: dict[str, Any]
    newly_queued: bool


# What the intake's flow asks its driver to do: the sync driver does it in place,
# the async one awaits it (group commit, publish, sleep) without holding a thread.
@dataclass
class _Commit:
    batches: list[PartitionBatch]


@dataclass
class _Publish:
    messages: list[BusMessage]


@dataclass
class _Sleep:
    seconds: float


@dataclass
class _Confirm:
    """The publish confirmations: committed before answering by the sync driver; on the
    event loop committed beside the answer, not before it (a confirmation lost with
    the process only means the relay publishes again, which credits nothing twice)."""

    batches: list[PartitionBatch]


_Step = _Commit | _Publish | _Sleep | _Confirm
_Flow = Generator[_Step, None, list[Accepted]]


class OrderIntake:
    def __init__(self, store: DocumentStore, bus: OrderBus, tenants: TenantDirectory,
                 customers: CustomerService, ledger: Ledger, clock: Clock) -> None:
        self._store = store
        self._bus = bus
        self._tenants = tenants
        self._customers = customers
        self._ledger = ledger
        self._clock = clock
        # Confirmations in flight on the event loop (a reference keeps each task alive).
        self._confirming: set[asyncio.Task[None]] = set()

    @property
    def confirmations_in_flight(self) -> int:
        """Publish confirmations still being written after their answer went out (they are
        fire-and-forget): a reader that must see the store at rest waits for 0."""
        return len(self._confirming)

    def accept(self, tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        with tracing.span("intake", tenant=tenant_id, orders=len(orders)):
            return self._accept(tenant_id, orders)

    def _accept(self, tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        flow = self._flow(tenant_id, orders)
        outcome: Any = None
        failure: BaseException | None = None
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(outcome)
            except StopIteration as done:
                return done.value
            outcome, failure = None, None
            try:
                if isinstance(step, (_Commit, _Confirm)):
                    self._store.batches(ORDER_STATUS, step.batches)
                elif isinstance(step, _Publish):
                    self._bus.publish(step.messages)
                else:
                    time.sleep(step.seconds)
            except Exception as error:  # noqa: BLE001 - handed to the flow, which decides
                failure = error

    async def accept_async(self, tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        """``accept`` on an event loop, for a few orders (the single-order route). On a
        store whose point reads are local (``inline_reads``: the embedded SQLite store)
        the checks run inline and the durable commits are awaited without holding a
        thread (``publish_async``, ``batches_async``); on any other (Cosmos: a network
        round trip per read) the whole call runs in a worker thread, so the event loop
        never waits on the network."""
        if not inline_reads(self._store):
            return await asyncio.to_thread(self.accept, tenant_id, orders)
        with tracing.span("intake", tenant=tenant_id, orders=len(orders)):
            return await self._accept_async(tenant_id, orders)

    async def _accept_async(self, tenant_id: str, orders: Sequence[Order]) -> list[Accepted]:
        flow = self._flow(tenant_id, orders)
        failure: BaseException | None = None
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(None)
            except StopIteration as done:
                return done.value
            failure = None
            try:
                if isinstance(step, _Commit):
                    await batches_async(self._store, ORDER_STATUS, step.batches)
                elif isinstance(step, _Confirm):
                    task = asyncio.ensure_future(batches_async(self._store, ORDER_STATUS, step.batches))
                    self._confirming.add(task)
                    task.add_done_callback(self._confirmed)
                elif isinstance(step, _Publish):
                    await publish_async(self._bus, step.messages)
                else:
                    await asyncio.sleep(step.seconds)
            except Exception as error:  # noqa: BLE001 - handed to the flow, which decides
                failure = error

    def _confirmed(self, task: asyncio.Task[None]) -> None:
        self._confirming.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("confirming published orders failed (the relay may publish them again, which credits "
                        "nothing twice): %s", task.exception(),
                        extra=fields(error=type(task.exception()).__name__))

    # --- the flow ----------------------------------------------------------------------

    def _flow(self, tenant_id: str, orders: Sequence[Order]) -> _Flow:
        """Check, claim, publish, confirm; see the module docstring."""
        self._check(tenant_id, orders)
        now = self._clock.now()
        accepted_at, publish_due = iso(now), iso(now + RELAY_GRACE)
        payloads = [order.to_message() for order in orders]
        fingerprints = [fingerprint_of(payload) for payload in payloads]
        prefixes = [f"orders[{i}]." if len(orders) > 1 else "" for i in range(len(orders))]
        slots = [(claim_key(tenant_id, o.order_id),
                  key_claim_key(tenant_id, k) if (k := explicit_key(o)) is not None else None) for o in orders]
        wanted = [slot for pair in slots for slot in pair if slot is not None]
        ours: dict[tuple[str, str], dict[str, Any]] = {}
        deadline = time.monotonic() + SETTLE_SECONDS
        pause = 0.002
        for _ in range(MAX_CLAIM_ROUNDS):
            docs = dict(zip(wanted, read_many(self._store, ORDER_STATUS, wanted)))
            verdicts = [judge(order, fingerprint, prefix, docs[order_slot], docs.get(key_slot) if key_slot else None,
                              set(ours))
                        for order, fingerprint, prefix, (order_slot, key_slot)
                        in zip(orders, fingerprints, prefixes, slots)]
            owners = [d.slot for v in verdicts for d in v.depends if d.slot not in docs]
            if owners:  # only when a key claim is in the way: the state of its order's claim
                docs.update(zip(owners, read_many(self._store, ORDER_STATUS, owners)))
            unsettled = any(not d.holds(docs[d.slot]) for v in verdicts for d in v.depends if d.slot not in ours)
            if unsettled and time.monotonic() < deadline:
                # The answer rests on another call's claim that it may still withdraw:
                # wait for it to publish or withdraw (bounded), so that a twin never
                # answers "queued" and a refusal never cites an order that is not
                # there after all. Never wait while holding claims: they would stay
                # unsettled for others as long.
                yield from self._withdraw(ours)
                yield _Sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 0.05)
                continue
            if any(v.problem is not None or v.conflict is not None or v.key_conflict is not None for v in verdicts):
                yield from self._withdraw(ours)
                raise _refusal(orders, prefixes, verdicts)
            creates: list[tuple[Verdict, str, dict[str, Any]]] = []
            for order, payload, fingerprint, verdict in zip(orders, payloads, fingerprints, verdicts):
                if verdict.key is Standing.FREE:
                    creates.append((verdict, "key", key_claim(tenant_id, order, fingerprint, accepted_at)))
                if verdict.order is Standing.FREE:
                    creates.append((verdict, "order", order_claim(tenant_id, order, payload, fingerprint,
                                                                  accepted_at, publish_due)))
            if not creates:
                break
            work = [PartitionBatch(doc["pk"], [Create(doc)]) for _, _, doc in creates]
            try:
                yield _Commit(work)
            except Exception:
                # The store failed as a whole: whatever of this round was written is
                # unknown, so withdraw what is known to be ours (earlier rounds).
                yield from self._withdraw(ours)
                raise
            lost, failure = False, None
            for (verdict, which, doc), batch in zip(creates, work):
                if batch.error is None:
                    assert batch.result is not None and batch.result[0]["id"] == doc["id"]
                    ours[(doc["pk"], doc["id"])] = dict(doc, _etag=batch.result[0]["_etag"])
                    setattr(verdict, which, Standing.OURS)
                elif isinstance(batch.error, DocumentExists):
                    lost = True  # another send was first: judged again next round
                else:
                    failure = batch.error
            if failure is not None:
                yield from self._withdraw(ours)
                raise failure
            if not lost:
                break
        else:
            yield from self._withdraw(ours)
            raise StoreUnavailable("too many concurrent sends of the same order ids: nothing was queued; try again")

        mine = [i for i, v in enumerate(verdicts) if v.order is Standing.OURS]
        claims = [ours[slots[i][0]] for i in mine]
        messages = [BusMessage(customer_pk(tenant_id, orders[i].customer_id),
                               order_message_body(tenant_id, payloads[i], now)) for i in mine]
        schema_error: EventSchemaViolation | None = None
        confirm = bool(messages)
        metrics.orders_accepted(len(mine))  # claimed: accepted even if the publish falls to the relay
        if messages:
            try:
                yield _Publish(messages)
            except EventSchemaViolation as violation:
                # The checked bus published the valid ones and kept the others in the
                # poison store (replay republishes them): none is the relay's to publish.
                schema_error = violation
            except AccrueError as error:
                # The claims are durable: the relay publishes them (within RELAY_GRACE
                # and one relay period), so the orders are accepted all the same.
                log.warning("publishing %d claimed order(s) failed, the relay will: %s", len(messages), error.message,
                            extra=fields(tenant=tenant_id, count=len(messages), error=error.code))
                confirm = False
        if confirm:
            marks = [PartitionBatch(c["pk"], [Upsert(published(c), if_match=c["_etag"])]) for c in claims]
            try:
                yield _Confirm(marks)
            except StoreError as error:
                log.warning("confirming %d published order(s) failed (the relay may publish them again, "
                            "which credits nothing twice): %s", len(marks), error.message,
                            extra=fields(tenant=tenant_id, count=len(marks), error=error.code))
            # A refused mark (PreconditionFailed) means the projector or the relay moved it on.
        if schema_error is not None:
            raise schema_error

        answers = self._outcomes(tenant_id, [None if v.order is Standing.OURS else docs[slot]
                                             for v, (slot, _) in zip(verdicts, slots)])
        results = []
        for index, (order, verdict) in enumerate(zip(orders, verdicts)):
            if verdict.order is Standing.OURS:
                view = status_view(published(ours[slots[index][0]]))
                results.append(Accepted(order.order_id, order.customer_id, view, True))
            else:
                results.append(Accepted(order.order_id, order.customer_id, answers[index], False))
        return results

    def _withdraw(self, ours: dict[tuple[str, str], dict[str, Any]]) -> Iterator[_Step]:
        """Delete the claims this call made (ETag-guarded: only as this call wrote them)."""
        if not ours:
            return
        work = [PartitionBatch(pk, [Delete(id, if_match=doc["_etag"])]) for (pk, id), doc in ours.items()]
        ours.clear()
        yield _Commit(work)
        for batch in work:
            if batch.error is not None:
                # Moved on by the relay: its message finds no claim at ingestion and is
                # poisoned, never credited (shared/app/ingest.py). Logged to be seen.
                log.error("could not withdraw a claim: %s", batch.error.message,
                          extra=fields(claim=batch.pk, error=batch.error.code))

    def _check(self, tenant_id: str, orders: Sequence[Order]) -> None:
        """What needs no claim: ``ValidationFailed`` names every problem; nothing is written."""
        tenant = self._tenants.get(tenant_id)
        problems: list[FieldProblem] = []
        batch = len(orders) > 1
        # Order ids and explicit idempotency keys share one namespace per tenant (claims.py).
        names: dict[str, tuple[int, str]] = {}
        for index, order in enumerate(orders):
            prefix = f"orders[{index}]." if batch else ""
            if order.currency != tenant.currency:
                problems.append(FieldProblem(f"{prefix}currency",
                                             f"this tenant settles in {tenant.currency}, not {order.currency}"))
            key = explicit_key(order)
            for name, field in ((order.order_id, "orderId"), *(((key, "idempotencyKey"),) if key else ())):
                if name in names:
                    other, other_field = names[name]
                    problems.append(FieldProblem(f"orders[{other}].{other_field}",
                                                 f"{name!r} is used again at orders[{index}].{field}"))
                    problems.append(FieldProblem(f"{prefix}{field}",
                                                 f"{name!r} is already used at orders[{other}].{other_field}"))
                else:
                    names[name] = (index, field)
        customers = self._customers.find_many(tenant_id, sorted({o.customer_id for o in orders}))
        for customer_id, customer in customers.items():
            if customer is None:
                where = [i for i, o in enumerate(orders) if o.customer_id == customer_id]
                prefix = f"orders[{where[0]}]." if batch else ""
                problems.append(FieldProblem(f"{prefix}customerId", f"customer {customer_id!r} does not exist"))
        if problems:
            raise ValidationFailed(f"{len(problems)} problem(s) in the order(s); nothing was queued", problems)

    # --- status ------------------------------------------------------------------------

    def _outcomes(self, tenant_id: str, claims: Sequence[dict[str, Any] | None]) -> list[dict[str, Any]]:
        """Each claim's current true outcome: the ledger's order record (or a held
        order's review decision), else the status read model. One ``read_many``."""
        keys: list[tuple[str, str]] = []
        for claim in claims:
            if claim is not None:
                pk = customer_pk(tenant_id, claim["customerId"])
                keys += [(pk, order_record_id(claim["orderId"])), (pk, order_decision_id(claim["orderId"]))]
        found = iter(read_many(self._store, LEDGER, keys)) if keys else iter(())
        views: list[dict[str, Any]] = []
        for claim in claims:
            if claim is None:
                views.append({})
                continue
            record, decision = next(found), next(found)
            if decision is not None:
                views.append(status_view_from_record(decision))
            elif record is not None:
                views.append(status_view_from_record(record))
            else:
                views.append(status_view(claim))
        return views

    def statuses(self, tenant_id: str, order_ids: Sequence[str]) -> list[dict[str, Any]]:
        docs = read_many(self._store, ORDER_STATUS, [(order_pk(tenant_id, o), o) for o in order_ids])
        for order_id, doc in zip(order_ids, docs):
            if not is_order_claim(doc):
                raise NotFound(f"order {order_id!r} is not known")
        return self._outcomes(tenant_id, docs)

    def status(self, tenant_id: str, order_id: str) -> dict[str, Any]:
        return self.statuses(tenant_id, [order_id])[0]

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
            views = self.statuses(tenant_id, order_ids)
            if all(v["status"] in FINAL for v in views) or time.monotonic() >= deadline:
                yield views, None
                return
            yield views, pause
            pause = min(pause * 2, 0.05)


def _refusal(orders: Sequence[Order], prefixes: Sequence[str], verdicts: Sequence[Verdict]) -> AccrueError:
    """The answer to a call with refused orders: 422 naming every field if any order
    is invalid for its id (another customer, another body), else 409 for key clashes."""
    problems = [v.problem for v in verdicts if v.problem is not None]
    conflicts = [(prefix, conflict) for prefix, v in zip(prefixes, verdicts)
                 for conflict in (v.conflict, v.key_conflict) if conflict is not None]
    if problems:
        problems += [FieldProblem(f"{prefix}idempotencyKey", conflict) for prefix, conflict in conflicts]
        return ValidationFailed(f"{len(problems)} problem(s) in the order(s); nothing was queued", problems)
    if len(orders) == 1:
        return Conflict(conflicts[0][1])
    return Conflict("; ".join(f"{prefix.rstrip('.')}: {conflict}" for prefix, conflict in conflicts)
                    + "; nothing was queued")


def status_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: doc.get(k) for k in ("orderId", "customerId", "status", "points", "transactionId", "ruleSetId",
                                    "ruleSetVersion", "arm", "reason", "acceptedAt", "decidedAt")}
    # One spelling of an instant in every answer (``clock.iso``): order records written before
    # ingest used it store acceptedAt as ``+00:00`` while the claim answered ``Z``.
    for name in ("acceptedAt", "decidedAt"):
        if isinstance(view[name], str):
            view[name] = iso(parse_iso(view[name]))
    return {k: v for k, v in view.items() if v is not None}


def status_view_from_record(record: dict[str, Any]) -> dict[str, Any]:
    return status_view(dict(record, decidedAt=record.get("createdAt")))
