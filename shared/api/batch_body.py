"""An order batch's body parsed and validated off the event loop, in chunks.

FastAPI parses a JSON body (``json.loads``) and validates it against the route's model
on the event loop, before it hands a plain ``def`` route to a thread; for a batch of 500
orders that was ~7 ms in two C calls that hold the GIL throughout (pydantic-core does not
release it), so every balance read and history page arriving meanwhile waited
(docs/performance.md, target 3).

``PrevalidatedBatch`` is the route class of ``POST /v1/orders/batch``. Before FastAPI's
handler runs, it parses the body with orjson and validates its orders ``CHUNK`` at a time
on a thread of the pool; between two chunks the thread gives the GIL up (its switch
interval), so the event loop is held ~1 ms at a time at most, not ~7. When every order is
valid the request's JSON is set to the built ``OrderBatch``, which FastAPI's own validation
of the body passes as it is (pydantic does not revalidate an instance; a dict of ``Order``
instances would still run each order's after-validator, ~2 ms a batch, on the loop).

What it guarantees:

* Same answers. Anything it does not fully validate (a content type FastAPI would not
  read as JSON, a body orjson cannot parse, anything but an object with one ``orders``
  list of 1-500 valid orders) is left as it was: FastAPI parses and validates it as
  before and answers its own 400/422. Only a body that validates is given ahead, and
  it validates to the same ``OrderBatch``.
* Same order of checks for a valid batch: authentication, rate limits and the capability
  are still FastAPI's dependencies, run before the route. The one difference is cost, not
  outcome: a request that then fails authentication has had its orders validated (on a
  thread) where FastAPI stopped after parsing its JSON."""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from shared.domain.orders import MAX_BATCH_ORDERS, Order

CHUNK = 50  # ~0.7 ms of pydantic per chunk: the longest the loop waits for the GIL here
_ORDERS = TypeAdapter(list[Order])


def reads_as_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (its own test: an
    ``application/json`` or ``application/*+json`` type; no content type is not JSON)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def validated_batch(body: bytes) -> Any:
    """The ``OrderBatch`` of ``body`` when it is a valid batch; None otherwise (FastAPI decides)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.keys() != {"orders"}:
        return None
    orders = document["orders"]
    if not isinstance(orders, list) or not 1 <= len(orders) <= MAX_BATCH_ORDERS:
        return None
    validated: list[Order] = []
    for start in range(0, len(orders), CHUNK):
        try:
            validated += _ORDERS.validate_python(orders[start:start + CHUNK])
        except ValidationError:
            return None
    from shared.api.routes.orders import OrderBatch  # here: that module imports this one

    # Built, not validated again: its two constraints (1-500 orders, no other field) hold above,
    # and validating would run every order's own validator a second time.
    return OrderBatch.model_construct(orders=validated)


class PrevalidatedBatch(APIRoute):
    """An ``APIRoute`` whose JSON body is validated on a thread first (module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def prevalidating(request: Request) -> Response:
            if reads_as_json(request.headers.get("content-type")):
                body = await request.body()
                if body:
                    batch = await run_in_threadpool(validated_batch, body)
                    if batch is not None:
                        # Starlette's cache of request.json(): FastAPI and orders_in_body read it.
                        request._json = batch
            return await handler(request)

        return prevalidating
