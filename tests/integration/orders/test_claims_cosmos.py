"""Order claims on Cosmos DB (cosmosdb-server): the claim is a conditional create in
the order's one logical partition, so of concurrent sends exactly one wins there
too; the relay's query finds unpublished claims across partitions; ingestion
reads a batch's claims with one ``read_many`` (the SDK's ``read_items``).

Nothing here relies on a batch: every claim is a single-operation create, every
confirmation a single ETag-guarded replace. The orders are ingested by the real
handler over the Cosmos store, from a local queue (Event Hubs has no runnable peer
here)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from shared.app.orders import OrderIntake
from shared.bus.port import BusMessage
from shared.clock import ManualClock
from shared.domain.orders import Order
from shared.errors import Conflict, StoreUnavailable, ValidationFailed
from shared.platform import Platform
from shared.store.layout import ORDER_STATUS, order_pk
from tests.conftest import order_body, run_in_threads

pytestmark = pytest.mark.cosmos

N = 20


def race(platform: Platform, batches: Sequence[list[Order]]) -> list[Any]:
    answers: list[Any] = [None] * len(batches)

    def send(index: int) -> None:
        try:
            answers[index] = platform.intake.accept("acme", batches[index])
        except (ValidationFailed, Conflict) as refused:
            answers[index] = refused

    run_in_threads(send, [(i,) for i in range(len(batches))], timeout=120)
    assert all(a is not None for a in answers)
    return answers




def test_concurrent_sends_of_one_order_id_have_one_winner_on_cosmos(cosmos_platform: Platform) -> None:
    bodies = [[Order.model_validate(order_body(customer_id=f"c{1 + n % 4}", order_id="dup", amount=f"{1 + n}.00"))]
              for n in range(N)]
    answers = race(cosmos_platform, bodies)
    winners = [i for i, a in enumerate(answers) if isinstance(a, list)]
    assert len(winners) == 1, answers
    [accepted] = answers[winners[0]]
    assert accepted.newly_queued
    for index, answer in enumerate(answers):
        if index != winners[0]:
            assert isinstance(answer, ValidationFailed) and answer.problems[0].field == "orderId"
            with pytest.raises(ValidationFailed) as sequential:
                cosmos_platform.intake.accept("acme", bodies[index])
            assert sequential.value.problems == answer.problems
    assert cosmos_platform.bus.depth() == 1
    claim = cosmos_platform.store.read(ORDER_STATUS, order_pk("acme", "dup"), "dup")
    assert claim["customerId"] == accepted.customer_id and "publishDue" not in claim


def test_concurrent_twins_and_a_shared_key_on_cosmos(cosmos_platform: Platform) -> None:
    twin = [Order.model_validate(order_body(order_id="twin"))]
    keyed = [[Order.model_validate(order_body(customer_id="c2", order_id=f"k{n}", idempotencyKey="till-7"))]
             for n in range(N // 2)]
    answers = race(cosmos_platform, [twin] * (N // 2) + keyed)
    twins, keys = answers[:N // 2], answers[N // 2:]
    assert all(isinstance(a, list) for a in twins) and sum(a[0].newly_queued for a in twins) == 1
    assert len({str(a[0].status) for a in twins}) == 1  # every twin got the same answer
    key_winners = [a for a in keys if isinstance(a, list)]
    assert len(key_winners) == 1 and all(isinstance(a, Conflict) for a in keys if not isinstance(a, list))
    assert cosmos_platform.bus.depth() == 2


def test_ingestion_on_cosmos_credits_claimed_orders_once_and_poisons_a_stray(cosmos_platform: Platform) -> None:
    cosmos_platform.intake.accept("acme", [Order.model_validate(order_body(order_id=f"o{n}", amount="2.00"))
                                           for n in range(3)])
    stray = {"type": "order.received", "version": 1, "tenantId": "acme", "acceptedAt": "2026-11-01T12:00:00Z",
             "order": Order.model_validate(order_body(order_id="o0", amount="9.00")).to_message()}
    bodies = [d.body for d in cosmos_platform.bus.claim(10)]
    # (No redelivery in the same call: the ledger's duplicate check relies on batch
    # atomicity, which the emulator lacks; the service has it.)
    report = cosmos_platform.ingest.handle(bodies + [stray])
    assert report.credited == 3 and report.unclaimed == 1
    assert cosmos_platform.ledger.head("acme", "c1").balance == 60


class DownBus:
    def publish(self, messages: Sequence[BusMessage]) -> None:
        raise StoreUnavailable("the bus is down")

    def close(self) -> None:
        pass


def test_the_relay_finds_and_publishes_a_stranded_claim_on_cosmos(cosmos_platform: Platform,
                                                                   clock: ManualClock) -> None:
    from shared.app.orders import RELAY_GRACE
    from shared.app.relay import OrderRelay

    p = cosmos_platform
    intake = OrderIntake(p.store, DownBus(), p.tenants, p.customers, p.ledger, p.clock)
    [accepted] = intake.accept("acme", [Order.model_validate(order_body(order_id="stranded"))])
    assert accepted.newly_queued and p.bus.depth() == 0
    relay = OrderRelay(p.store, p.event_bus, p.clock)
    assert relay.run_once().published == 0
    clock.advance(RELAY_GRACE + timedelta(seconds=1))
    report = relay.run_once()
    assert report.published == 1 and report.confirmed == 1 and p.bus.depth() == 1
    assert relay.run_once().published == 0
    report = p.ingest.handle([d.body for d in p.bus.claim(10)])
    assert report.credited == 1 and p.ledger.head("acme", "c1").balance == 100
