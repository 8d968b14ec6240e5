"""One scenario through the real platform (HTTP intake, the local queue, ingestion,
the projector, webhooks, redemptions, a timer job) moves every metric by exactly
what happened: counts, histogram counts and sums, gauges, asserted as values."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from shared.bus.port import BusMessage
from shared.domain.tenants import TenantSettings
from shared.jobs import JOBS, run_job
from shared.telemetry import metrics, names
from shared.telemetry.status import collect
from tests.conftest import auth, drain, order_body
from tests.unit.webhooks.conftest import allow_loopback, receiver  # noqa: F401 - fixtures

REDEEM = "/v1/customers/{}/redemptions"


@pytest.fixture
def scenario(client, platform, tenant, meter, receiver, allow_loopback, clock):  # noqa: F811
    receiver.behaviour["/down"] = lambda h: (500, {}, b"")
    platform.webhooks.register("acme", receiver.url + "/down", ["transaction.committed"])
    platform.webhooks.register("acme", receiver.url + "/ok", ["transaction.committed"])
    for number, amount in ((1, "10.00"), (2, "20.00"), (3, "5.00")):
        answer = client.post("/v1/orders", json=order_body(f"c{number}", f"o{number}", amount),
                             headers=auth(tenant.merchant))
        assert answer.status_code == 202, answer.text
    # A resend of o1 is not a new acceptance.
    assert client.post("/v1/orders", json=order_body("c1", "o1", "10.00"), headers=auth(tenant.merchant)).status_code \
        in (200, 202)
    clock.advance(timedelta(seconds=2))  # every order waits 2 s on the bus
    platform.bus.publish([BusMessage("junk", {"not": "an order"})])  # a poisoned message
    drain(platform)
    # An order accepted in EUR, ingested after the tenant moved to USD: rejected by ingestion.
    answer = client.post("/v1/orders", json=order_body("c1", "o4", "1.00"), headers=auth(tenant.merchant))
    assert answer.status_code == 202, answer.text
    platform.tenants.save(TenantSettings(tenantId="acme", name="acme shop", currency="USD", timeZone="Europe/Paris",
                                         pointsPerUnit=Decimal("10")))
    platform.tenant_changes.forget("acme")
    drain(platform)
    refund = client.post("/v1/orders/o2/refunds", json={"refundId": "r1", "amount": "5.00", "currency": "EUR"},
                         headers=auth(tenant.merchant))
    assert refund.status_code == 201, refund.text
    redeemed = client.post(REDEEM.format("c2"), json={"idempotencyKey": "k1", "points": 100},
                           headers=auth(tenant.merchant))
    assert redeemed.status_code in (200, 201), redeemed.text
    refused = client.post(REDEEM.format("c3"), json={"idempotencyKey": "k2", "points": 100_000},
                          headers=auth(tenant.merchant))
    assert refused.status_code == 422, refused.text
    drain(platform)
    platform.webhook_worker.run_once()
    run_job(next(job for job in JOBS if job.name == "reconcile"), platform)  # fans out: one item per tenant
    run_job(next(job for job in JOBS if job.name == "work-items"), platform)  # reconciles each tenant
    return meter


def test_orders_move_the_order_counters_and_the_lags(scenario, platform) -> None:
    m = scenario
    assert m.value(names.ORDERS_ACCEPTED) == 4  # o1, o2, o3, o4: the resend is not counted
    assert m.value(names.ORDERS_CREDITED) == 3
    assert m.value(names.ORDERS_HELD) == 0
    assert m.series(names.ORDERS_REJECTED) == {(("reason", "currency-mismatch"),): 1}
    lag = m.histogram(names.INGEST_LAG)
    assert lag.count == 4 and lag.sum == pytest.approx(3 * 2.0)  # o4 was ingested at once
    # Every ledger transaction projected once: three credits, one rejection, the refund, the redemption.
    assert m.histogram(names.PROJECTION_LAG).count == 6
    # Rule evaluation: one observation per ingest batch that evaluated (the three credits came in one;
    # o4 was rejected before any rule ran), on the tenant's evaluator.
    assert m.series(names.RULE_EVALUATION_TIME) == {(("evaluator", "closure"),): 1}


def test_poison_and_redemptions_and_jobs(scenario, platform) -> None:
    m = scenario
    assert m.series(names.POISON_ITEMS) == {(("source", "ingest"),): 1}
    assert m.value(names.REDEMPTIONS, outcome="completed", stage="request") == 1
    assert m.value(names.REDEMPTIONS, outcome="refused:insufficient-points", stage="request") == 1
    assert m.value(names.JOB_RUNS, job="reconcile", outcome="ok") == 1
    assert m.histogram(names.JOB_DURATION, job="reconcile").count == 1
    assert m.value(names.JOB_RUNS, job="work-items", outcome="ok") == 1
    assert m.series(names.RECONCILIATION_DRIFT) == {(): 0}  # the series exists, at zero: nothing drifted
    assert m.value(names.DEFERRED_BATCHES) == 0
    run = collect(platform)["jobs"]
    assert next(j for j in run if j["name"] == "reconcile")["lastRun"]["outcome"] == "ok"
    assert next(j for j in run if j["name"] == "exports")["lastRun"] is None


def test_webhooks_move_attempts_latency_and_the_endpoint_gauges(scenario, platform, receiver) -> None:
    m = scenario
    # Events: three credits, the rejection is not a transaction.committed, the refund, the redemption.
    sent_ok = [r for r in receiver.received if r.path == "/ok"]
    sent_down = [r for r in receiver.received if r.path == "/down"]
    assert len(sent_ok) == len(sent_down) >= 5
    assert m.value(names.WEBHOOK_ATTEMPTS, outcome="succeeded") == len(sent_ok)
    assert m.value(names.WEBHOOK_ATTEMPTS, outcome="failed") == len(sent_down)
    assert m.histogram(names.WEBHOOK_DELIVERY_LATENCY).count == len(sent_ok)
    metrics.watch(platform)
    assert m.value(names.WEBHOOK_ENDPOINTS_FAILING) == 1
    assert m.value(names.WEBHOOK_ENDPOINTS_DISABLED) == 0
    assert m.value(names.POISON_PENDING) == 1
    assert m.value(names.BUS_BACKLOG) == 0
    assert m.value(names.PROJECTION_BEHIND) == 0


def test_a_failing_batch_is_deferred_and_a_message_out_of_attempts_goes_to_the_queue_poison(platform, meter) -> None:
    from shared.local.workers import QueueConsumer

    consumer = QueueConsumer(platform, platform.bus)
    platform.bus.max_attempts = 1

    def broken(bodies):  # type: ignore[no-untyped-def]
        raise RuntimeError("store down")

    platform.ingest.handle = broken  # type: ignore[method-assign]
    platform.bus.publish([BusMessage("k", {"any": "thing"})])
    assert consumer.step() is True
    assert meter.value(names.DEFERRED_BATCHES, source="ingest") == 1
    assert meter.value(names.POISON_ITEMS, source="queue") == 1
    assert platform.bus.poison_depth() == 1 and platform.bus.depth() == 0
