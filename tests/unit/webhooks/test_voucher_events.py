"""Every voucher change reaches the webhook outbox, even when the outbox cannot be written
at that moment: the change carries the event it owes in the same document write, and the
request's retry or the ``vouchers`` job publishes it (shared/vouchers/service.py).

An outside review (a merchant's webhook consumer): one failed write of the outbox lost
``voucher.issued`` for good, since the retry of the purchase found the voucher and
published nothing; redeemed, cancelled and expired events the same way. The class of
test: each voucher event with the outbox failing once at the moment of the change."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import StoreError
from shared.jobs import BY_NAME, run_job
from shared.store.layout import WEBHOOK_MESSAGES
from shared.store.port import Filter, Query
from tests.conftest import auth
from tests.unit.spend.conftest import fund

TEN_OFF = {"rewardId": "ten-off", "name": "10 EUR off", "pointsCost": 500, "type": "voucher",
           "voucher": {"value": {"amount": "10.00", "currency": "EUR"}, "validDays": 30}}
TYPES = ["voucher.issued", "voucher.redeemed", "voucher.cancelled", "voucher.expired"]


class _OutboxDown:
    """The store, whose next ``armed`` creates of a webhook message fail as a store outage would."""

    def __init__(self, monkeypatch, store) -> None:  # type: ignore[no-untyped-def]
        self.armed = 0
        create = store.create

        def failing(container, doc):  # type: ignore[no-untyped-def]
            if container == WEBHOOK_MESSAGES and self.armed:
                self.armed -= 1
                raise StoreError("injected: the outbox's store is unavailable")
            return create(container, doc)

        monkeypatch.setattr(store, "create", failing)


def _messages(platform, event_type: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [m for m in platform.store.query(WEBHOOK_MESSAGES, Query(pk=None, filters=(
        Filter("eventType", "=", event_type),), limit=100)) if m["tenantId"] == "acme"]


@pytest.fixture
def shop(platform, tenant, client, receiver, allow_loopback, monkeypatch):  # type: ignore[no-untyped-def]
    endpoint = client.post("/v1/webhooks/endpoints", json={"url": receiver.url + "/v", "eventTypes": TYPES},
                           headers=auth(tenant.admin))
    assert endpoint.status_code == 201, endpoint.text
    assert client.post("/v1/rewards", json=TEN_OFF, headers=auth(tenant.admin)).status_code == 201
    fund(platform, "acme", "c1", 2000)
    return _OutboxDown(monkeypatch, platform.store)


def _buy(client, tenant, key: str = "buy-1"):  # type: ignore[no-untyped-def]
    return client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": key, "rewardId": "ten-off"},
                       headers=auth(tenant.merchant))


def test_issued_survives_an_outbox_outage_through_the_retry(platform, tenant, client, shop) -> None:  # type: ignore
    shop.armed = 1
    first = _buy(client, tenant)
    assert first.status_code == 201, first.text
    assert _messages(platform, "voucher.issued") == []
    assert _buy(client, tenant).status_code == 200  # the merchant's retry
    [message] = _messages(platform, "voucher.issued")
    assert first.json()["voucher"]["voucherId"] in message["body"]
    assert _buy(client, tenant).status_code == 200
    assert len(_messages(platform, "voucher.issued")) == 1  # once, whatever the retries


def test_issued_survives_an_outbox_outage_through_the_job(platform, tenant, client, shop) -> None:  # type: ignore
    shop.armed = 1
    assert _buy(client, tenant).status_code == 201
    assert run_job(BY_NAME["vouchers"], platform)["announced"] == 1
    assert len(_messages(platform, "voucher.issued")) == 1
    assert run_job(BY_NAME["vouchers"], platform)["announced"] == 0


def test_redeemed_and_cancelled_survive_an_outbox_outage(platform, tenant, client, shop) -> None:  # type: ignore
    used = _buy(client, tenant, "b1").json()["voucher"]
    kept = _buy(client, tenant, "b2").json()["voucher"]
    shop.armed = 1
    redeem = client.post(f"/v1/vouchers/{used['code']}/redeem", json={"channel": "in-store", "orderId": "o-1"},
                         headers={**auth(tenant.merchant), "Idempotency-Key": "pos-1"})
    assert redeem.status_code == 201, redeem.text
    shop.armed = 1
    cancel = client.post(f"/v1/customers/c1/vouchers/{kept['voucherId']}/cancel", headers=auth(tenant.merchant))
    assert cancel.status_code == 201, cancel.text
    assert _messages(platform, "voucher.redeemed") == [] and _messages(platform, "voucher.cancelled") == []
    assert run_job(BY_NAME["vouchers"], platform)["announced"] == 2
    assert len(_messages(platform, "voucher.redeemed")) == 1 and len(_messages(platform, "voucher.cancelled")) == 1


def test_expired_survives_an_outbox_outage(platform, tenant, client, clock, shop) -> None:  # type: ignore
    assert _buy(client, tenant).status_code == 201
    clock.advance(timedelta(days=31))
    shop.armed = 1
    report = run_job(BY_NAME["vouchers"], platform)
    # The expiry's own publish failed (the outage was used up); the run's sweep published it.
    assert shop.armed == 0 and report["expired"] == 1 and report["announced"] == 1, report
    assert run_job(BY_NAME["vouchers"], platform)["announced"] == 0
    [message] = _messages(platform, "voucher.expired")
    assert '"status":"expired"' in message["body"]
