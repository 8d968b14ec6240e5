"""The durable local queue: commit before return, leases, order per key, poison."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from shared.bus.local_queue import LocalQueue
from shared.bus.port import BusMessage, publish_async
from tests.conftest import run_in_threads


def msg(key: str, n: int) -> BusMessage:
    return BusMessage(partition_key=key, body={"n": n, "key": key})


def test_published_messages_survive_a_reopen(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db")
    queue.publish([msg("a", 1), msg("b", 2)])
    queue.close()
    reopened = LocalQueue(tmp_path / "q.db")
    assert [d.body["n"] for d in reopened.claim(10)] == [1, 2]
    reopened.close()


def test_a_claimed_message_is_invisible_until_its_lease_ends(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db")
    queue.publish([msg("a", 1)])
    first = queue.claim(10, lease_seconds=0.2)
    assert len(first) == 1 and queue.claim(10) == []
    time.sleep(0.25)
    again = queue.claim(10)
    assert [d.body["n"] for d in again] == [1] and again[0].attempts == 2
    queue.ack(again)
    assert queue.depth() == 0
    queue.close()


def test_one_key_is_never_claimed_out_of_order_or_twice_at_once(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db")
    queue.publish([msg("a", 1), msg("a", 2), msg("b", 3)])
    first = queue.claim(1)
    assert [d.body["n"] for d in first] == [1]
    second = queue.claim(10)
    assert [d.body["n"] for d in second] == [3], "a's second message must wait for the first"
    queue.fail(first[0], "boom", retry_in=0.1)
    assert queue.claim(10) == [], "a is backing off: its later message must not overtake it"
    time.sleep(0.12)
    assert [d.body["n"] for d in queue.claim(10)] == [1, 2]
    queue.close()


def test_a_message_that_keeps_failing_moves_to_poison_and_can_be_replayed(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db", max_attempts=2)
    queue.publish([msg("a", 1)])
    for _ in range(2):
        [delivery] = queue.claim(1)
        queue.fail(delivery, "ValueError: bad", retry_in=0)
    assert queue.depth() == 0
    [poisoned] = queue.poisoned()
    assert poisoned.body == {"n": 1, "key": "a"} and "bad" in poisoned.last_error and poisoned.attempts == 2
    assert queue.replay_poison() == 1
    assert queue.poisoned() == [] and [d.body["n"] for d in queue.claim(1)] == [1]
    queue.close()


def test_concurrent_publishers_are_group_committed_and_none_is_lost(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db")

    def publish(worker: int) -> None:
        for n in range(50):
            queue.publish([msg(f"k{worker}", n)])

    run_in_threads(publish, [(w,) for w in range(8)])
    assert queue.depth() == 400
    seen: dict[str, list[int]] = {}
    while True:
        batch = queue.claim(100)
        if not batch:
            break
        for delivery in batch:
            seen.setdefault(delivery.partition_key, []).append(delivery.body["n"])
        queue.ack(batch)
    assert all(values == list(range(50)) for values in seen.values()) and len(seen) == 8
    queue.close()


def test_async_publishers_share_commits_and_a_claim_acknowledges_the_previous_batch(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db", synchronous="NORMAL")
    try:
        async def publish_all() -> None:
            await asyncio.gather(*(publish_async(queue, [BusMessage(f"k{n % 7}", {"n": n})]) for n in range(50)))

        asyncio.run(publish_all())
        assert queue.depth() == 50
        first = queue.claim(10)
        assert [d.body["n"] for d in first] == list(range(10))
        second = queue.claim(10, acknowledge=first)
        assert queue.depth() == 40, "the first batch is acknowledged by the second claim"
        assert [d.body["n"] for d in second] == list(range(10, 20))
    finally:
        queue.close()


def test_a_restarted_consumer_releases_its_own_leases_and_no_other(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db", synchronous="NORMAL")
    try:
        queue.publish([msg("a", 1), msg("b", 2)])
        queue.lease_owner = "ingest-1"
        mine = queue.claim(1)
        queue.lease_owner = "ingest-10"  # a name that starts with the other's
        theirs = queue.claim(1)
        assert [d.partition_key for d in mine + theirs] == ["a", "b"]
        assert queue.release_leases(owner="ingest-1") == 1  # ingest-1 restarted; ingest-10 works on
        assert [d.partition_key for d in queue.claim(10)] == ["a"]
    finally:
        queue.close()
