"""A wallet tenant's books agree with its lots, whatever the writers: each wallet's lots add
up to that wallet's running balance (docs/wallets.md), and a transfer moves the expiries
the sender loses, no other (docs/transfers.md: a transfer never extends or shortens the life
of points). Found by an outside review: a refund's clawback drew from the wallets in spending
order while the lots gave up the order's own points whatever the wallet (a wallet later expired
below zero), and a
transfer's parts were taken FIFO over every lot while the ledger debited by spending order
(the receiver got dates of lots the sender kept: two lots' points expired for one). The class
of test: every writer that takes points, under random histories, checked against the lots."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings, strategies as st

from shared.app.corrections import AdjustmentRequest
from shared.transfers.saga import TransferRequest
from tests.conftest import add_customer, auth
from tests.unit.expiry.conftest import earn
from tests.unit.ledger.test_wallets import wallet_tenant

_numbers = itertools.count()
SPENDING_ORDERS = [["main", "promo"], ["promo", "main"]]

steps = st.lists(st.one_of(
    st.tuples(st.just("order"), st.integers(1, 30)),                    # EUR: 10 points each into main
    st.tuples(st.just("bonus"), st.integers(1, 200)),                   # an adjustment into promo
    st.tuples(st.just("refund"), st.integers(1, 10)),                   # tenths of an earlier order
    st.tuples(st.just("transfer"), st.integers(1, 300)),                # to the other customer
    st.tuples(st.just("spend"), st.integers(1, 150)),                   # an adjustment down, by spending order
    st.tuples(st.just("days"), st.sampled_from([10, 35]))), min_size=3, max_size=14)


def _expiring(platform, tenant_id: str, customers: list[str]) -> Counter:
    """Points left in open lots by expiry date, over the customers."""
    held: Counter = Counter()
    for customer in customers:
        for lot in platform.expiry.book(tenant_id, customer).open_lots():
            held[lot.expires_at] += lot.remaining
    return held


def _check_wallets(platform, tenant_id: str, customer: str) -> None:
    head = platform.ledger.head(tenant_id, customer)
    book = platform.expiry.book(tenant_id, customer)
    if book.deficit or any(lot.covered for lot in book.lots.values()):
        # A clawback beyond every lot, and a credit that paid such a deficit off: the lots give
        # that credit to the deficit, the wallets to the wallet it names (docs/wallets.md).
        return
    by_wallet: Counter = Counter()
    for lot in book.lots.values():
        by_wallet[lot.wallet or "main"] += lot.remaining
    wallets = dict(head.wallets)
    for name in ("main", "promo"):
        assert by_wallet[name] == wallets.get(name, 0), (customer, name, dict(by_wallet), wallets)
        assert wallets.get(name, 0) >= 0, (customer, wallets)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=steps, order_of_spending=st.sampled_from(SPENDING_ORDERS))
@example(history=[("order", 10), ("bonus", 100), ("transfer", 150)], order_of_spending=["main", "promo"])
@example(history=[("order", 10), ("bonus", 50), ("refund", 5), ("days", 35)], order_of_spending=["promo", "main"])
def test_wallets_add_up_to_their_lots_and_transfers_keep_every_expiry(client, platform, clock, history,
                                                                       order_of_spending) -> None:
    n = next(_numbers)
    tenant_id = f"w{n}"
    wallets = {"wallets": [{"name": "main"}, {"name": "promo", "expiryPolicy": {"kind": "rolling", "months": 1}}],
               "default": "main", "spendingOrder": order_of_spending}
    keys = wallet_tenant(client, platform, tenant_id, wallets=wallets, rules=None)
    add_customer(platform, tenant_id, "c2")
    customers = ["c1", "c2"]
    orders: list[tuple[str, int]] = []
    refunded: Counter = Counter()
    for index, (kind, value) in enumerate(history):
        if kind == "order":
            orders.append((f"o{index}", value))
            earn(client, platform, clock, keys, f"o{index}", f"{value}.00")
        elif kind == "bonus":
            platform.corrections.adjust(tenant_id, "c1", AdjustmentRequest(
                points=value, reasonCode="goodwill", reason="bonus", idempotencyKey=f"b{index}",
                wallet="promo"), "test")
        elif kind == "refund" and orders:
            order_id, amount = orders[value % len(orders)]
            part = min(amount * 10 - refunded[order_id], value * amount)  # in cents of EUR
            if part > 0:
                answer = client.post(f"/v1/orders/{order_id}/refunds", json={
                    "refundId": f"r{index}", "amount": f"{part // 100}.{part % 100:02d}", "currency": "EUR"},
                    headers=auth(keys.merchant))
                assert answer.status_code == 201, answer.text
                refunded[order_id] += part
        elif kind == "transfer":
            balance = platform.ledger.head(tenant_id, "c1").balance
            if balance > 0:
                before = _expiring(platform, tenant_id, customers)
                platform.transfers.transfer(tenant_id, "c1", TransferRequest.model_validate(
                    {"toCustomerId": "c2", "points": min(balance, value), "idempotencyKey": f"t{index}"}))
                assert _expiring(platform, tenant_id, customers) == before  # the same points, the same lives
        elif kind == "spend":
            balance = platform.ledger.head(tenant_id, "c1").balance
            if balance > 0:
                platform.corrections.adjust(tenant_id, "c1", AdjustmentRequest(
                    points=-min(balance, value), reasonCode="correction", reason="spend",
                    idempotencyKey=f"s{index}"), "test")
        elif kind == "days":
            clock.advance(timedelta(days=value))
            platform.expiry.run()
        for customer in customers:
            _check_wallets(platform, tenant_id, customer)
