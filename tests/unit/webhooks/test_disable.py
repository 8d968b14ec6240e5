"""An endpoint the worker disables (410 Gone, or five days failing) is recorded in the
tenant's audit log and announced to the tenant's other endpoints by an
``endpoint.disabled`` event: once, even when two attempts see the 410 together, and
even when the worker that disabled it stopped before announcing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from standardwebhooks import Webhook

from shared.store.layout import WEBHOOK_ENDPOINTS


def _disabled_events(receiver, path: str, secret: str) -> list[dict]:  # type: ignore[no-untyped-def]
    out = []
    for got in receiver.received:
        if got.path == path:
            payload = Webhook(secret).verify(got.body, got.headers)  # the reference receiver
            if payload["type"] == "endpoint.disabled":
                out.append(payload["data"])
    return out


def _audit(platform, tenant_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [r for r in platform.audit.records(tenant_id, limit=1000) if r["action"] == "webhook.endpoint.disabled"]


def test_a_410_is_audited_and_announced_to_the_other_endpoints(platform, tenant, other_tenant, receiver,
                                                               allow_loopback) -> None:
    receiver.behaviour["/gone"] = lambda h: (410, {}, b"")
    gone, gone_secret = platform.webhooks.register("acme", receiver.url + "/gone", ["ruleset.activated"])
    _, same_types = platform.webhooks.register("acme", receiver.url + "/a", ["ruleset.activated"])
    _, other_types = platform.webhooks.register("acme", receiver.url + "/b", ["tier.changed"])  # subscribed or not
    _, ops_only = platform.webhooks.register("acme", receiver.url + "/ops", ["endpoint.disabled"])
    platform.webhooks.register("globex", receiver.url + "/globex", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.drain()
    doc = platform.webhooks.get("acme", gone["id"])
    assert doc["status"] == "disabled" and doc["disabledAnnounce"] is None and doc["disabledAt"]
    for path, secret in (("/a", same_types), ("/b", other_types), ("/ops", ops_only)):
        [event] = _disabled_events(receiver, path, secret)
        assert event == {"endpointId": gone["id"], "reason": "gone", "detail": "the endpoint answered 410 Gone",
                         "disabledAt": doc["disabledAt"], "failingSince": None}
    assert _disabled_events(receiver, "/gone", gone_secret) == []  # not to the disabled one itself
    assert [r.path for r in receiver.received].count("/globex") == 0  # nor to another tenant
    [record] = _audit(platform, "acme")
    assert record["target"] == f"webhook:{gone['id']}" and record["actor"] == {"keyId": "system", "role": "system"}
    assert record["after"] == {"status": "disabled", "reason": "gone"} and "410" in record["reason"]
    assert platform.audit.verify("acme")["ok"]
    assert _audit(platform, "globex") == []


def test_five_days_failing_is_audited_and_announced(platform, tenant, receiver, allow_loopback, clock) -> None:
    receiver.behaviour["/down"] = lambda h: (500, {}, b"")
    down, _ = platform.webhooks.register("acme", receiver.url + "/down", ["ruleset.activated"])
    _, watcher = platform.webhooks.register("acme", receiver.url + "/w", ["tier.changed"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.run_once()
    for version in range(2, 10):
        clock.advance(timedelta(hours=16))
        platform.webhooks.rule_set_activated("acme", "rs1", version)
        platform.webhook_worker.run_once()
    platform.webhook_worker.drain()
    doc = platform.webhooks.get("acme", down["id"])
    assert doc["status"] == "disabled" and "5 days" in doc["disabledReason"]
    [event] = _disabled_events(receiver, "/w", watcher)
    assert event["endpointId"] == down["id"] and event["reason"] == "failing"
    assert event["failingSince"] == doc["failingSince"]
    [record] = _audit(platform, "acme")
    assert record["after"]["reason"] == "failing" and record["target"] == f"webhook:{down['id']}"


def test_two_attempts_seeing_410_together_disable_and_announce_once(platform, tenant, receiver,
                                                                   allow_loopback) -> None:
    together = threading.Barrier(2, timeout=10)

    def gone_once_both_arrived(handler):  # type: ignore[no-untyped-def]
        # Without the wait, the second lane may read the endpoint already disabled by the first and
        # (rightly) cancel its send: the race this test is about would then not happen.
        try:
            together.wait()
        except threading.BrokenBarrierError:
            pass
        return 410, {}, b""

    receiver.behaviour["/gone"] = gone_once_both_arrived
    platform.webhooks.register("acme", receiver.url + "/gone", ["ruleset.activated"])
    _, watcher = platform.webhooks.register("acme", receiver.url + "/w", ["tier.changed"])
    for version in range(1, 5):  # several due at once: both lanes of the endpoint get a 410
        platform.webhooks.rule_set_activated("acme", "rs1", version)
    platform.webhook_worker.drain()
    assert [r.path for r in receiver.received].count("/gone") >= 2
    assert len(_disabled_events(receiver, "/w", watcher)) == 1
    assert len(_audit(platform, "acme")) == 1


def test_a_disable_left_unannounced_by_a_stopped_worker_is_announced_once(platform, tenant, receiver,
                                                                         allow_loopback, clock) -> None:
    stuck, _ = platform.webhooks.register("acme", receiver.url + "/stuck", ["ruleset.activated"])
    _, watcher = platform.webhooks.register("acme", receiver.url + "/w", ["tier.changed"])
    doc = platform.store.read(WEBHOOK_ENDPOINTS, "acme", stuck["id"])
    # What a worker that stopped right after disabling leaves behind.
    platform.store.upsert(WEBHOOK_ENDPOINTS, dict(doc, **platform.webhooks.disabled_fields("gone", "answered 410")))
    platform.webhooks.cache.invalidate("acme")
    platform.webhook_worker.run_once()
    assert _audit(platform, "acme") == []  # too fresh: the worker that disabled it may still be announcing
    clock.advance(timedelta(minutes=2))
    platform.webhook_worker.drain()
    platform.webhook_worker.drain()
    assert len(_disabled_events(receiver, "/w", watcher)) == 1
    assert len(_audit(platform, "acme")) == 1
    assert platform.webhooks.get("acme", stuck["id"])["disabledAnnounce"] is None


def test_re_enabling_clears_the_disable_and_a_later_one_is_announced_again(platform, tenant, receiver,
                                                                           allow_loopback, clock) -> None:
    state = {"status": 410}
    receiver.behaviour["/flip"] = lambda h: (state["status"], {}, b"")
    flip, _ = platform.webhooks.register("acme", receiver.url + "/flip", ["ruleset.activated"])
    _, watcher = platform.webhooks.register("acme", receiver.url + "/w", ["tier.changed"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.drain()
    view = platform.webhooks.update("acme", flip["id"], enabled=True)
    assert view["status"] == "active" and view["disabledAt"] is None
    clock.advance(timedelta(seconds=1))
    platform.webhooks.rule_set_activated("acme", "rs1", 2)
    platform.webhook_worker.drain()
    events = _disabled_events(receiver, "/w", watcher)
    assert len(events) == 2 and events[0]["disabledAt"] != events[1]["disabledAt"]
    assert len(_audit(platform, "acme")) == 2


@pytest.mark.parametrize("cause", ["gone", "failing"])
def test_an_audit_log_failing_at_disable_time_leaves_it_for_the_sweep(platform, tenant, receiver, allow_loopback,
                                                                     clock, cause: str) -> None:
    receiver.behaviour["/x"] = lambda h: (410 if cause == "gone" else 500, {}, b"")
    bad, _ = platform.webhooks.register("acme", receiver.url + "/x", ["ruleset.activated"])
    _, watcher = platform.webhooks.register("acme", receiver.url + "/w", ["tier.changed"])
    real = platform.webhooks.audit

    class Unavailable:
        def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise OSError("the audit store is unreachable")

    platform.webhooks.audit = Unavailable()
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    platform.webhook_worker.run_once()
    for version in range(2, 10 if cause == "failing" else 2):  # five days of failures
        clock.advance(timedelta(hours=16))
        platform.webhooks.rule_set_activated("acme", "rs1", version)
        platform.webhook_worker.run_once()
    doc = platform.webhooks.get("acme", bad["id"])
    assert doc["status"] == "disabled" and doc["disabledAnnounce"] == "pending" and doc["disabledCode"] == cause
    # The attempt that disabled it was recorded and its delivery rescheduled or closed, not left
    # leased: every delivery counts exactly the attempts the log holds for it.
    log = platform.webhooks.attempts("acme", bad["id"], limit=1000)
    for delivery in platform.webhooks.deliveries("acme", bad["id"], limit=1000):
        assert delivery["attempts"] == sum(1 for a in log if a["deliveryId"] == delivery["id"]), delivery
    platform.webhooks.audit = real
    clock.advance(timedelta(minutes=2))
    platform.webhook_worker.drain()
    assert len(_audit(platform, "acme")) == 1
    assert len(_disabled_events(receiver, "/w", watcher)) == 1  # published once, though tried twice
    assert platform.webhooks.get("acme", bad["id"])["disabledAnnounce"] is None
