"""The order.received message: the intake's shortcut builds exactly the model's body."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.app.messages import order_message, order_message_body, parse_order_message
from shared.domain.orders import LineItem, Order

_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,20}", fullmatch=True)
_cents = st.integers(min_value=1, max_value=10_000_000).map(lambda n: Decimal(n).scaleb(-2))
_items = st.lists(st.builds(LineItem, sku=_ids, category=st.sampled_from(["coffee", "bakery", "merch-2"]),
                            quantity=st.integers(1, 50), unitPrice=_cents), max_size=4)
_instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                         timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=5, minutes=30))]))
_orders = st.builds(Order, customerId=_ids, orderId=_ids, amount=_cents, currency=st.just("EUR"), items=_items,
                    channel=st.sampled_from(["web", "store"]), timestamp=_instants,
                    idempotencyKey=st.none() | _ids, cardFingerprint=st.none() | _ids)


@settings(max_examples=150, deadline=None)
@given(order=_orders, tenant_id=_ids, accepted_at=_instants)
def test_the_intakes_body_is_the_message_models_body(order: Order, tenant_id: str, accepted_at: datetime) -> None:
    body = order_message_body(tenant_id, order.to_message(), accepted_at)
    assert body == order_message(tenant_id, order, accepted_at).to_body()
    assert parse_order_message(body).order == order  # and the consumer reads it back as sent
