"""The rate-limit counters, held to one contract: the local SQLite file counter,
and the store-backed counter (what Azure runs) over both store adapters, the
embedded SQLite store and the Cosmos DB adapter against cosmosdb-server.

The contract: within a window at most the quota is admitted, per key and per
tenant; a refused request consumes nothing; a new window starts from zero; and
concurrent takers (threads with their own connections, or processes) never
admit more than the quota, nor fewer while room is left."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from shared.ratelimit.counters import LeasedCounter, SqliteWindowCounter, StoreWindowCounter
from shared.ratelimit.policy import RateLimits
from tests.conftest import run_in_threads

T0 = 1_790_000_040.0  # the start of a 60 s window


@pytest.fixture(params=["sqlite-file", "store-sqlite", "store-cosmos"])
def make_counter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """A factory: each call is a new counter over the same shared state (its own
    connection for the file counter), as two API processes would have."""
    yield from _factory(request, tmp_path)


@pytest.fixture(params=["sqlite-file", "store-sqlite"])
def make_local_counter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    """The same, for the lease tests: ``LeasedCounter`` only calls the port, whose
    adapters are held to one contract above, and thousands of calls through the
    Cosmos emulator would take minutes."""
    yield from _factory(request, tmp_path)


def _factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    made: list[Any] = []
    if request.param == "sqlite-file":
        def factory() -> Any:
            made.append(SqliteWindowCounter(tmp_path / "ratelimits.db"))
            return made[-1]
    else:
        store = request.getfixturevalue("sqlite_store" if request.param == "store-sqlite" else "cosmos_store")

        def factory() -> Any:
            return StoreWindowCounter(store)
    yield factory
    for counter in made:
        counter.close()


def test_admits_up_to_the_key_quota_and_refusals_consume_nothing(make_counter: Callable[[], Any]) -> None:
    counter, limits = make_counter(), RateLimits(perKey=3, perTenant=10, windowSeconds=60)
    answers = [counter.take("acme", "k1", 1, limits, T0 + i) for i in range(5)]
    assert [a.allowed for a in answers] == [True, True, True, False, False]
    assert [a.remaining for a in answers] == [2, 1, 0, 0, 0]
    assert answers[3].policy == "key" and answers[3].quota == 3 and answers[3].reset_seconds == 57
    # another key of the tenant still has its own room
    assert counter.take("acme", "k2", 1, limits, T0 + 5).allowed


def test_the_tenant_quota_binds_all_its_keys_together(make_counter: Callable[[], Any]) -> None:
    counter, limits = make_counter(), RateLimits(perKey=3, perTenant=4, windowSeconds=60)
    admitted = [counter.take("acme", f"k{i % 3}", 1, limits, T0).allowed for i in range(6)]
    assert admitted.count(True) == 4
    refused = counter.take("acme", "k9", 1, limits, T0)
    assert not refused.allowed and refused.policy == "tenant"
    assert counter.take("globex", "k1", 1, limits, T0).allowed  # tenants never share a count


def test_a_cost_is_taken_whole_or_not_at_all(make_counter: Callable[[], Any]) -> None:
    counter, limits = make_counter(), RateLimits(perKey=10, perTenant=10, windowSeconds=60)
    assert counter.take("acme", "k1", 7, limits, T0).remaining == 3
    too_big = counter.take("acme", "k1", 4, limits, T0)
    assert not too_big.allowed and too_big.remaining == 3
    assert counter.take("acme", "k1", 3, limits, T0).allowed


def test_a_new_window_starts_from_zero(make_counter: Callable[[], Any]) -> None:
    counter, limits = make_counter(), RateLimits(perKey=2, perTenant=2, windowSeconds=60)
    assert [counter.take("acme", "k1", 1, limits, T0 + 59).allowed for _ in range(3)] == [True, True, False]
    later = counter.take("acme", "k1", 1, limits, T0 + 60)
    assert later.allowed and later.remaining == 1 and later.reset_seconds == 60


def test_concurrent_takers_admit_exactly_the_quota(make_counter: Callable[[], Any]) -> None:
    limits = RateLimits(perKey=7, perTenant=7, windowSeconds=60)
    counters = [make_counter() for _ in range(4)]
    results: list[bool] = []

    def take(counter: Any) -> None:
        for _ in range(5):
            results.append(counter.take("acme", "k1", 1, limits, T0).allowed)

    run_in_threads(take, [(c,) for c in counters], timeout=60)
    assert len(results) == 20 and results.count(True) == 7


def _take_in_process(path: str, attempts: int, queue: Any) -> None:
    counter = SqliteWindowCounter(Path(path))
    limits = RateLimits(perKey=11, perTenant=11, windowSeconds=60)
    queue.put(sum(counter.take("acme", "k1", 1, limits, T0).allowed for _ in range(attempts)))
    counter.close()


def test_the_file_counter_holds_across_processes(tmp_path: Path) -> None:
    """Several API processes over one data folder: together they admit exactly the quota."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_take_in_process, args=(str(tmp_path / "rl.db"), 6, queue))
                 for _ in range(4)]
    for process in processes:
        process.start()
    admitted = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sum(admitted) == 11


class CountingCounter:
    """Counts the calls that reach the shared counter."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.inline, self.calls = inner, inner.inline, 0

    def take(self, *args: Any) -> Any:
        self.calls += 1
        return self.inner.take(*args)

    def close(self) -> None:
        pass


def test_leases_admit_exactly_the_quota_in_one_process_with_few_shared_writes(
        make_local_counter: Callable[[], Any]) -> None:
    shared = CountingCounter(make_local_counter())
    leased, limits = LeasedCounter(shared), RateLimits(perKey=10_000, perTenant=10_000, windowSeconds=60)
    results: list[bool] = []

    def take() -> None:
        for _ in range(2600):
            results.append(leased.take("acme", "k1", 1, limits, T0).allowed)

    run_in_threads(take, [()] * 4, timeout=120)
    assert len(results) == 10_400 and results.count(True) == 10_000
    assert shared.calls < 1000, f"{shared.calls} shared writes for 10,000 admissions"
    assert not leased.take("acme", "k1", 1, limits, T0 + 30).allowed
    assert leased.take("acme", "k1", 1, limits, T0 + 60).allowed  # a new window: the old lease is void


def test_leases_of_several_processes_never_admit_more_than_the_quota(
        make_local_counter: Callable[[], Any]) -> None:
    limits = RateLimits(perKey=1000, perTenant=1000, windowSeconds=60)
    processes = [LeasedCounter(make_local_counter()) for _ in range(3)]
    results: list[bool] = []

    def take(counter: LeasedCounter) -> None:
        for _ in range(500):
            results.append(counter.take("acme", "k1", 1, limits, T0).allowed)

    run_in_threads(take, [(c,) for c in processes], timeout=120)
    admitted = results.count(True)
    assert admitted <= 1000
    assert admitted >= 1000 - 3 * (1000 // LeasedCounter.LEASE_CAP), "more stranded than the leases allow"


def test_the_file_counter_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    """The counter file lives in the data folder, which is owner only (shared/private_files.py): the
    database, its -wal and -shm are 0600 and a folder it creates is 0700, under a usual umask (022)."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        counter = SqliteWindowCounter(tmp_path / "data" / "ratelimits.db")
        assert counter.take("t1", "k1", 1, RateLimits(perKey=5, perTenant=5, windowSeconds=60), 1000.0).allowed
        files = sorted((tmp_path / "data").iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "data", *files]}
        counter.close()
    finally:
        os.umask(previous)
    assert {"ratelimits.db", "ratelimits.db-wal"} <= set(modes), modes
    assert modes == {name: (0o700 if name == "data" else 0o600) for name in modes}, modes
