"""Between the claim and the publish: nothing lost, nothing stuck, nothing twice.

A bus that fails after the claim, a process that dies there, an acknowledgement
that is lost after the message was taken: the claim stays with ``publishDue``,
the relay publishes it once that has passed, and the order is credited exactly
once, even when the relay races a late original publish."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from shared.app.claims import PUBLISH_DUE
from shared.app.orders import RELAY_GRACE, OrderIntake
from shared.app.relay import OrderRelay
from shared.bus.port import BusMessage
from shared.domain.orders import Order
from shared.errors import StoreUnavailable
from shared.jobs import JOBS
from shared.platform import Platform
from shared.store.layout import ORDER_STATUS, order_pk
from shared.store.port import Filter, Query
from tests.conftest import drain, order_body


class FailingBus:
    """The platform's bus, failing as asked: ``before`` (nothing taken), ``after``
    (taken, but the caller hears a failure: a lost acknowledgement), or ``crash``
    (not an error the intake expects: the process dies here)."""

    def __init__(self, inner, mode: str) -> None:
        self.inner, self.mode = inner, mode

    def publish(self, messages: Sequence[BusMessage]) -> None:
        if self.mode == "after":
            self.inner.publish(messages)
        if self.mode == "crash":
            raise RuntimeError("the process died between the claim and the publish")
        raise StoreUnavailable("the bus is down")

    def close(self) -> None:
        pass


def intake_with(platform: Platform, bus) -> OrderIntake:
    return OrderIntake(platform.store, bus, platform.tenants, platform.customers, platform.ledger, platform.clock)


def unpublished(platform: Platform) -> list[dict]:
    return platform.store.query(ORDER_STATUS, Query(pk=None, filters=(Filter(PUBLISH_DUE, ">", ""),), limit=100))


def relay(platform: Platform) -> OrderRelay:
    return OrderRelay(platform.store, platform.event_bus, platform.clock)


def order(order_id: str = "r1", amount: str = "10.00") -> Order:
    return Order.model_validate(order_body(order_id=order_id, amount=amount))


@pytest.mark.parametrize("mode", ["before", "after", "crash"])
def test_a_publish_that_fails_after_the_claim_is_relayed_and_credited_once(platform, tenant, clock, mode) -> None:
    intake = intake_with(platform, FailingBus(platform.bus, mode))
    if mode == "crash":
        with pytest.raises(RuntimeError):
            intake.accept("acme", [order()])
    else:
        [accepted] = intake.accept("acme", [order()])
        # The claim is durable: the order is accepted, and the relay will publish it.
        assert accepted.newly_queued and accepted.status["status"] == "queued"
    assert [c["orderId"] for c in unpublished(platform)] == ["r1"]
    depth = platform.bus.depth()

    assert relay(platform).run_once().published == 0  # not before its grace: the intake may still publish
    clock.advance(RELAY_GRACE + timedelta(seconds=1))
    report = relay(platform).run_once()
    assert report.published == 1 and report.confirmed == 1
    assert platform.bus.depth() == depth + 1 and unpublished(platform) == []
    assert relay(platform).run_once().published == 0  # confirmed: not published again

    drain(platform)
    assert [e["referenceOrderId"] for e in platform.ledger.entries("acme", "c1")] == ["r1"]
    assert platform.ledger.head("acme", "c1").balance == 100
    assert platform.intake.status("acme", "r1")["status"] == "credited"
    assert platform.poison.list("acme") == []
    # A resend finds the claim and answers the outcome: never queued again.
    [again] = platform.intake.accept("acme", [order()])
    assert not again.newly_queued and again.status["status"] == "credited"


def test_the_relay_racing_a_late_original_publish_still_credits_once(platform, tenant, clock) -> None:
    intake = intake_with(platform, FailingBus(platform.bus, "after"))  # published, but not confirmed
    intake.accept("acme", [order("late", "3.00")])
    clock.advance(RELAY_GRACE + timedelta(seconds=1))
    relay(platform).run_once()
    assert platform.bus.depth() == 2  # the original and the relay's copy
    drain(platform)
    assert [e["referenceOrderId"] for e in platform.ledger.entries("acme", "c1")] == ["late"]
    assert platform.ledger.head("acme", "c1").balance == 30 and platform.poison.list("acme") == []


def test_the_relay_never_overwrites_a_final_status(platform, tenant, clock) -> None:
    intake = intake_with(platform, FailingBus(platform.bus, "after"))
    intake.accept("acme", [order("final")])
    [claim] = unpublished(platform)
    drain(platform)  # credited and projected: the projector's status replaced the claim
    assert unpublished(platform) == []
    status = platform.store.read(ORDER_STATUS, order_pk("acme", "final"), "final")
    assert status["status"] == "credited" and status["customerId"] == "c1" and status["fingerprint"]
    # A relay that read the claim before the projector wrote: its ETag-guarded confirm is refused.
    from shared.app.claims import published
    from shared.store.port import PartitionBatch, Upsert
    work = [PartitionBatch(claim["pk"], [Upsert(published(claim), if_match=claim["_etag"])])]
    platform.store.batches(ORDER_STATUS, work)
    assert work[0].error is not None
    assert platform.intake.status("acme", "final")["status"] == "credited"


def test_a_normal_send_leaves_nothing_for_the_relay(platform, tenant, clock) -> None:
    platform.intake.accept("acme", [order("n1"), order("n2")])
    assert unpublished(platform) == []
    clock.advance(timedelta(hours=1))
    assert relay(platform).run_once().published == 0


def test_the_relay_is_a_timer_job_with_a_bound() -> None:
    [job] = [j for j in JOBS if j.name == "order-relay"]
    assert job.every_seconds <= 15 and job.schedule.startswith("*/15 ")
    assert RELAY_GRACE <= timedelta(seconds=30)


def test_the_relay_job_runs_the_relay(platform, tenant, clock) -> None:
    intake_with(platform, FailingBus(platform.bus, "before")).accept("acme", [order("j1")])
    clock.advance(RELAY_GRACE + timedelta(seconds=1))
    [job] = [j for j in JOBS if j.name == "order-relay"]
    assert job.run(platform).published == 1
    drain(platform)
    assert platform.ledger.head("acme", "c1").balance == 100
