"""Benchmark of the spine: the local platform end to end, and the ledger alone.

Starts ``python -m shared.local run`` in a subprocess on a fresh data folder
(durability on: SQLite ``synchronous=FULL``, as shipped), drives it over real
HTTP on loopback from this process, and prints:

* orders/s end to end (accepted → committed → projected), single-order calls;
* orders/s end to end in batches of 500;
* p50/p99 latency of a single order with ``?wait=5`` (the point-of-sale path);
* p50/p99 latency of a balance read;
* ledger appends/s on the store alone (group commit across customers), and the
  ``eventsourcing`` library's SQLite recorder writing the same number of events
  (one aggregate per customer, one event per append), as a ratio.

Usage: ``python bench/bench_spine.py [--orders N]``. Client and server share
the machine's cores: the figures are a floor for the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as host
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import LocalPlatform  # noqa: E402

CUSTOMERS = [f"bench-{n:04d}" for n in range(1000)]


def order(order_id: str, customer: str) -> dict:
    return {"customerId": customer, "orderId": order_id, "amount": "10.00", "currency": "EUR",
            "timestamp": "2026-11-20T09:30:00Z", "channel": "store",
            "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 2, "unitPrice": "5.00"}]}


async def wait_projected(http: httpx.AsyncClient, last_order_ids: list[str]) -> None:
    """Orders of one customer are processed in order: once each customer's last
    order is credited and its balance projected, all of them are."""
    deadline = time.monotonic() + 300
    remaining = list(last_order_ids)
    while remaining and time.monotonic() < deadline:
        answers = await asyncio.gather(*(http.get(f"/v1/orders/{o}") for o in remaining[:64]))
        done = {a.json()["orderId"] for a in answers if a.json()["status"] == "credited"}
        remaining = [o for o in remaining if o not in done]
        if remaining:
            await asyncio.sleep(0.005)
    if remaining:
        raise RuntimeError("orders were not all credited within 300 s")
    await projector_caught_up(http, deadline)


async def projector_caught_up(http: httpx.AsyncClient, deadline: float) -> None:
    """The balance read model reflects the ledger: its lag is over."""
    while time.monotonic() < deadline:
        sample = await asyncio.gather(*(http.get(f"/v1/customers/{c}/balance") for c in CUSTOMERS[::50]))
        ledgers = await asyncio.gather(*(http.get(f"/v1/customers/{c}/balance",
                                                  params={"asOf": "2100-01-01T00:00:00Z"}) for c in CUSTOMERS[::50]))
        if all(a.json()["available"] == b.json()["available"] for a, b in zip(sample, ledgers)):
            return
        await asyncio.sleep(0.005)
    raise RuntimeError("the projector did not catch up within 300 s")


def last_per_customer(order_ids: list[str], customers: list[str]) -> list[str]:
    last: dict[str, str] = {}
    for order_id, customer in zip(order_ids, customers):
        last[customer] = order_id
    return list(last.values())


async def register_customers(http: httpx.AsyncClient) -> None:
    async def one(customer: str) -> None:
        response = await http.post("/v1/customers", json={"customerId": customer, "joinDate": "2025-01-01"})
        assert response.status_code in (201, 409), response.text

    for offset in range(0, len(CUSTOMERS), 50):
        await asyncio.gather(*(one(c) for c in CUSTOMERS[offset:offset + 50]))


async def single_orders(http: httpx.AsyncClient, count: int, concurrency: int) -> float:
    run = uuid.uuid4().hex[:6]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            response = await http.post("/v1/orders", json=order(f"s{run}-{n}", CUSTOMERS[n % len(CUSTOMERS)]))
            assert response.status_code == 202, response.text

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted = time.perf_counter() - start
    ids = [f"s{run}-{n}" for n in range(count)]
    await wait_projected(http, last_per_customer(ids, [CUSTOMERS[n % len(CUSTOMERS)] for n in range(count)]))
    total = time.perf_counter() - start
    print(f"  single-order calls: {count} accepted in {accepted:.2f}s ({count / accepted:,.0f} req/s); "
          f"end to end {count / total:,.0f} orders/s")
    return count / total


async def batches(http: httpx.AsyncClient, count: int, concurrency: int) -> float:
    run = uuid.uuid4().hex[:6]
    bodies = [{"orders": [order(f"b{run}-{b}-{i}", CUSTOMERS[(b * 500 + i) % len(CUSTOMERS)]) for i in range(500)]}
              for b in range(count // 500)]
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker() -> None:
        while not queue.empty():
            response = await http.post("/v1/orders/batch", json=queue.get_nowait())
            assert response.status_code == 202, response.text

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted = time.perf_counter() - start
    ids = [o["orderId"] for body in bodies for o in body["orders"]]
    await wait_projected(http, last_per_customer(ids, [o["customerId"] for body in bodies for o in body["orders"]]))
    total = time.perf_counter() - start
    n = len(bodies) * 500
    print(f"  batches of 500: {n} accepted in {accepted:.2f}s ({n / accepted:,.0f} orders/s); "
          f"end to end {n / total:,.0f} orders/s")
    return n / total


async def latencies(http: httpx.AsyncClient, count: int) -> None:
    run = uuid.uuid4().hex[:6]
    waits = []
    for n in range(count):
        start = time.perf_counter()
        response = await http.post("/v1/orders?wait=5", json=order(f"w{run}-{n}", CUSTOMERS[n % len(CUSTOMERS)]))
        waits.append(time.perf_counter() - start)
        assert response.status_code == 200 and response.json()["status"] == "credited", response.text
    reads = []
    for n in range(count * 5):
        start = time.perf_counter()
        response = await http.get(f"/v1/customers/{CUSTOMERS[n % len(CUSTOMERS)]}/balance")
        reads.append(time.perf_counter() - start)
        assert response.status_code == 200
    for name, values in (("single order with wait", waits), ("balance read", reads)):
        values.sort()
        p50 = statistics.median(values) * 1000
        p99 = values[int(len(values) * 0.99) - 1] * 1000
        print(f"  {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(values)} sequential calls)")


def store_alone(events: int) -> None:
    from shared.clock import SystemClock
    from shared.ledger.entries import EntryDraft, EntryType, Head
    from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    folder = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    store = SqliteDocumentStore(folder / "ledger.db", CONTAINERS, synchronous="FULL")
    ledger = Ledger(store, SystemClock())

    def request(n: int) -> TransactionRequest:
        def plan(head: Head) -> Plan:
            return Plan(entries=[EntryDraft(EntryType.EARN, 10, counts_order=True)], outcome={"points": 10})
        return TransactionRequest("bench", f"c{n % 1000}", f"k{n}", fingerprint_of(n), plan)

    requests = [request(n) for n in range(events)]
    start = time.perf_counter()
    for offset in range(0, events, 500):
        ledger.append(requests[offset:offset + 500])
    ours = events / (time.perf_counter() - start)
    store.close()

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteDatastore

    datastore = SQLiteDatastore(str(folder / "es.db"))
    recorder = SQLiteAggregateRecorder(datastore)
    recorder.create_table()
    ids = [uuid.uuid4() for _ in range(1000)]
    versions = [0] * 1000
    stored = []
    for n in range(events):
        versions[n % 1000] += 1
        stored.append(StoredEvent(ids[n % 1000], versions[n % 1000], "bench:Earned", b'{"points":10}'))
    start = time.perf_counter()
    for offset in range(0, events, 500):
        recorder.insert_events(stored[offset:offset + 500])
    theirs = events / (time.perf_counter() - start)
    print(f"  ledger appends on the store alone: {ours:,.0f}/s (entry + order-free marker, running totals, "
          f"group commit of 500)")
    print(f"  eventsourcing SQLiteAggregateRecorder, same {events} events in batches of 500: {theirs:,.0f}/s "
          f"-> ratio ours/theirs {ours / theirs:.2f}")


async def drive(platform: LocalPlatform, orders: int) -> None:
    headers = {"Authorization": f"Bearer {platform.keys['merchant']}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=platform.url, headers=headers, timeout=60, limits=limits) as http:
        await register_customers(http)
        await single_orders(http, 200, 16)  # warm-up
        await single_orders(http, orders, 32)
        await batches(http, orders * 5, 2)
        await latencies(http, 200)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args()
    print(f"machine: {host.machine()} {os.cpu_count()} cores, Python {host.python_version()}, {host.system()}")
    folder = Path(tempfile.mkdtemp(prefix="bench-spine-"))
    platform = LocalPlatform(folder / "data").start()
    try:
        print("local platform, durability on (SQLite synchronous=FULL):")
        asyncio.run(drive(platform, args.orders))
    finally:
        platform.stop()
    store_alone(args.orders * 4)


if __name__ == "__main__":
    main()
