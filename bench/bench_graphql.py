"""Benchmark of the GraphQL API (issue 14), in-process over real HTTP and WebSocket.

1. ``rulePerformance`` over 12 months for a tenant with ``--rules`` rules (default 50) and a
   year of daily counters (two experiment arms), through the ASGI app with the gql client's
   transport (httpx): p50/p99 of the whole request, and the store reads it made.
2. A 100-customer page with every customer's balance: the store reads (counted: constant, not
   one per customer) and p50/p99.
3. Commit-to-subscriber latency: a ``transactionCreated`` subscription over graphql-transport-ws
   (gql's websockets transport against uvicorn serving the same app), while manual
   adjustments commit transactions at ``--rate`` per second; the time from the commit
   returning to the event arriving, p50/p99, on an otherwise idle server.
4. The same under the spine benchmark's load (``--load-orders``, 0 to skip): the local platform
   (``python -m shared.local run``, durability on) takes single orders over HTTP, 32 concurrent,
   as bench_spine.py sends them, while a subscriber receives every transaction; latency from
   the ledger's ``createdAt`` (stamped at the append, on the same clock) to arrival.

Usage: ``python bench/bench_graphql.py [--rules N] [--runs N] [--events N] [--rate R] [--load-orders N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from machine import machine_line  # bench/machine.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from gql import Client, GraphQLRequest  # noqa: E402
from gql.transport.httpx import HTTPXAsyncTransport  # noqa: E402
from gql.transport.websockets import WebsocketsTransport  # noqa: E402

from shared.api.app import create_app  # noqa: E402
from shared.app.auth import Role  # noqa: E402
from shared.app.corrections import AdjustmentRequest  # noqa: E402
from shared.app.customers import CustomerProfile  # noqa: E402
from shared.domain.tenants import TenantSettings  # noqa: E402
from shared.graphql.feed import hub_of  # noqa: E402
from shared.graphql.performance import MONTH_ID, day_id, partition  # noqa: E402
from shared.platform import build_platform  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.store.layout import SYSTEM  # noqa: E402
from shared.store.sqlite import SqliteDocumentStore  # noqa: E402

TENANT = "bench"
RULE_PERF = """query($from: Date!, $to: Date!) { rulePerformance(ruleSetId: "main", version: 1, from: $from, to: $to,
  granularity: MONTH) { periods dataAsOf series { rule arm ordersEvaluated ordersMatched pointsIssued shareOfPoints } } }"""
PAGE = """{ customers(first: 100) { nodes { id tier pointsBalance balance { available pending dataAsOf } } } }"""
LIVE = """subscription { transactionCreated { id cursor entries { signedAmount } } }"""


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (n={len(ordered)})"


class Reads:
    """Counts the store's read calls (read, read_many, query) while ``on``."""

    def __init__(self) -> None:
        self.count, self.on = 0, False
        for name in ("read", "read_many", "query"):
            original = getattr(SqliteDocumentStore, name)

            def counting(store, *args, __original=original, **kwargs):
                if self.on:
                    self.count += 1
                return __original(store, *args, **kwargs)

            setattr(SqliteDocumentStore, name, counting)


def seed(platform, rules: int, end: date) -> None:
    """A year of daily counters (and their month rollups) as the projection writes them."""
    months: dict[str, dict] = {}
    for day in range(366):
        current = (end - timedelta(days=day)).isoformat()
        arms = {arm: {"orders": 1000, "points": 50_000,
                      "rules": {f"rule-{r:02d}": [1000, 100 + r, 1000 + r] for r in range(rules)}}
                for arm in ("A", "B")}
        pk = partition(TENANT, "main", 1, current)
        platform.store.upsert(SYSTEM, {"id": day_id(current), "pk": pk, "docType": "rulePerformance",
                                       "tenantId": TENANT, "ruleSetId": "main", "version": 1, "day": current,
                                       "arms": arms})
        rollup = months.setdefault(pk, {"id": MONTH_ID, "pk": pk, "docType": "rulePerformanceMonth",
                                        "tenantId": TENANT, "ruleSetId": "main", "version": 1,
                                        "day": current[:7], "arms": {}})
        for arm, counts in arms.items():
            slot = rollup["arms"].setdefault(arm, {"orders": 0, "points": 0, "rules": {}})
            slot["orders"] += counts["orders"]
            slot["points"] += counts["points"]
            for rule, values in counts["rules"].items():
                slot["rules"][rule] = [a + b for a, b in zip(slot["rules"].get(rule, [0, 0, 0]), values)]
    for rollup in months.values():
        platform.store.upsert(SYSTEM, rollup)
    for n in range(100):
        platform.customers.register(TENANT, CustomerProfile(customerId=f"cust-{n:03d}", joinDate=date(2025, 1, 1)))


async def timed_queries(app, key: str, query: str, variables: dict, runs: int, reads: Reads) -> tuple[list[float], int]:
    transport = HTTPXAsyncTransport("http://bench/graphql/v1", headers={"Authorization": f"Bearer {key}"},
                                    transport=httpx.ASGITransport(app=app))
    samples = []
    async with Client(transport=transport) as session:
        await session.execute(GraphQLRequest(query, variable_values=variables))  # warm: key cache, imports
        reads.count, reads.on = 0, True
        await session.execute(GraphQLRequest(query, variable_values=variables))
        reads.on = False
        per_request = reads.count
        for _ in range(runs):
            started = time.perf_counter()
            await session.execute(GraphQLRequest(query, variable_values=variables))
            samples.append(time.perf_counter() - started)
    return samples, per_request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subscriber_latency(platform, app, key: str, events: int, rate: float) -> list[float]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    committed: dict[str, float] = {}
    latencies: list[float] = []

    def commit() -> None:
        for n in range(events):
            outcome = platform.corrections.adjust(TENANT, "cust-000", AdjustmentRequest(
                points=1, reasonCode="goodwill", reason="bench", idempotencyKey=f"bench-{n}"), "bench")
            committed[outcome.transaction_id] = time.perf_counter()
            time.sleep(1 / rate)

    async def listen() -> None:
        transport = WebsocketsTransport(url=f"ws://127.0.0.1:{port}/graphql/v1",
                                        init_payload={"Authorization": f"Bearer {key}"})
        async with Client(transport=transport) as session:
            subscription = session.subscribe(GraphQLRequest(LIVE))
            writer = None
            received = 0

            async def start_writer() -> None:
                await asyncio.sleep(0.5)  # the subscription is registered before the first commit
                await asyncio.to_thread(commit)

            writer = asyncio.create_task(start_writer())
            async for result in subscription:
                arrived = time.perf_counter()
                transaction_id = result["transactionCreated"]["id"]
                while transaction_id not in committed:
                    await asyncio.sleep(0.0005)  # the event can beat the commit call's return
                latencies.append(max(0.0, arrived - committed[transaction_id]))
                received += 1
                if received == events:
                    break
            await writer

    asyncio.run(listen())
    server.should_exit = True
    return latencies


def under_spine_load(orders: int) -> tuple[list[float], int]:
    """Commit-to-subscriber latencies of every transaction of ``orders`` single orders sent as the
    spine benchmark sends them (32 concurrent, 1,000 customers), to the local platform."""
    import os
    import uuid

    import uvloop
    from bench_spine import CUSTOMERS, drain, order, register_customers
    from loadgen import Pool

    from tests.e2e.conftest import LocalPlatform

    os.environ["ACCRUE_SQLITE_SYNCHRONOUS"] = "FULL"
    folder = Path(tempfile.mkdtemp(prefix="bench-graphql-"))
    platform = LocalPlatform(folder / "data").start()
    assert platform.process is not None and platform.process.stdout is not None
    threading.Thread(target=drain, args=(platform.process.stdout,), daemon=True).start()
    key = platform.keys["merchant"]
    latencies: list[float] = []

    async def run() -> int:
        http = Pool(platform.url, {"Authorization": f"Bearer {key}"}, size=32)
        await register_customers(http)
        prefix = "g" + uuid.uuid4().hex[:8]
        transport = WebsocketsTransport(url=platform.url.replace("http://", "ws://") + "/graphql/v1",
                                        init_payload={"Authorization": f"Bearer {key}"})
        async with Client(transport=transport) as session:
            subscription = session.subscribe(GraphQLRequest(
                "subscription { transactionCreated { id createdAt entries { referenceOrderId } } }"))
            seen = 0

            async def listen() -> None:
                nonlocal seen
                async for result in subscription:
                    arrived = time.time()
                    transaction = result["transactionCreated"]
                    if not any((e["referenceOrderId"] or "").startswith(prefix) for e in transaction["entries"]):
                        continue
                    created = datetime.fromisoformat(transaction["createdAt"].replace("Z", "+00:00"))
                    latencies.append(max(0.0, arrived - created.timestamp()))
                    seen += 1
                    if seen == orders:
                        return

            listener = asyncio.create_task(listen())
            await asyncio.sleep(1.0)  # subscribed before the first order
            pending = list(range(orders))

            async def worker() -> None:
                while pending:
                    n = pending.pop()
                    response = await http.post("/v1/orders", json=order(f"{prefix}-{n}", CUSTOMERS[n % len(CUSTOMERS)]))
                    assert response.status == 202, response.body

            await asyncio.gather(*(worker() for _ in range(32)))
            try:
                await asyncio.wait_for(listener, timeout=300)
            finally:
                await http.aclose()
            return seen

    try:
        received = uvloop.run(run())
    finally:
        platform.stop()
    return latencies, received


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--load-orders", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env({"ACCRUE_DATA_DIR": folder, "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
        platform = build_platform(settings)
        platform.tenants.save(TenantSettings(tenantId=TENANT, name="bench", currency="EUR", timeZone="UTC",
                                             pointsPerUnit=Decimal(1)))
        key = platform.keys.issue(TENANT, Role.TENANT_ADMIN, None).secret_key
        today = datetime.now(timezone.utc).date()
        seed(platform, args.rules, today)
        app = create_app(platform)
        reads = Reads()
        print(f"machine: {machine_line()}")
        window = {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat()}
        for granularity, label in (("MONTH", "by month, 366 daily documents (a range not on month bounds)"),
                                   ("WEEK", "by week, 366 daily documents")):
            samples, per_request = asyncio.run(timed_queries(
                app, key, RULE_PERF.replace("MONTH", granularity), window, args.runs, reads))
            print(f"rulePerformance, 12 months ({args.rules} rules, 2 arms), {label}: {percentiles(samples)}; "
                  f"{per_request} store calls per request")
        first = (today.replace(day=1) - timedelta(days=334)).replace(day=1)
        last = (today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        whole = {"from": first.isoformat(), "to": last.isoformat()}
        samples, per_request = asyncio.run(timed_queries(app, key, RULE_PERF, whole, args.runs, reads))
        print(f"rulePerformance, 12 whole months ({args.rules} rules, 2 arms), by month from the month rollups: "
              f"{percentiles(samples)}; {per_request} store calls per request")
        samples, per_request = asyncio.run(timed_queries(app, key, PAGE, {}, args.runs, reads))
        print(f"100-customer page with balances: {percentiles(samples)}; {per_request} store calls per request")
        latencies = subscriber_latency(platform, app, key, args.events, args.rate)
        print(f"commit to subscriber (transactionCreated over WebSocket, {args.rate:g} commits/s, idle machine): "
              f"{percentiles(latencies)}")
        hub_of(platform).stop()
        platform.close()
    if args.load_orders:
        latencies, received = under_spine_load(args.load_orders)
        print(f"commit to subscriber under the spine's load ({args.load_orders} single orders, 32 concurrent, "
              f"local platform, durability on): {percentiles(latencies)}; {received}/{args.load_orders} received")


if __name__ == "__main__":
    main()
