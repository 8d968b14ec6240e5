"""Work items (shared/workitems.py) on the embedded store: claimed once, worked in
slices from a stored cursor, resumed after a budget end or a killed worker without
redoing finished slices, retried then parked visibly, and an operator's retry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clock import ManualClock
from shared.store.layout import SYSTEM
from shared.workitems import DONE, PARKED, QUEUED, RUNNING, WORK_PK, Step, WorkItems, item_id


class Killed(BaseException):
    """A worker process dying between two statements: not an Exception, nothing catches it."""


class Counter:
    """A job of ``total`` units, ``per_slice`` a slice, whose effects are recorded per unit,
    so a unit done twice is seen. ``kill_after`` / ``fail_after``: the slice (1-based, over the
    counter's life) after whose effects the worker dies, or that raises before any effect."""

    def __init__(self, total: int, per_slice: int = 3) -> None:
        self.total, self.per_slice = total, per_slice
        self.effects: list[int] = []
        self.calls = 0
        self.kill_after: int | None = None
        self.fail_on: set[int] = set()

    def __call__(self, params: Mapping[str, Any], cursor: Any) -> Step:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"slice {self.calls} failed")
        start = cursor or 0
        end = min(start + self.per_slice, self.total)
        self.effects.extend(range(start, end))
        if self.kill_after == self.calls:
            raise Killed()
        return Step(end, done=end >= self.total, result={"units": end} if end >= self.total else None)


def queue(platform: Any, counter: Counter, **kwargs: Any) -> WorkItems:
    return WorkItems(platform.store, platform.clock, {"count": counter}, **kwargs)


def doc(platform: Any, key: str = "t1", generation: str = "2026-11-01") -> dict[str, Any]:
    found = platform.store.read(SYSTEM, WORK_PK, item_id("count", key, generation))
    assert found is not None
    return found


def test_enqueue_is_idempotent_per_generation(platform) -> None:  # type: ignore[no-untyped-def]
    items = queue(platform, Counter(3))
    assert items.enqueue("count", "t1", "2026-11-01") is True
    assert items.enqueue("count", "t1", "2026-11-01") is False
    assert items.enqueue("count", "t1", "2026-11-02") is True
    assert len(items.list()) == 2
    with pytest.raises(ValueError):
        items.enqueue("unknown", "t1", "2026-11-01")


def test_an_item_runs_in_slices_to_the_end_each_unit_once(platform) -> None:  # type: ignore[no-untyped-def]
    counter = Counter(10, per_slice=3)
    items = queue(platform, counter)
    items.enqueue("count", "t1", "2026-11-01")
    report = items.run()
    assert report.claimed == 1 and report.slices == 4 and len(report.finished) == 1
    assert counter.effects == list(range(10))
    item = doc(platform)
    assert item["status"] == DONE and item["cursor"] == 10 and item["result"] == {"units": 10}
    assert items.run().claimed == 0  # done items are not run again


def test_a_run_out_of_budget_leaves_the_item_due_and_the_next_run_resumes(platform) -> None:  # type: ignore
    counter = Counter(10, per_slice=3)
    items = queue(platform, counter)
    items.enqueue("count", "t1", "2026-11-01")
    # Each slice takes "ten seconds" of the run's budget: a 5-second budget allows one slice.
    report = items.run(budget_seconds=5.0, monotonic=lambda: counter.calls * 10.0)
    assert report.slices == 1 and report.resumable == [item_id("count", "t1", "2026-11-01")]
    assert doc(platform)["status"] == QUEUED and doc(platform)["cursor"] == 3
    items.run()
    assert counter.effects == list(range(10))  # no unit twice
    assert doc(platform)["status"] == DONE


def test_a_worker_killed_between_slices_is_resumed_after_its_lease_without_double_work(platform) -> None:  # type: ignore
    counter = Counter(10, per_slice=3)
    items = queue(platform, counter, lease=timedelta(minutes=3))
    items.enqueue("count", "t1", "2026-11-01")
    counter.kill_after = 2  # dies after slice 2's effects, before its cursor is stored
    with pytest.raises(Killed):
        items.run()
    assert doc(platform)["status"] == RUNNING and doc(platform)["cursor"] == 3
    assert items.run().claimed == 0  # the lease still holds: nobody takes it over yet
    platform.clock.advance(timedelta(minutes=3, seconds=1))
    report = items.run()
    assert report.finished == [item_id("count", "t1", "2026-11-01")]
    # Slice 2 (units 3-5) is the one unit of work that ran twice: its effects were not recorded as
    # done (the cursor said 3), which is why handlers keep their counts in the cursor itself.
    assert counter.effects == [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9]
    item = doc(platform)
    # The take-over counted as a failed attempt; the slices that then succeeded reset the count.
    assert item["status"] == DONE and item["attempts"] == 0 and "lease" in item["lastError"]


def test_a_failing_slice_is_retried_from_its_cursor_after_a_back_off(platform) -> None:  # type: ignore
    counter = Counter(6, per_slice=3)
    counter.fail_on = {2}
    items = queue(platform, counter)
    items.enqueue("count", "t1", "2026-11-01")
    report = items.run()
    assert report.failed == [item_id("count", "t1", "2026-11-01")]
    item = doc(platform)
    assert item["status"] == QUEUED and item["cursor"] == 3 and item["attempts"] == 1
    assert "slice 2 failed" in item["lastError"]
    assert items.run().claimed == 0  # backing off
    platform.clock.advance(timedelta(seconds=31))
    items.run()
    assert counter.effects == list(range(6)) and doc(platform)["status"] == DONE


def test_an_item_failing_every_time_is_parked_visibly_and_an_operator_can_retry_it(platform, caplog) -> None:  # type: ignore
    counter = Counter(3, per_slice=3)
    counter.fail_on = set(range(1, 100))
    items = queue(platform, counter, max_attempts=3)
    items.enqueue("count", "t1", "2026-11-01")
    for _ in range(3):
        items.run()
        platform.clock.advance(timedelta(hours=2))
    item = doc(platform)
    assert item["status"] == PARKED and item["attempts"] == 3
    assert [p["id"] for p in items.list(status=PARKED)] == [item["id"]]
    assert any("parked" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert items.run().claimed == 0  # parked items wait for an operator

    counter.fail_on = set()
    items.retry(item["id"])
    items.run()
    assert doc(platform)["status"] == DONE and counter.effects == [0, 1, 2]


def test_a_worker_that_dies_every_time_is_parked_too(platform) -> None:  # type: ignore[no-untyped-def]
    counter = Counter(9, per_slice=3)
    items = queue(platform, counter, max_attempts=2, lease=timedelta(minutes=1))
    items.enqueue("count", "t1", "2026-11-01")
    for _ in range(3):
        counter.kill_after = counter.calls + 1
        try:
            items.run()
        except Killed:
            pass
        platform.clock.advance(timedelta(minutes=2))
    assert doc(platform)["status"] == PARKED


def test_two_workers_never_work_one_item_at_once(platform) -> None:  # type: ignore[no-untyped-def]
    counter = Counter(6, per_slice=3)
    first, second = queue(platform, counter, owner="a"), queue(platform, counter, owner="b")
    first.enqueue("count", "t1", "2026-11-01")
    [candidate] = first.due()
    assert first._claim(candidate) is not None  # noqa: SLF001
    assert second._claim(candidate) is None  # noqa: SLF001 - the same version: its ETag is stale
    assert second.run().claimed == 0  # leased by a
    assert counter.effects == []


def test_a_run_claims_at_most_max_items(platform) -> None:  # type: ignore[no-untyped-def]
    counter = Counter(1, per_slice=1)
    items = queue(platform, counter)
    for n in range(5):
        items.enqueue("count", f"t{n}", "2026-11-01")
    assert items.run(max_items=2).claimed == 2
    assert len(items.list(status=QUEUED)) == 3


@settings(max_examples=25, deadline=None)
@given(total=st.integers(0, 20), per_slice=st.integers(1, 5), budget=st.integers(1, 6),
       kills=st.lists(st.integers(1, 12), max_size=3))
def test_whatever_the_interruptions_every_unit_is_done_and_the_item_finishes(
        tmp_path_factory, total, per_slice, budget, kills) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timezone

    from shared.platform import build_platform
    from shared.settings import Settings

    folder = tmp_path_factory.mktemp("wi")
    clock = ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))
    platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(folder)}), clock=clock)
    try:
        counter = Counter(total, per_slice)
        items = queue(platform, counter, max_attempts=100)
        items.enqueue("count", "t1", "2026-11-01")
        pending_kills = sorted(set(kills))
        for _ in range(200):
            if doc(platform)["status"] == DONE:
                break
            counter.kill_after = pending_kills.pop(0) if pending_kills and pending_kills[0] > counter.calls else None
            try:  # a slice takes one "second": ``budget`` slices per run
                items.run(budget_seconds=float(budget), monotonic=lambda: float(counter.calls))
            except Killed:
                clock.advance(timedelta(minutes=4))
        assert doc(platform)["status"] == DONE
        # Every unit done; a unit done twice only where a worker died after its slice's effects.
        assert set(counter.effects) == set(range(total))
        redone = len(counter.effects) - total
        assert redone <= len(set(kills)) * per_slice
    finally:
        platform.close()
