"""Concurrent sends over random interleavings (hypothesis, bounded): whatever mix of
order ids, customers, bodies and idempotency keys is sent at once, the outcome is
one a sequential order of the same sends could give.

For each example a handful of sends (single orders and small batches) race in
threads through ``OrderIntake.accept``; then the queue is drained and checked:

* an order id is accepted for one (customer, body) only, and credited once;
* an idempotency key is accepted for one order only;
* every refused send, sent again now (sequentially), is still refused for every
  reason it was (a 422 names at least the same fields; a later winner may add a
  reason), and every accepted one is answered as a resend;
* nothing is left unpublished for the relay, and nothing is poisoned.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.app.claims import PUBLISH_DUE
from shared.domain.orders import Order
from shared.errors import Conflict, ValidationFailed
from shared.store.layout import ORDER_STATUS
from shared.store.port import Filter, Query
from tests.conftest import drain, order_body, run_in_threads

_example = itertools.count()

ORDER = st.fixed_dictionaries({
    "order": st.sampled_from(["a", "b", "c"]),
    "customer": st.sampled_from(["c1", "c2"]),
    "amount": st.sampled_from(["1.00", "2.00"]),
    "key": st.sampled_from([None, None, "k1", "k2", "b"]),
})
SEND = st.lists(ORDER, min_size=1, max_size=2)  # one order, or a batch of two


def _orders(run: int, send: list[dict[str, Any]]) -> list[Order]:
    # Ids and keys are made unique per example: examples share one platform.
    def name(value: str) -> str:
        return f"r{run}-{value}"

    return [Order.model_validate(order_body(customer_id=o["customer"], order_id=name(o["order"]), amount=o["amount"],
                                            **({"idempotencyKey": name(o["key"])} if o["key"] else {})))
            for o in send]


def _answer(platform, orders: list[Order]) -> tuple[str, Any]:
    try:
        accepted = platform.intake.accept("acme", orders)
    except ValidationFailed as refused:
        return "422", sorted(p.field for p in refused.problems)
    except Conflict:
        return "409", None
    return "ok", [(a.order_id, a.newly_queued) for a in accepted]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sends=st.lists(SEND, min_size=2, max_size=6))
def test_concurrent_sends_answer_as_some_sequential_order_would(platform, tenant, sends) -> None:
    run = next(_example)
    batches = [_orders(run, send) for send in sends]
    answers: list[Any] = [None] * len(batches)

    def send(index: int) -> None:
        answers[index] = _answer(platform, batches[index])

    run_in_threads(send, [(i,) for i in range(len(batches))], timeout=30)
    assert all(a is not None for a in answers)

    owners: dict[str, tuple[str, str]] = {}  # order id -> (customer, body) it was accepted for
    keys: dict[str, str] = {}  # idempotency key -> order id
    queued = 0
    for orders, (kind, detail) in zip(batches, answers):
        if kind != "ok":
            continue
        for order, (order_id, new) in zip(orders, detail):
            owner = (order.customer_id, order.model_dump_json())
            assert owners.setdefault(order_id, owner) == owner, f"{order_id} accepted for two orders"
            if order.idempotency_key and order.idempotency_key != order_id:
                assert keys.setdefault(order.idempotency_key, order_id) == order_id, "a key accepted twice"
            queued += new
    assert queued == len(owners), "an order id queued twice, or accepted and never queued"

    # Sequentially now: each send gets the answer it got in the race (a refusal stays the
    # same refusal; an accepted one is a resend, never newly queued).
    for orders, (kind, detail) in zip(batches, answers):
        again_kind, again_detail = _answer(platform, orders)
        if kind == "ok":
            assert again_kind == "ok" and not any(new for _, new in again_detail), (orders, again_kind)
            continue
        # Refused, and for every reason it was (a later winner may add a reason, never remove one).
        assert again_kind in ("409", "422"), (orders, kind, again_kind)
        if kind == "422":
            assert again_kind == "422" and set(detail) <= set(again_detail), (orders, detail, again_detail)

    drain(platform)
    credited: dict[str, int] = {}
    for customer in ("c1", "c2"):
        for entry in platform.ledger.entries("acme", customer, limit=1000):
            if entry["referenceOrderId"].startswith(f"r{run}-"):
                credited[entry["referenceOrderId"]] = credited.get(entry["referenceOrderId"], 0) + 1
                assert owners[entry["referenceOrderId"]][0] == customer
    assert credited == {order_id: 1 for order_id in owners}
    assert platform.store.query(ORDER_STATUS, Query(pk=None, filters=(Filter(PUBLISH_DUE, ">", ""),))) == []
    assert platform.poison.list("acme") == []
