"""The ingest handler: rejections are recorded, malformed messages poisoned,
redeliveries change nothing, rule results land on the ledger as drafted."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from shared.app.messages import order_message
from shared.domain.orders import Order
from shared.earning import CustomerContext, EarnLot, EarnResult
from shared.store.layout import POISON
from shared.store.port import Query
from tests.conftest import add_customer, claimed, drain

NOW = datetime(2026, 11, 1, 11, tzinfo=timezone.utc)


def message(customer: str = "c1", order_id: str = "o1", amount: str = "10", currency: str = "EUR") -> dict:
    order = Order(customerId=customer, orderId=order_id, amount=Decimal(amount), currency=currency, timestamp=NOW)
    return order_message("acme", order, NOW).to_body()


def sent(platform, **fields: str) -> dict:
    """A message of an order the API accepted: its claim is written first (ingestion
    credits only orders that match their claim)."""
    return claimed(platform, message(**fields))


def test_an_order_whose_customer_vanished_is_rejected_with_its_reason(platform, tenant) -> None:
    report = platform.ingest.handle([sent(platform, customer="ghost")])
    assert report.rejected == 1 and report.credited == 0
    drain(platform)
    status = platform.intake.status("acme", "o1")
    assert status["status"] == "rejected" and status["reason"]["code"] == "unknown-customer"
    assert platform.ledger.entries("acme", "ghost") == []
    again = platform.ingest.handle([sent(platform, customer="ghost")])
    assert again.duplicates == 1, "a redelivered rejection replays, it is not decided twice"


def test_a_currency_change_between_accept_and_ingest_rejects_not_miscredits(platform, tenant) -> None:
    report = platform.ingest.handle([sent(platform, currency="USD")])
    assert report.rejected == 1
    assert platform.ledger.head("acme", "c1").balance == 0


def test_malformed_messages_go_to_the_poison_store_and_the_rest_proceed(platform, tenant) -> None:
    good = sent(platform)
    report = platform.ingest.handle([{"type": "order.received", "tenantId": "acme"}, b"not json", good])
    assert report.poisoned == 2 and report.credited == 1
    poisoned = platform.store.query(POISON, Query(pk=None, limit=10))
    assert {p["pk"] for p in poisoned} == {"acme", "_unknown"}
    assert all("malformed" in p["reason"] for p in poisoned)


def test_an_unknown_tenant_is_poisoned_not_dropped(platform) -> None:
    body = message()
    body["tenantId"] = "nobody"
    report = platform.ingest.handle([body])
    assert report.poisoned == 1
    assert platform.poison.list("nobody")[0]["body"]["tenantId"] == "nobody"


def test_the_order_count_and_lifetime_points_reach_the_rules(platform, tenant) -> None:
    seen: list[CustomerContext] = []

    class Recording:
        def for_tenant(self, tenant_settings, customer_id):
            return self

        def evaluate(self, tenant_settings, order, customer):
            seen.append(customer)
            return EarnResult(lots=(EarnLot(7, rule="a"), EarnLot(3, rule="b")), rule_set_id="rs-1",
                              rule_set_version=4, arm="B", tags_to_add=("coffee-lover",))

    platform.ingest._rules = Recording()
    platform.ingest.handle([sent(platform, order_id="o1"), sent(platform, order_id="o2")])
    assert [(c.order_count, c.lifetime_points) for c in seen] == [(0, 0), (1, 10)]
    entries = platform.ledger.entries("acme", "c1", newest_first=False)
    assert [(e["signedAmount"], e["ruleSetId"], e["ruleSetVersion"], e["arm"]) for e in entries] == [
        (7, "rs-1", 4, "B"), (3, "rs-1", 4, "B"), (7, "rs-1", 4, "B"), (3, "rs-1", 4, "B")]
    assert platform.customers.get("acme", "c1")["tags"] == ["coffee-lover"]
    assert platform.ledger.head("acme", "c1").orders_credited == 2


def test_a_zero_point_order_still_records_its_rule_set(platform, tenant) -> None:
    platform.tenants.save(platform.tenants.get("acme").model_copy(update={"points_per_unit": Decimal(0)}))
    add_customer(platform, "acme", "z1")
    platform.ingest.handle([sent(platform, customer="z1")])
    [entry] = platform.ledger.entries("acme", "z1")
    assert entry["signedAmount"] == 0 and entry["ruleSetId"] == "rate:0"
