"""A unit of deliveries (one endpoint's, sent one after the other on one connection) stays
within what the API has said and within its lease. Found by an outside review: a disable,
delete or new URL confirmed by the API while a unit ran did not stop the unit's remaining
sends (the endpoint was read once per unit of up to 25); a unit of slow answers outlived its
40 s lease, so a second worker sent the same deliveries meanwhile; a ``Retry-After`` of
non-ASCII digits raised in the worker and left the delivery re-sent forever, unrecorded."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shared.webhooks.delivery import MAX_RETRY_AFTER, DeliveryWorker, retry_after_seconds
from shared.webhooks.http import PinnedSender


@pytest.mark.parametrize("change", ["disable", "delete", "new-url"])
def test_an_endpoint_change_the_api_confirmed_stops_the_rest_of_the_unit(platform, tenant, receiver,
                                                                         allow_loopback, change) -> None:  # type: ignore
    view, _ = platform.webhooks.register("acme", receiver.url + "/h", ["ruleset.activated"])
    for n in range(6):
        platform.webhooks.rule_set_activated("acme", f"rs{n}", 1)
    changed = threading.Event()
    after: list[str] = []

    def answer(handler):  # type: ignore[no-untyped-def]
        if changed.is_set():
            after.append(handler.path)
        else:
            changed.set()
            if change == "disable":
                platform.webhooks.update("acme", view["id"], enabled=False)
            elif change == "delete":
                platform.webhooks.delete("acme", view["id"])
            else:
                platform.webhooks.update("acme", view["id"], url=receiver.url + "/new")
        return (204, {}, b"")

    receiver.behaviour["/h"] = receiver.behaviour["/new"] = answer
    platform.webhook_worker.per_endpoint_concurrency = 1  # one unit at a time: none in flight at the change
    platform.webhook_worker.run_once()
    assert after == (["/new"] * 5 if change == "new-url" else []), after


def test_a_unit_of_slow_answers_never_outlives_its_lease(platform, tenant, receiver, allow_loopback,
                                                         clock) -> None:  # type: ignore
    """A full unit whose every answer takes 90 % of the attempt deadline lasts longer than its
    lease; a second worker looks for due work once the lease has run out. No delivery is sent
    twice, and every one is sent."""
    worker = platform.webhook_worker
    platform.webhooks.register("acme", receiver.url + "/h", ["ruleset.activated"])
    for n in range(worker.per_unit):
        platform.webhooks.rule_set_activated("acme", f"rs{n}", 1)
    other = DeliveryWorker(platform.store, clock, platform.webhooks, sender=PinnedSender(deadline=10.0))
    received: Counter[str] = Counter()
    looked = threading.Event()  # the second worker looks once; its own sends answer at once
    answer_takes = timedelta(seconds=0.9 * worker._sender.deadline)  # noqa: SLF001
    lease_ends = clock.now() + worker._lease_for  # noqa: SLF001
    assert answer_takes * worker.per_unit > worker._lease_for, "the unit would fit in its lease"  # noqa: SLF001

    def slow(handler):  # type: ignore[no-untyped-def]
        received[handler.headers["webhook-id"]] += 1
        if looked.is_set():
            return (204, {}, b"")
        clock.advance(answer_takes)
        if clock.now() > lease_ends:
            looked.set()
            other.run_once()
        return (204, {}, b"")

    receiver.behaviour["/h"] = slow
    worker.per_endpoint_concurrency = 1  # the simulated time is one unit's, not two at once
    try:
        worker.run_once()
        clock.advance(timedelta(minutes=5))
        worker.run_once()
    finally:
        other.close()
    assert looked.is_set()
    assert len(received) == worker.per_unit and set(received.values()) == {1}, received


@given(st.text(max_size=40))
@example("\u00b2")  # a superscript two: str.isdigit() says yes, float() says no
@example("\u0663")  # an Arabic-Indic three
@example("9" * 400)
def test_any_retry_after_header_is_a_bounded_delay_or_none(value: str) -> None:
    delay = retry_after_seconds(value, datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert delay is None or 0 <= delay <= MAX_RETRY_AFTER
