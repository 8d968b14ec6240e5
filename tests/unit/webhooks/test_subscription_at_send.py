"""An endpoint is sent only the event types it subscribes to, at every send: a retry after
it unsubscribed is cancelled, and a replay of a type it does not take is refused (409).
Before, the subscription was checked only when the event was queued (an outside review:
a message replayed to an endpoint created later and subscribed to another type arrived,
and a pending retry arrived after the type was removed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import Conflict
from shared.webhooks.delivery import SCHEDULE


def test_a_retry_after_the_type_was_unsubscribed_is_cancelled(platform, tenant, receiver, allow_loopback,
                                                              clock) -> None:  # type: ignore
    receiver.behaviour["/h"] = lambda handler: (500, {}, b"no")
    view, _ = platform.webhooks.register("acme", receiver.url + "/h", ["ruleset.activated", "tier.changed"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1)
    assert platform.webhook_worker.run_once().failed == 1
    platform.webhooks.update("acme", view["id"], event_types=["tier.changed"])
    clock.advance(timedelta(seconds=SCHEDULE[0] * 1.2))
    report = platform.webhook_worker.run_once()
    assert report.sent == 0 and report.skipped == 1 and len(receiver.received) == 1
    [task] = platform.webhooks.deliveries("acme", view["id"])
    assert task["status"] == "cancelled"


def test_a_replay_of_a_type_the_endpoint_does_not_take_is_refused(platform, tenant, receiver,
                                                                  allow_loopback) -> None:  # type: ignore
    subscribed, _ = platform.webhooks.register("acme", receiver.url + "/a", ["ruleset.activated"])
    msg = platform.webhooks.rule_set_activated("acme", "rs1", 1)
    other, _ = platform.webhooks.register("acme", receiver.url + "/b", ["tier.changed"])
    with pytest.raises(Conflict):
        platform.webhooks.replay("acme", other["id"], msg)
    platform.webhooks.replay("acme", subscribed["id"], msg)  # its own type: sent again
    platform.webhook_worker.run_once()
    assert sorted(r.path for r in receiver.received) == ["/a", "/a"]
