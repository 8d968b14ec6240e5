"""``judge`` and its dependencies, case by case: the two races hypothesis found in
tests/unit/app/test_claims_interleavings.py, pinned down without threads.

* A key claim made by a send whose order id then lost to another body is withdrawn
  by that send: until then it is not final, so nobody is refused on it.
* An order refused for its id and for its key names both reasons, whatever was
  judged first: a refusal never loses a reason when another send wins later.
"""

from __future__ import annotations

from shared.app.claims import (
    Dependency,
    Standing,
    claim_key,
    judge,
    key_claim,
    order_claim,
    published,
)
from shared.domain.orders import Order
from tests.conftest import order_body


def _order(order_id: str, customer: str = "c1", amount: str = "1.00", key: str | None = None) -> Order:
    return Order.model_validate(order_body(customer_id=customer, order_id=order_id, amount=amount,
                                           **({"idempotencyKey": key} if key else {})))


def _claim(order: Order, fingerprint: str, settled: bool = True) -> dict:
    claim = order_claim("acme", order, {}, fingerprint, "2026-11-01T11:00:00Z", "2026-11-01T11:00:05Z")
    return published(claim) if settled else claim


def test_a_key_claim_whose_order_lost_to_another_body_does_not_refuse_yet() -> None:
    # Send A: order c with key b. Its key claim was created, its order claim lost to
    # send B's order c with another body (settled). A will withdraw the key claim.
    a = _order("c", key="b")
    key_doc = key_claim("acme", a, "fp-a", "2026-11-01T11:00:00Z")
    b_claim = _claim(_order("c", amount="2.00"), "fp-b")

    verdict = judge(_order("b"), "fp-new", "", key_doc, None, set())

    assert verdict.order is Standing.REFUSED  # what the documents say now ...
    [dependency] = verdict.depends
    assert dependency == Dependency(claim_key("acme", "c"), "fp-a")  # rests on order c's claim, as A made it
    assert dependency.holds(b_claim) is False  # ... is not final: the order claim is another body's
    assert dependency.holds(_claim(a, "fp-a")) is True  # A's own settled claim makes it final
    assert dependency.holds(_claim(a, "fp-a", settled=False)) is False  # A still in progress


def test_an_order_claim_dependency_is_final_once_published() -> None:
    order = _order("a")
    verdict = judge(order, "fp-1", "", _claim(_order("a", customer="c2"), "fp-2", settled=False), None, set())
    [dependency] = verdict.depends
    assert dependency.fingerprint is None
    assert dependency.holds(_claim(order, "fp-2", settled=False)) is False
    assert dependency.holds(_claim(order, "fp-2")) is True


def test_a_refused_order_names_its_key_conflict_too() -> None:
    order = _order("a", customer="c1", key="k1")
    taken_by_other_customer = _claim(_order("a", customer="c2"), "fp-other")
    key_of_another_order = key_claim("acme", _order("z", key="k1"), "fp-z", "2026-11-01T11:00:00Z")

    verdict = judge(order, "fp-mine", "orders[1].", taken_by_other_customer, key_of_another_order, set())

    assert verdict.problem is not None and verdict.problem.field == "orders[1].orderId"
    assert verdict.key is Standing.REFUSED
    assert verdict.key_conflict is not None and "'k1'" in verdict.key_conflict and "'z'" in verdict.key_conflict
