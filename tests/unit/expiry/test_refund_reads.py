"""What a refund reads of the ledger (shared/app/corrections.py): the points of an order's
lots that expired come from the order's own entries (its EXPIREs), not from replaying the
customer's whole ledger into lots. The class of test: a refund's reads are bounded by the
order, not by the customer's history, and the shortcut always equals the definition
(``Lot.expired`` of the order's lots in the replayed book), whatever was earned, spent,
expired and refunded before."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from hypothesis import HealthCheck, given, settings, strategies as st

from shared.app.corrections import AdjustmentRequest
from shared.ledger.entries import EntryDraft, EntryType
from shared.store.layout import LEDGER
from tests.conftest import add_customer, auth
from tests.unit.expiry.conftest import earn, policy_tenant, write

ROLLING = {"kind": "rolling", "months": 1}
_numbers = itertools.count()


def _refund(client, keys, order_id: str, refund_id: str, amount: Decimal) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(f"/v1/orders/{order_id}/refunds", json={
        "refundId": refund_id, "amount": str(amount), "currency": "EUR"}, headers=auth(keys.merchant))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_refund_reads_the_order_not_the_customers_history(client, platform, clock, monkeypatch) -> None:
    keys = policy_tenant(platform, "long", "UTC", ROLLING)
    for n in range(300):  # a long history of other credits
        platform.corrections.adjust("long", "c1", AdjustmentRequest(
            points=5, reasonCode="goodwill", reason="history", idempotencyKey=f"h{n}"), "test")
    earn(client, platform, clock, keys, "o1", "10.00")
    read: list[int] = []
    query = platform.store.query

    def counting(container, *args, **kwargs):  # type: ignore[no-untyped-def]
        found = query(container, *args, **kwargs)
        if container == LEDGER:
            read.append(len(found))
        return found

    monkeypatch.setattr(platform.store, "query", counting)
    outcome = _refund(client, keys, "o1", "r1", Decimal("10.00"))
    assert outcome["pointsClawedBack"] == 100
    assert sum(read) <= 5, f"the refund read {sum(read)} ledger documents (queries: {read})"


# (kind, value): an order of ``value`` EUR, a spend of ten times ``value`` points, ``value``
# days passing (then the expiry job runs: lots live a month), or a refund of ``value`` tenths
# of an earlier order's amount.
steps = st.lists(st.one_of(
    st.tuples(st.just("order"), st.integers(1, 40)),
    st.tuples(st.just("spend"), st.integers(1, 40)),
    st.tuples(st.just("days"), st.sampled_from([12, 35])),
    st.tuples(st.just("refund"), st.integers(1, 12))), min_size=4, max_size=16)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=steps)
def test_refunds_excuse_exactly_what_the_order_lots_lost_to_expiry(client, platform, clock, history) -> None:  # type: ignore[no-untyped-def]
    if platform.store.read("tenants", "lots", "lots") is None:
        keys = policy_tenant(platform, "lots", "UTC", ROLLING, customers=())
        platform._refund_keys = keys  # noqa: SLF001 - the tenant's keys for the next examples
    keys = platform._refund_keys  # noqa: SLF001
    n = next(_numbers)
    customer = f"c{n}"
    add_customer(platform, "lots", customer)
    orders: list[tuple[str, Decimal]] = []
    refunded: dict[str, Decimal] = {}

    def refund(order_id: str, amount: Decimal, part: Decimal, refund_id: str) -> None:
        # The definition: what the replayed book says the order's lots lost to expiry.
        expired = sum(lot.expired for lot in platform.expiry.book("lots", customer).lots.values()
                      if lot.order_id == order_id)
        total = refunded.get(order_id, Decimal(0)) + part
        outcome = _refund(client, keys, order_id, refund_id, part)
        refunded[order_id] = total
        assert outcome["pointsExcusedExpired"] == int(
            (Decimal(expired) * total / amount).to_integral_value(rounding=ROUND_FLOOR))

    for index, (kind, value) in enumerate(history):
        if kind == "order":
            order_id = f"o{n}-{index}"
            earn(client, platform, clock, keys, order_id, f"{value}.00", customer_id=customer)
            orders.append((order_id, Decimal(value)))
        elif kind == "spend":
            balance = platform.ledger.head("lots", customer).balance
            if balance > 0:
                write(platform, "lots", customer, f"spend-{n}-{index}", EntryDraft(EntryType.REDEEM,
                                                                                -min(balance, value * 10)))
        elif kind == "days":
            clock.advance(timedelta(days=value))
            platform.expiry.run()
        elif orders:
            order_id, amount = orders[value % len(orders)]
            part = min(amount - refunded.get(order_id, Decimal(0)), (amount * value / 10).quantize(Decimal("0.01")))
            if part > 0:
                refund(order_id, amount, part, f"r{index}")
    for order_id, amount in orders:  # then what is left of every order
        if refunded.get(order_id, Decimal(0)) < amount:
            refund(order_id, amount, amount - refunded.get(order_id, Decimal(0)), "rest")
    head = platform.ledger.head("lots", customer)
    book = platform.expiry.book("lots", customer)
    assert sum(lot.remaining for lot in book.lots.values()) - book.deficit == head.balance
