"""Orders: send one or a batch (queued for ingestion), read status, refund.

Sending one order is the hottest route, so it is ``async``: its checks are a
few point reads, and its durable commits (the order's claim, then the bus) are
awaited on the group commit instead of holding a pool thread each (the claim and
what each answer means: docs/orders.md). A batch (up to 500
orders, hundreds of reads) stays a plain ``def``, run in the thread pool so it
never stalls the event loop; its body is parsed and validated on a thread too, in
chunks (``shared.api.batch_body``), not on the event loop as FastAPI would."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.api.batch_body import PrevalidatedBatch
from shared.api.contract import op
from shared.api.contract.orders import OrderBatchStatus, OrderStatus, RefundOutcome
from shared.api.deps import platform
from shared.api.dryrun import dry_runnable
from shared.api.ratelimit import costs, orders_in_body
from shared.api.security import requires
from shared.app.auth import Principal
from shared.app.corrections import RefundRequest
from shared.app.orders import FINAL, MAX_WAIT_SECONDS, Accepted, status_view
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.domain.orders import MAX_BATCH_ORDERS, Order
from shared.platform import Platform

router = APIRouter(prefix="/v1/orders", tags=["orders"])

OrderId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
Wait = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS,
                              description="seconds to wait for the outcome (at most 10) before answering 202")]


class OrderBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: list[Order] = Field(min_length=1, max_length=MAX_BATCH_ORDERS)


def _answer(p: Platform, tenant_id: str, accepted: list[Accepted], wait: float) -> tuple[int, list[dict]]:
    if wait > 0:
        views = p.intake.wait(tenant_id, [a.order_id for a in accepted], wait)
    else:
        views = [status_view(a.status) for a in accepted]
    return _answered(views)


def _answered(views: list[dict]) -> tuple[int, list[dict]]:
    for view in views:
        view["statusUrl"] = f"/v1/orders/{view['orderId']}"
    done = all(v["status"] in FINAL for v in views)
    return (200 if done else 202), views


@router.post("", status_code=202, summary="Send one order",
             **op("orders.send", {200: OrderStatus, 202: OrderStatus}, errors=(409,)))
@dry_runnable
async def send_order(body: Order, response: Response, p: Annotated[Platform, Depends(platform)],
                     who: Annotated[Principal, Depends(requires("ingest"))], wait: Wait = 0) -> dict:
    """Queues the order for ingestion (capability ``ingest``) and answers 202 with its status URL
    (``Location``). With ``?wait=`` (at most 10 s) the answer is 200 with the outcome once it is known.
    The order id is the idempotency key: sending a decided order again returns its first outcome."""
    accepted = await p.intake.accept_async(who.tenant_id, [body])
    if wait > 0:
        views = await p.intake.wait_async(who.tenant_id, [accepted[0].order_id], wait)
    else:
        views = [status_view(accepted[0].status)]
    response.status_code, views = _answered(views)
    response.headers["Location"] = views[0]["statusUrl"]
    return views[0]


@costs(orders_in_body)  # rate limits count a batch by its orders
@dry_runnable
def send_batch(body: OrderBatch, response: Response, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("ingest"))], wait: Wait = 0) -> dict:
    """Queues every order of the batch, or none (an invalid order refuses the whole batch with 422).
    202 while any order is still queued; 200 when all are decided (with ``?wait=``)."""
    accepted = p.intake.accept(who.tenant_id, body.orders)
    response.status_code, views = _answer(p, who.tenant_id, accepted, wait)
    return {"orders": views}


# Registered here, in the decorators' order, with the route class that validates the batch's
# orders on a thread in chunks before FastAPI runs (shared/api/batch_body.py).
router.add_api_route("/batch", send_batch, methods=["POST"], status_code=202, summary="Send up to 500 orders at once",
                     route_class_override=PrevalidatedBatch,
                     **op("orders.sendBatch", {200: OrderBatchStatus, 202: OrderBatchStatus}, errors=(409,)))


@router.get("/{orderId}", summary="Order status: queued, credited, held or rejected (and why)",
            **op("orders.get", OrderStatus, errors=(404,)))
def order_status(orderId: OrderId, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("read"))], wait: Wait = 0) -> dict:
    """The order's status (capability ``read``); ``?wait=`` waits up to 10 s for a queued order's outcome.
    404 when the tenant never sent this order id."""
    view = p.intake.wait(who.tenant_id, [orderId], wait)[0] if wait else p.intake.status(who.tenant_id, orderId)
    view["statusUrl"] = f"/v1/orders/{orderId}"
    return view


@router.post("/{orderId}/refunds", status_code=201, summary="Refund (part of) an order: claws back its points",
             **op("orders.refund", {201: RefundOutcome, 200: RefundOutcome}, errors=(404, 409)))
@dry_runnable
def refund(orderId: OrderId, body: RefundRequest, response: Response, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Claws back the refunded share of the order's points as a new REVERSAL entry (201). The same
    ``refundId`` again returns the first outcome with ``duplicate: true`` and 200. 409 while the order
    is not yet processed, or while its points are held for a fraud review (``held-for-review``: decide
    the review, then refund). 422 (``validation-failed`` naming ``amount``) when the refunds would
    exceed the order's amount: the error says what is left to refund."""
    outcome = p.corrections.refund(who.tenant_id, orderId, body)
    if outcome.duplicate:
        response.status_code = 200
    return {**outcome.outcome, "transactionId": outcome.transaction_id, "duplicate": outcome.duplicate}
