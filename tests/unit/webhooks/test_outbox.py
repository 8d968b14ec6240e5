"""The outbox marker (shared/webhooks/outbox.py): an idle delivery timer costs one
point read; an enqueue, a replay or a retry coming due makes the next round look;
a delivery noted while a round settles the marker is never lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.clock import iso
from shared.store.layout import SYSTEM, WEBHOOK_DELIVERIES
from shared.store.port import Query
from shared.webhooks.delivery import SCHEDULE
from shared.webhooks.outbox import MARKER_ID, MARKER_PK, MAX_IDLE
from shared.webhooks.service import delivery_pk


class CountingStore:
    """The platform's store, counting what a round asks of it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def read(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("read")
        return self._inner.read(*args, **kwargs)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("query")
        return self._inner.query(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def counting(platform: Any) -> CountingStore:
    store = CountingStore(platform.store)
    platform.webhook_worker._store = store  # noqa: SLF001
    platform.webhooks.outbox._store = store  # noqa: SLF001
    return store


def marker(platform: Any) -> dict[str, Any] | None:
    return platform.store.read(SYSTEM, MARKER_PK, MARKER_ID)


def test_an_idle_round_is_one_point_read(platform, tenant) -> None:  # type: ignore[no-untyped-def]
    assert marker(platform) is None
    platform.webhook_worker.run_once()  # no marker yet: the first round looks, then settles it
    settled = marker(platform)
    assert settled is not None and settled["dueAt"] == iso(platform.clock.now() + MAX_IDLE)
    store = counting(platform)
    for _ in range(5):
        platform.clock.advance(timedelta(seconds=10))
        assert platform.webhook_worker.run_once().sent == 0
    assert store.calls == ["read"] * 5  # no cross-partition query, no endpoint listing
    platform.clock.advance(MAX_IDLE)  # the safety net: a full look every MAX_IDLE at most
    store.calls.clear()
    platform.webhook_worker.run_once()
    assert "query" in store.calls


def test_an_enqueued_message_makes_the_next_round_deliver(platform, tenant, receiver, allow_loopback) -> None:  # type: ignore
    platform.webhook_worker.run_once()
    platform.webhooks.register("acme", receiver.url + "/h", ["ruleset.activated"])
    platform.webhook_worker.run_once()  # still idle: registering enqueues nothing
    assert marker(platform)["dueAt"] > iso(platform.clock.now())
    platform.webhooks.rule_set_activated("acme", "rs1", 1, activated_at="2026-11-01T12:00:00.000000Z")
    assert marker(platform)["dueAt"] <= iso(platform.clock.now())
    assert platform.webhook_worker.run_once().succeeded == 1
    assert len(receiver.received) == 1
    assert marker(platform)["dueAt"] <= iso(platform.clock.now())  # a round that sent leaves it due
    assert platform.webhook_worker.run_once().sent == 0  # the next finds nothing and settles it
    assert marker(platform)["dueAt"] == iso(platform.clock.now() + MAX_IDLE)  # nothing left: idle again


def test_a_retry_sets_the_marker_to_its_due_time(platform, tenant, receiver, allow_loopback) -> None:  # type: ignore
    receiver.behaviour["/h"] = lambda h: (500, {}, b"no")
    _, _ = platform.webhooks.register("acme", receiver.url + "/h", ["ruleset.activated"])
    platform.webhooks.rule_set_activated("acme", "rs1", 1, activated_at="2026-11-01T12:00:00.000000Z")
    assert platform.webhook_worker.run_once().failed == 1
    assert platform.webhook_worker.run_once().sent == 0  # looks, finds the retry not yet due, settles
    [delivery] = platform.store.query(WEBHOOK_DELIVERIES,
                                      Query(pk=delivery_pk("acme", platform.webhooks.list("acme")[0]["id"])))
    assert marker(platform)["dueAt"] == delivery["nextAttemptAt"]
    store = counting(platform)
    assert platform.webhook_worker.run_once().sent == 0 and store.calls == ["read"]  # not due yet: idle
    receiver.behaviour["/h"] = lambda h: (204, {}, b"")
    platform.clock.advance(timedelta(seconds=SCHEDULE[0] * 1.2))
    assert platform.webhook_worker.run_once().succeeded == 1


def test_a_delivery_noted_while_a_round_settles_is_not_lost(platform, tenant) -> None:  # type: ignore
    outbox = platform.webhooks.outbox
    platform.webhook_worker.run_once()

    def earliest_with_an_enqueue_meanwhile() -> str | None:
        outbox.note_due()  # another instance enqueues after the sweep began
        return None

    assert outbox.settle(earliest_with_an_enqueue_meanwhile) is None
    assert outbox.check().idle is False  # stays due: the next round looks


def test_a_round_that_raises_leaves_the_marker_due(platform, tenant, monkeypatch) -> None:  # type: ignore
    platform.webhooks.outbox.note_due()
    monkeypatch.setattr(platform.webhook_worker, "_round", lambda: (_ for _ in ()).throw(RuntimeError("store down")))
    try:
        platform.webhook_worker.run_once()
    except RuntimeError:
        pass
    assert platform.webhooks.outbox.check().idle is False


def test_note_due_writes_only_when_the_marker_would_not_look(platform) -> None:  # type: ignore[no-untyped-def]
    outbox = platform.webhooks.outbox
    outbox.note_due()
    first = marker(platform)
    outbox.note_due()  # already due by now: a read, no write
    assert marker(platform)["_etag"] == first["_etag"]
    outbox.note_due(iso(platform.clock.now() - timedelta(seconds=5)))  # earlier: moves it
    assert marker(platform)["dueAt"] < first["dueAt"]
