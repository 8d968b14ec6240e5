"""Metrics recorded outside the order flow, each by the code that decides: a
partner's circuit breaker state, a reservation's settlement, a 410 from a
webhook endpoint. Values, not presence."""

from __future__ import annotations

import pytest

from shared.spend.circuit import CircuitBreaker
from shared.spend.partners import PartnerCallFailed, PartnerReceipt, PartnerRequest, ResilientPartner, RetryPolicy
from shared.telemetry import names
from tests.conftest import auth
from tests.unit.spend.conftest import fund
from tests.unit.webhooks.conftest import allow_loopback, receiver  # noqa: F401 - fixtures


class Partner:
    def __init__(self) -> None:
        self.down = True

    def fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        if self.down:
            raise PartnerCallFailed("503", permanent=False)
        return PartnerReceipt("P-1")


def test_the_circuit_state_follows_the_breaker(meter) -> None:
    clock = [0.0]
    inner = Partner()
    partner = ResilientPartner("air", inner, CircuitBreaker(2, 30.0, now=lambda: clock[0]),
                               RetryPolicy(max_attempts=1), sleep=lambda s: None)
    request = PartnerRequest("air", "reward", "r1", "acme", "c1", 10)
    with pytest.raises(PartnerCallFailed):
        partner.fulfil(request)
    assert meter.value(names.PARTNER_CIRCUIT_STATE, partner="air") == 0  # one failure: still closed
    with pytest.raises(PartnerCallFailed):
        partner.fulfil(request)
    assert meter.value(names.PARTNER_CIRCUIT_STATE, partner="air") == 2  # open
    clock[0] = 31.0
    inner.down = False
    assert partner.fulfil(request).partner_reference == "P-1"  # the half-open trial succeeds
    assert meter.value(names.PARTNER_CIRCUIT_STATE, partner="air") == 0


def test_a_reservation_counts_once_when_made_and_once_when_settled(client, platform, tenant, meter) -> None:
    fund(platform, "acme", "c1", 1000)
    url = "/v1/customers/c1/redemptions"
    first = client.post(url, json={"idempotencyKey": "r1", "points": 200, "mode": "reserve"},
                        headers=auth(tenant.merchant)).json()["redemptionId"]
    second = client.post(url, json={"idempotencyKey": "r2", "points": 200, "mode": "reserve"},
                         headers=auth(tenant.merchant)).json()["redemptionId"]
    assert client.post(f"{url}/{first}/confirm", headers=auth(tenant.merchant)).status_code == 201
    assert client.post(f"{url}/{first}/confirm", headers=auth(tenant.merchant)).status_code == 200  # a replay
    assert client.post(f"{url}/{second}/cancel", headers=auth(tenant.merchant)).status_code == 201
    assert client.post(url, json={"idempotencyKey": "r1", "points": 200, "mode": "reserve"},
                       headers=auth(tenant.merchant)).status_code == 200  # a replayed request
    assert meter.series(names.REDEMPTIONS) == {
        (("outcome", "reserved"), ("stage", "request")): 2,
        (("outcome", "replayed"), ("stage", "request")): 1,
        (("outcome", "confirmed"), ("stage", "settlement")): 1,
        (("outcome", "cancelled"), ("stage", "settlement")): 1,
    }


def test_a_410_is_a_gone_attempt_and_a_disabled_endpoint(platform, tenant, receiver, allow_loopback,  # noqa: F811
                                                         meter) -> None:
    from shared.telemetry import metrics

    receiver.behaviour["/gone"] = lambda h: (410, {}, b"")
    platform.webhooks.register("acme", receiver.url + "/gone", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.drain()
    assert meter.series(names.WEBHOOK_ATTEMPTS) == {(("outcome", "gone"),): 1}
    assert meter.points(names.WEBHOOK_DELIVERY_LATENCY) == []
    metrics.watch(platform)
    assert meter.value(names.WEBHOOK_ENDPOINTS_DISABLED) == 1
    assert meter.value(names.WEBHOOK_ENDPOINTS_FAILING) == 0
