"""Defence in depth: ingestion credits an order only if its message matches the
order's tenant-level claim (customer and fingerprint). Any other message is kept
in the poison store with its reason and never reaches the ledger, whatever field
differs; and the claims of a batch are read in one ``read_many``."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.app.messages import order_message
from shared.domain.orders import Order
from shared.store.layout import ORDER_STATUS
from shared.store.port import read_many as port_read_many
from tests.conftest import claimed, order_body

NOW = datetime(2026, 11, 1, 11, tzinfo=timezone.utc)


def body(**fields) -> dict:
    return order_message("acme", Order.model_validate(order_body(**fields)), NOW).to_body()


def test_a_message_without_a_claim_is_poisoned_not_credited(platform, tenant) -> None:
    report = platform.ingest.handle([body(order_id="stray")])
    assert report.credited == 0 and report.poisoned == 1 and report.unclaimed == 1
    assert platform.ledger.entries("acme", "c1") == []
    [kept] = platform.poison.list("acme")
    assert "no claim" in kept["reason"] and kept["body"]["order"]["orderId"] == "stray"
    # No status appears for it either: the order id stays free for the merchant.
    assert platform.store.read(ORDER_STATUS, "acme:stray", "stray") is None


def test_a_message_for_another_customer_than_its_claim_credits_neither(platform, tenant) -> None:
    claimed(platform, body(customer_id="c2", order_id="o1"))
    report = platform.ingest.handle([body(customer_id="c1", order_id="o1")])
    assert report.credited == 0 and report.unclaimed == 1
    assert platform.ledger.entries("acme", "c1") == [] and platform.ledger.entries("acme", "c2") == []
    assert "another customer" in platform.poison.list("acme")[0]["reason"]
    assert platform.store.read(ORDER_STATUS, "acme:o1", "o1")["customerId"] == "c2"  # the claim is untouched


# Every field of an order a forged or changed message could differ in.
MUTATIONS = st.sampled_from([
    {"amount": "10.01"}, {"amount": "99.00"}, {"channel": "store"}, {"timestamp": "2026-11-01T11:00:01Z"},
    {"items": []}, {"idempotencyKey": "other-key"}, {"cardFingerprint": "card-9"}, {"deviceId": "dev-9"},
    {"customer_id": "c3"},
])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=MUTATIONS, batch_position=st.integers(0, 2))
def test_no_changed_message_is_ever_credited_whatever_differs(platform, tenant, mutation, batch_position) -> None:
    order_id = f"m{abs(hash((str(mutation), batch_position))) % 10**9}"
    claimed(platform, body(order_id=order_id))
    changed = body(order_id=order_id, **mutation)
    neighbours = [claimed(platform, body(customer_id="c2", order_id=f"{order_id}-n{i}", amount="1.00"))
                  for i in range(2)]
    batch = neighbours[:batch_position] + [changed] + neighbours[batch_position:]
    before = platform.ledger.head("acme", "c1").balance + platform.ledger.head("acme", "c3").balance
    report = platform.ingest.handle(batch)
    assert report.unclaimed == 1 and report.credited == 2  # the matching neighbours are credited
    assert platform.ledger.head("acme", "c1").balance + platform.ledger.head("acme", "c3").balance == before
    assert platform.ledger.record("acme", mutation.get("customer_id", "c1"), f"order-{order_id}") is None
    # The unchanged message is credited afterwards: the claim was not used up.
    assert platform.ingest.handle([body(order_id=order_id)]).credited == 1


def test_the_claims_of_a_batch_are_read_in_one_call(platform, tenant, monkeypatch) -> None:
    bodies = [claimed(platform, body(customer_id=f"c{1 + n % 3}", order_id=f"b{n}")) for n in range(30)]
    calls: list[int] = []
    import shared.app.ingest as ingest_module

    def counting(store, container, keys):
        if container == ORDER_STATUS:
            calls.append(len(keys))
        return port_read_many(store, container, keys)

    monkeypatch.setattr(ingest_module, "read_many", counting)
    monkeypatch.setattr(platform.store, "read", _forbidden(platform.store.read))
    report = platform.ingest.handle(bodies)
    assert report.credited == 30 and calls == [30]


def _forbidden(read):
    def guarded(container, pk, id):
        assert container != ORDER_STATUS, "a claim read one by one"
        return read(container, pk, id)
    return guarded
