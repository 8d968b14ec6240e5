"""Deliveries end to end: outbox from the change feed, Standard Webhooks signatures
verified by the reference library, retries, Retry-After, 410, rotation, replay."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.store.layout import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from shared.webhooks.delivery import SCHEDULE
from shared.webhooks.service import delivery_pk
from tests.conftest import auth, drain, order_body


def _verify(secret: str, received) -> dict:  # type: ignore[no-untyped-def]
    return Webhook(secret).verify(received.body, received.headers)


def test_a_committed_order_reaches_the_receiver_signed(platform, tenant, client, receiver, allow_loopback) -> None:
    view, secret = platform.webhooks.register("acme", receiver.url + "/hook", ["transaction.committed"], "erp")
    assert secret.startswith("whsec_") and len(secret) > 6 + 32
    assert client.post("/v1/orders", json=order_body(), headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    report = platform.webhook_worker.drain()
    assert report.succeeded == 1
    [got] = receiver.received
    payload = _verify(secret, got)  # the reference receiver library, unchanged
    assert payload["type"] == "transaction.committed"
    assert payload["data"]["customerId"] == "c1" and payload["data"]["points"] == 100
    assert got.headers["webhook-id"].startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - int(__import__("time").time())) < 30
    # Redelivered change-feed batches add nothing: the outbox is idempotent.
    platform.projector.apply(platform.store.changes("ledger", 0, 1000) and
                             [c.doc for c in platform.store.changes("ledger", 0, 1000)])
    assert platform.webhook_worker.drain().sent == 0
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(got.body, got.headers)


def test_retries_follow_the_schedule_and_keep_the_id(platform, tenant, receiver, allow_loopback, clock) -> None:
    calls = []

    def flaky(handler):  # type: ignore[no-untyped-def]
        calls.append(1)
        return (500, {}, b"no") if len(calls) < 3 else (200, {}, b"ok")

    receiver.behaviour["/h"] = flaky
    _, secret = platform.webhooks.register("acme", receiver.url + "/h", ["ruleset.activated"])
    msg = platform.webhooks.rule_set_activated("acme", "rs1", 3, activated_at="2026-11-01T12:00:00.000000Z")
    assert platform.webhook_worker.run_once().failed == 1
    assert platform.webhook_worker.run_once().sent == 0  # not due yet
    clock.advance(timedelta(seconds=SCHEDULE[0] * 1.2))
    assert platform.webhook_worker.run_once().failed == 1
    clock.advance(timedelta(seconds=SCHEDULE[1] * 1.2))
    assert platform.webhook_worker.run_once().succeeded == 1
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert ids == {msg} and len(receiver.received) == 3
    for got in receiver.received:
        _verify(secret, got)
    log = platform.webhooks.attempts("acme", message_id_=msg)
    assert [a["status"] for a in sorted(log, key=lambda a: a["attempt"])] == [500, 500, 200]
    assert all(isinstance(a["latencyMs"], int) for a in log)


def test_retry_after_is_honoured_and_redirects_are_failures(platform, tenant, receiver, allow_loopback, clock) -> None:
    receiver.behaviour["/busy"] = lambda h: (429, {"Retry-After": "3600"}, b"")
    receiver.behaviour["/moved"] = lambda h: (302, {"Location": "http://169.254.169.254/latest"}, b"")
    platform.webhooks.register("acme", receiver.url + "/busy", ["ruleset.activated"])
    platform.webhooks.register("acme", receiver.url + "/moved", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    report = platform.webhook_worker.run_once()
    assert report.failed == 2
    assert [r.path for r in receiver.received].count("/moved") == 1  # the redirect was not followed
    clock.advance(timedelta(seconds=SCHEDULE[0] * 2))
    platform.webhook_worker.run_once()
    assert [r.path for r in receiver.received].count("/busy") == 1  # still waiting for Retry-After
    attempts = platform.webhooks.attempts("acme")
    assert any("redirects are not followed" in (a["error"] or "") for a in attempts)


def test_410_disables_and_five_days_of_failure_disable(platform, tenant, receiver, allow_loopback, clock) -> None:
    receiver.behaviour["/gone"] = lambda h: (410, {}, b"")
    receiver.behaviour["/down"] = lambda h: (500, {}, b"")
    gone, _ = platform.webhooks.register("acme", receiver.url + "/gone", ["ruleset.activated"])
    down, _ = platform.webhooks.register("acme", receiver.url + "/down", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.run_once()
    assert platform.webhooks.get("acme", gone["id"])["status"] == "disabled"
    assert platform.webhooks.get("acme", down["id"])["failingSince"] is not None
    for version in range(2, 10):
        clock.advance(timedelta(hours=16))
        platform.webhooks.rule_set_activated("acme", "rs1", version)
        platform.webhook_worker.run_once()
    doc = platform.webhooks.get("acme", down["id"])
    assert doc["status"] == "disabled" and "5 days" in doc["disabledReason"]


def test_rotation_signs_with_both_secrets_during_grace(platform, tenant, receiver, allow_loopback, clock) -> None:
    view, old = platform.webhooks.register("acme", receiver.url + "/r", ["ruleset.activated"])
    _, new = platform.webhooks.rotate_secret("acme", view["id"], timedelta(hours=1))
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.run_once()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    _verify(old, got)
    _verify(new, got)
    clock.advance(timedelta(hours=2))
    platform.webhooks.rule_set_activated("acme", "rs1", 2)
    platform.webhook_worker.run_once()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    _verify(new, got)
    with pytest.raises(WebhookVerificationError):
        _verify(old, got)


def test_secrets_rest_sealed_and_replay_keeps_the_id(platform, tenant, receiver, allow_loopback) -> None:
    view, secret = platform.webhooks.register("acme", receiver.url + "/s", ["ruleset.activated"])
    stored = json.dumps(platform.store.read(WEBHOOK_ENDPOINTS, "acme", view["id"]))
    raw_b64 = secret[len("whsec_"):]
    assert raw_b64 not in stored and secret not in stored
    db = open(platform.store.path, "rb").read()
    assert raw_b64.encode() not in db
    msg = platform.webhooks.rule_set_activated("acme", "rs9", 1)
    platform.webhook_worker.run_once()
    platform.webhooks.replay("acme", view["id"], msg)
    platform.webhook_worker.run_once()
    assert [r.headers["webhook-id"] for r in receiver.received] == [msg, msg]
    assert len(platform.store.query(WEBHOOK_DELIVERIES, __import__("shared.store.port", fromlist=["Query"]).Query(
        pk=delivery_pk("acme", view["id"])))) == 2


def test_messages_and_attempts_are_spread_over_partitions_by_layout(platform, tenant, receiver, allow_loopback,
                                                                   clock) -> None:
    """Issue 16: no tenant's outbox or delivery log is one logical partition."""
    from shared.store.layout import WEBHOOK_ATTEMPTS, WEBHOOK_MESSAGES, attempt_pk, message_pk
    from shared.store.port import Filter, Query

    view, _ = platform.webhooks.register("acme", receiver.url + "/p", ["ruleset.activated"])
    ids = [platform.webhooks.rule_set_activated("acme", "rs1", n) for n in range(1, 9)]
    platform.webhook_worker.run_once()
    clock.advance(timedelta(days=1))
    ids.append(platform.webhooks.rule_set_activated("acme", "rs1", 9))
    platform.webhook_worker.run_once()

    messages = platform.store.query(WEBHOOK_MESSAGES, Query(pk=None, filters=(Filter("tenantId", "=", "acme"),)))
    assert {m["id"]: m["pk"] for m in messages} == {i: message_pk("acme", i) for i in ids}
    assert len({m["pk"] for m in messages}) > 1
    assert platform.webhooks.message("acme", ids[0])["id"] == ids[0]  # still a point read

    attempts = platform.store.query(WEBHOOK_ATTEMPTS, Query(pk=None, filters=(Filter("tenantId", "=", "acme"),)))
    assert len(attempts) == 9
    assert all(a["pk"] == attempt_pk("acme", a["createdAt"]) for a in attempts)
    assert len({a["pk"] for a in attempts}) == 2  # two days
    # The delivery log walks the days: newest first, across both partitions.
    log = platform.webhooks.attempts("acme", limit=100)
    assert [a["messageId"] for a in log][0] == ids[-1] and len(log) == 9
    assert len(platform.webhooks.attempts("acme", limit=5)) == 5
