"""Reads under write load, and the API's memory (issue 22, targets 3 and 4).

Starts the local platform (the API process and its two worker processes,
durability on) and drives it over HTTP on loopback with ``bench/loadgen.py``:

1. seeds the ledger: 1,000 customers, ``--seed`` orders in batches of 500, until
   every one is credited and projected (so a history page has entries to show);
2. idle: sequential balance reads and history pages (``GET .../ledger``, 50
   newest entries), p50/p99;
3. under write load: two connections post batches of 500 orders as fast as the
   API accepts them (the spine benchmark's batch phase) while one connection reads
   balances and another reads history pages, one request at a time; only reads
   answered while the batches were still being posted count. The batch rate with
   the readers running is printed beside the figures, to show the load was full;
4. history at 40 concurrent connections for ``--seconds``: req/s and p99;
5. every platform process's RSS now and at its peak (``VmHWM``).

Each figure is printed with the machine's load average (the machine is shared:
compare figures of one run). Targets: balance p99 < 5 ms and history p99 < 10 ms
under load, history ≥ 2,000 req/s at 40 connections, API peak RSS < 200 MiB."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import uvloop

from bench_spine import (BATCH, CUSTOMERS, Probe, Results, durable_platform, memory, order, percentile,  # noqa: E402
                         register_customers, until_projected, verify_credited)
from loadgen import Pool
from machine import machine_line
from summary import record

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import LocalPlatform  # noqa: E402

TARGET_BALANCE_P99_MS = 5.0
TARGET_HISTORY_P99_MS = 10.0
TARGET_HISTORY_RPS = 2000.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


async def seed(http: Pool, probe: Probe, expected: Counter, count: int) -> None:
    prefix = "seed" + uuid.uuid4().hex[:6]
    bodies = [{"orders": [order(f"{prefix}-{b}-{i}", CUSTOMERS[(b * BATCH + i) % len(CUSTOMERS)])
                          for i in range(BATCH)]} for b in range(max(1, count // BATCH))]
    start_lsn = probe.latest_ledger_lsn()
    started = time.perf_counter()
    for body in bodies:
        response = await http.post("/v1/orders/batch", json=body)
        assert response.status == 202, response.body
    n = len(bodies) * BATCH
    await until_projected(probe, prefix, n, started, start_lsn)
    expected.update(o["customerId"] for body in bodies for o in body["orders"])


async def sequential(http: Pool, paths: list[str], stop: asyncio.Event | None = None) -> list[float]:
    """One request at a time over ``paths`` (cycled while ``stop`` is unset, else once)."""
    times: list[float] = []
    n = 0
    while (stop is None and n < len(paths)) or (stop is not None and not stop.is_set()):
        path = paths[n % len(paths)]
        n += 1
        start = time.perf_counter()
        response = await http.get(path)
        elapsed = time.perf_counter() - start
        assert response.status == 200, response.body
        if stop is None or not stop.is_set():
            times.append(elapsed)
    return times


def balance_paths() -> list[str]:
    return [f"/v1/customers/{c}/balance" for c in CUSTOMERS]


def history_paths() -> list[str]:
    return [f"/v1/customers/{c}/ledger" for c in reversed(CUSTOMERS)]


async def under_load(url: str, headers: dict[str, str], probe: Probe, expected: Counter,
                     count: int) -> tuple[list[float], list[float], float]:
    writers = Pool(url, headers, size=2)
    balances = Pool(url, headers, size=1)
    histories = Pool(url, headers, size=1)
    prefix = "load" + uuid.uuid4().hex[:6]
    bodies = [{"orders": [order(f"{prefix}-{b}-{i}", CUSTOMERS[(b * BATCH + i) % len(CUSTOMERS)])
                          for i in range(BATCH)]} for b in range(max(1, count // BATCH))]
    pending = list(reversed(bodies))
    stop = asyncio.Event()

    async def writer() -> None:
        while pending:
            response = await writers.post("/v1/orders/batch", json=pending.pop())
            assert response.status == 202, response.body

    try:
        start_lsn = probe.latest_ledger_lsn()
        readers = [asyncio.ensure_future(sequential(balances, balance_paths(), stop)),
                   asyncio.ensure_future(sequential(histories, history_paths(), stop))]
        started = time.perf_counter()
        await asyncio.gather(writer(), writer())
        accepted = len(bodies) * BATCH / (time.perf_counter() - started)
        stop.set()
        balance_times, history_times = await asyncio.gather(*readers)
        await until_projected(probe, prefix, len(bodies) * BATCH, started, start_lsn)
        expected.update(o["customerId"] for body in bodies for o in body["orders"])
        return balance_times, history_times, accepted
    finally:
        for pool in (writers, balances, histories):
            await pool.aclose()


async def concurrent_history(url: str, headers: dict[str, str], connections: int,
                             seconds: float) -> tuple[float, list[float]]:
    http = Pool(url, headers, size=connections)
    paths = history_paths()
    times: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        n = k
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            response = await http.get(paths[n % len(paths)])
            times.append(time.perf_counter() - start)
            assert response.status == 200, response.body
            n += connections

    try:
        await asyncio.gather(*(http.get(p) for p in paths[:connections]))  # connections open, warm
        started = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(connections)))
        return len(times) / (time.perf_counter() - started), times
    finally:
        await http.aclose()


def latency(name: str, times: list[float], target: float | None, results: Results, note: str) -> None:
    p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
    results.add(name, f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(times) * 1000:.1f} ms",
                f"{len(times):,} reads; {note}; {load()}")
    if target is not None:
        record(f"{name} p99", p99, "ms", target=target, higher_is_better=False)


async def drive(platform: LocalPlatform, probe: Probe, args: argparse.Namespace, results: Results) -> None:
    headers = {"Authorization": f"Bearer {platform.keys['merchant']}"}
    expected: Counter = Counter()
    http = Pool(platform.url, headers, size=8)
    try:
        await register_customers(http)
        await seed(http, probe, expected, args.seed)
        results.add("seeded", f"{sum(expected.values()):,} orders credited", load())
        latency("balance read, idle", await sequential(http, balance_paths() * 2), None, results, "sequential")
        latency("history page, idle", await sequential(http, history_paths() * 2), None, results,
                "sequential, 50 newest entries")
        balance_times, history_times, rate = await under_load(platform.url, headers, probe, expected, args.load)
        results.add("batches accepted while reading", f"{rate:,.0f} orders/s",
                    f"{args.load:,} orders, 2 connections; {load()}")
        latency("balance read during batches", balance_times, TARGET_BALANCE_P99_MS, results,
                f"target p99 < {TARGET_BALANCE_P99_MS:g} ms")
        latency("history page during batches", history_times, TARGET_HISTORY_P99_MS, results,
                f"target p99 < {TARGET_HISTORY_P99_MS:g} ms")
        rps, times = await concurrent_history(platform.url, headers, 40, args.seconds)
        results.add("history pages, 40 connections", f"{rps:,.0f} req/s, p50 {percentile(times, 50) * 1000:.1f} ms,"
                    f" p99 {percentile(times, 99) * 1000:.1f} ms",
                    f"{args.seconds:g} s; target ≥ {TARGET_HISTORY_RPS:,.0f} req/s; {load()}")
        record("history pages, 40 connections", rps, "req/s", target=TARGET_HISTORY_RPS)
        await verify_credited(http, expected)
        results.checks.append(f"every one of {sum(expected.values()):,} orders credited exactly once")
    finally:
        await http.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=10_000, help="orders before any read (default 10,000)")
    parser.add_argument("--load", type=int, default=20_000, help="orders posted while reading (default 20,000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="the 40-connection history phase (default 10)")
    args = parser.parse_args()
    print(f"machine: {machine_line()}; {load()}", flush=True)
    results = Results()
    with durable_platform("bench-reads-") as (platform, probe):
        uvloop.run(drive(platform, probe, args, results))
        memory(platform.process.pid, results)
    for check in results.checks:
        print(f"  check: {check}")


if __name__ == "__main__":
    main()
