"""Work items and the webhook outbox marker on both store adapters: the due query
(``in``, a range on ``dueAt``, ordered), the ETag-guarded claim and cursor writes,
and the marker's conditional writes, as the Cosmos adapter sends them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from shared.clock import ManualClock
from shared.store.port import DocumentStore
from shared.webhooks.outbox import OutboxMarker
from shared.workitems import DONE, QUEUED, Step, WorkItems


def test_items_are_claimed_once_worked_in_slices_and_resumed(store: DocumentStore) -> None:
    clock = ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))
    done: list[tuple[str, int]] = []

    def count(params: Mapping[str, Any], cursor: Any) -> Step:
        n = (cursor or 0) + 1
        done.append((params["tenantId"], n))
        return Step(n, done=n >= 3)

    items = WorkItems(store, clock, {"count": count}, owner="a")
    other = WorkItems(store, clock, {"count": count}, owner="b")
    for tenant in ("t2", "t1"):
        assert items.enqueue("count", tenant, "2026-11-01", {"tenantId": tenant})
        clock.advance(timedelta(seconds=1))
    assert not items.enqueue("count", "t1", "2026-11-01", {"tenantId": "t1"})
    assert [d["key"] for d in items.due()] == ["t2", "t1"]  # oldest due first

    [first, _] = items.due()
    assert items._claim(first) is not None  # noqa: SLF001
    assert other._claim(first) is None  # noqa: SLF001 - stale ETag
    assert [d["key"] for d in other.due()] == ["t1"]  # the leased one is not due

    # A run out of budget after one slice: queued, resumable from its cursor.
    ticks = iter([0.0, 0.0, 0.0, 100.0, 100.0, 100.0])
    report = other.run(budget_seconds=50.0, monotonic=lambda: next(ticks, 100.0))
    assert report.resumable and other.list(status=QUEUED)[0]["cursor"] == 1
    clock.advance(timedelta(minutes=4))  # a's lease on t2 runs out
    other.run()
    assert sorted(done) == [("t1", 1), ("t1", 2), ("t1", 3), ("t2", 1), ("t2", 2), ("t2", 3)]
    assert {d["status"] for d in other.list()} == {DONE}


def test_the_outbox_marker_settles_and_a_concurrent_note_keeps_it_due(store: DocumentStore) -> None:
    clock = ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))
    outbox = OutboxMarker(store, clock)
    assert outbox.check().idle is False  # no marker: look
    assert outbox.settle(lambda: None) is not None
    assert outbox.check().idle is True
    outbox.note_due()
    assert outbox.check().idle is False

    def meanwhile() -> str | None:
        outbox.note_due()
        return None

    assert outbox.settle(meanwhile) is None
    assert outbox.check().idle is False
