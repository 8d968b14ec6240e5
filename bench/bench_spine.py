"""Benchmark of the spine: the local platform end to end, and the ledger alone.

Starts ``python -m shared.local run`` in a subprocess on a fresh data folder
with durability on (SQLite ``synchronous=FULL`` for the store and the queue,
forced here whatever the environment says), drives it over real HTTP on
loopback from this process with a lean keep-alive client (``bench/loadgen.py``:
httpx would spend half a core of the same two), and prints:

* orders/s end to end (accepted → committed → projected) for single-order
  calls, and for batches of 500;
* p50/p99 latency of a single order with ``?wait=5`` (the point-of-sale path);
* p50/p99 latency of a balance read;
* ledger appends/s on the store alone (``Ledger.append``, group commit of 500
  requests over 1,000 customers), and the ``eventsourcing`` library's SQLite
  recorder writing the same bytes per append (one aggregate per customer, an
  event of the entry's size and one of the marker's per append, 500 appends per
  transaction, synchronous=FULL on both), as a ratio; ``bench/bench_peers.py``
  compares at the store level too, with equal bodies.

"End to end" stops the clock only when every order of the phase has its final
status in the order-status read model *and* the projector's checkpoint has
passed the newest ledger entry, i.e. the balances are projected too. Both are
read from the platform's SQLite file (read-only queries beside the server), so
the measurement does not add HTTP load to the server it measures. After each
phase, untimed, every customer's projected ``ordersCredited`` is checked over
the API against the orders sent: no order lost, none credited twice.

Writes the figures to ``bench/RESULTS-spine.md`` (``--output``; ``--output -``
writes nothing). Client and server share the machine's cores: the HTTP figures
are a floor for the server.

With ``--chain-cost`` it measures only the cost of the ledger's hash chain
(shared/ledger/chain.py), in one run: the same appends on the store alone with
the entries sealed (``prevHash``/``hash``, as always) and with sealing turned
off, alternated in rounds so both see the same machine, plus the CPU time of
one ``seal`` alone.

Usage: ``python bench/bench_spine.py [--orders N] [--batch-orders N]
[--latency-samples N] [--store-events N] [--output FILE] [--chain-cost]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from machine import machine_line  # bench/machine.py (the script's folder is on sys.path)
from summary import record  # bench/summary.py: figures for make bench's summary table

import orjson
import uvloop
from loadgen import Pool  # bench/loadgen.py: a lean keep-alive client (httpx costs the server CPU)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.store.layout import LEDGER, ORDER_STATUS, SYSTEM  # noqa: E402
from shared.store.sqlite import table_of, tables_of  # noqa: E402
from tests.e2e.conftest import LocalPlatform  # noqa: E402

TENANT = "sandbox"
CUSTOMERS = [f"bench-{n:04d}" for n in range(1000)]
FINAL = ("credited", "held", "rejected")
BATCH = 500
TIMEOUT = 600.0

# The targets on a 2-core machine.
TARGET_BATCH_E2E = 5000.0
TARGET_SINGLE_RPS = 1000.0
TARGET_BALANCE_P99_MS = 5.0
TARGET_API_RSS_MIB = 200.0  # issue 22, target 4
TARGET_BATCH_E2E_FLAT = 10000.0  # issue 22, target 1: with the flat rate
TARGET_BATCH_E2E_RULES = 8000.0  # and with the 7-rule set of bench/bench_rules.py (--rules)


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (measure, value, note)
    checks: list[str] = field(default_factory=list)

    def add(self, measure: str, value: str, note: str = "") -> None:
        self.rows.append((measure, value, note))
        print(f"  {measure}: {value}" + (f"  ({note})" if note else ""), flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a value that was measured)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def order(order_id: str, customer: str) -> dict:
    return {"customerId": customer, "orderId": order_id, "amount": "10.00", "currency": "EUR",
            "timestamp": "2026-11-20T09:30:00Z", "channel": "store",
            "items": [{"sku": "LATTE-M", "category": "coffee", "quantity": 2, "unitPrice": "5.00"}]}


class Probe:
    """Read-only look into the running platform's SQLite file: final order
    statuses of a phase, the newest ledger LSN, the projector's checkpoint."""

    def __init__(self, db: Path) -> None:
        self._conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=10000")

    def statuses(self, order_prefix: str) -> Counter:
        # Order-status documents are partitioned by "tenant:orderId": a key range
        # on the primary key selects one phase's orders ('-' + 1 == '.').
        low = f"{TENANT}:{order_prefix}-"
        high = f"{TENANT}:{order_prefix}."
        rows = self._conn.execute(
            f"SELECT json_extract(body, '$.status'), COUNT(*) FROM {table_of(ORDER_STATUS)} "
            "WHERE pk >= ? AND pk < ? GROUP BY 1", (low, high)).fetchall()
        return Counter({status: count for status, count in rows})

    def latest_ledger_lsn(self) -> int:
        # The ledger is staged (a recent and a main table): each one's MAX from its lsn index.
        row = self._conn.execute("SELECT MAX(" + ", ".join(
            f"COALESCE((SELECT MAX(lsn) FROM {t} WHERE lsn IS NOT NULL), 0)" for t in tables_of(LEDGER)) + ")").fetchone()
        return row[0] or 0

    def projector_lsn(self) -> int:
        row = self._conn.execute(f"SELECT body FROM {table_of(SYSTEM)} WHERE pk = 'projector' AND id = 'projector'"
                                 ).fetchone()
        return orjson.loads(row[0])["lsn"] if row else 0

    def close(self) -> None:
        self._conn.close()


async def until_projected(probe: Probe, prefix: str, count: int, started: float, start_lsn: int) -> None:
    """Every order of the phase final in the read model, and the projector past
    the newest ledger entry written by then (so balances are projected too).

    Counting the phase's statuses reads every one of them (tens of ms of this
    process's CPU at 25,000 orders, taken from the server on a two-core machine),
    so it runs only when two cheap reads say it may pass: the ledger grew by the
    three documents each order writes (entry, order record, marker) and the
    projector has caught up with it; and at least every half second anyway."""
    deadline = started + TIMEOUT
    counted_at = time.perf_counter()
    while True:
        latest = probe.latest_ledger_lsn()
        likely = latest - start_lsn >= 3 * count and probe.projector_lsn() >= latest
        if likely or time.perf_counter() - counted_at >= 0.5:
            counted_at = time.perf_counter()
            statuses = probe.statuses(prefix)
            if sum(statuses[s] for s in FINAL) >= count:
                break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{prefix}: only {dict(probe.statuses(prefix))} of {count} orders final "
                               f"within {TIMEOUT:.0f} s")
        await asyncio.sleep(0.005)
    if statuses["credited"] != count:
        raise RuntimeError(f"{prefix}: not every order was credited: {dict(statuses)}")
    await caught_up(probe, deadline)


async def caught_up(probe: Probe, deadline: float) -> None:
    """The projector has passed the newest ledger entry written by now."""
    target = probe.latest_ledger_lsn()
    while probe.projector_lsn() < target:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the projector did not reach LSN {target} within {TIMEOUT:.0f} s")
        await asyncio.sleep(0.005)


async def verify_credited(http: Pool, expected: Counter) -> None:
    """Untimed: each customer's projected ordersCredited equals the orders sent."""
    wrong = []
    for offset in range(0, len(CUSTOMERS), 50):
        chunk = CUSTOMERS[offset:offset + 50]
        answers = await asyncio.gather(*(http.get(f"/v1/customers/{c}/balance") for c in chunk))
        for customer, answer in zip(chunk, answers):
            found = answer.json()["ordersCredited"]
            if found != expected[customer]:
                wrong.append(f"{customer}: {found} != {expected[customer]}")
    if wrong:
        raise RuntimeError(f"{len(wrong)} balance(s) disagree with the orders sent: {wrong[:5]}")


async def activate_bench_rules(platform: LocalPlatform) -> None:
    """The sandbox's rule set gets bench/bench_rules.py's 7 rules as a new version, activated
    before any timed order (the tenant admin's key, as an operator would)."""
    from bench_rules import RULES  # bench/bench_rules.py

    admin = Pool(platform.url, {"Authorization": f"Bearer {platform.keys['tenant-admin']}"}, size=1)
    reason = {"code": "other", "text": "issue 22: the spine benchmark with a realistic rule set"}
    try:
        created = await admin.post("/v1/rules/versions", json={"ruleSetId": "sandbox", "source": RULES,
                                                                "reason": reason})
        assert created.status == 201, created.body
        version = created.json()["version"]
        activated = await admin.post("/v1/rules/activate", json={
            "target": {"ruleSetId": "sandbox", "version": version}, "reason": reason})
        assert activated.status == 200, activated.body
    finally:
        await admin.aclose()


async def register_customers(http: Pool) -> None:
    async def one(customer: str) -> None:
        response = await http.post("/v1/customers", json={"customerId": customer, "joinDate": "2025-01-01"})
        assert response.status in (201, 409), response.body

    for offset in range(0, len(CUSTOMERS), 50):
        await asyncio.gather(*(one(c) for c in CUSTOMERS[offset:offset + 50]))


async def single_orders(http: Pool, probe: Probe, expected: Counter, count: int,
                        concurrency: int) -> tuple[float, float]:
    prefix = "s" + uuid.uuid4().hex[:8]
    pending = list(range(count))
    start_lsn = probe.latest_ledger_lsn()

    async def worker() -> None:
        while pending:
            n = pending.pop()
            response = await http.post("/v1/orders", json=order(f"{prefix}-{n}", CUSTOMERS[n % len(CUSTOMERS)]))
            assert response.status == 202, response.body

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted = time.perf_counter() - start
    await until_projected(probe, prefix, count, start, start_lsn)
    total = time.perf_counter() - start
    expected.update(CUSTOMERS[n % len(CUSTOMERS)] for n in range(count))
    await verify_credited(http, expected)
    return count / accepted, count / total


async def batches(http: Pool, probe: Probe, expected: Counter, count: int,
                  concurrency: int) -> tuple[float, float, int]:
    prefix = "b" + uuid.uuid4().hex[:8]
    bodies = [{"orders": [order(f"{prefix}-{b}-{i}", CUSTOMERS[(b * BATCH + i) % len(CUSTOMERS)])
                          for i in range(BATCH)]} for b in range(max(1, count // BATCH))]
    pending = list(reversed(bodies))

    async def worker() -> None:
        while pending:
            response = await http.post("/v1/orders/batch", json=pending.pop())
            assert response.status == 202, response.body

    n = len(bodies) * BATCH
    start_lsn = probe.latest_ledger_lsn()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    accepted = time.perf_counter() - start
    await until_projected(probe, prefix, n, start, start_lsn)
    total = time.perf_counter() - start
    expected.update(o["customerId"] for body in bodies for o in body["orders"])
    await verify_credited(http, expected)
    return n / accepted, n / total, n


async def latencies(http: Pool, expected: Counter, count: int) -> tuple[list[float], list[float]]:
    prefix = "w" + uuid.uuid4().hex[:8]
    waits = []
    for n in range(count):
        customer = CUSTOMERS[n % len(CUSTOMERS)]
        start = time.perf_counter()
        response = await http.post("/v1/orders?wait=5", json=order(f"{prefix}-{n}", customer))
        waits.append(time.perf_counter() - start)
        assert response.status == 200 and response.json()["status"] == "credited", response.body
        expected[customer] += 1
    reads = []
    for n in range(count * 5):
        start = time.perf_counter()
        response = await http.get(f"/v1/customers/{CUSTOMERS[n % len(CUSTOMERS)]}/balance")
        reads.append(time.perf_counter() - start)
        assert response.status == 200, response.body
    return waits, reads


def memory(api_pid: int, results: Results) -> None:
    """Every platform process's RSS now and at its peak (VmHWM), from /proc (Linux only)."""
    def status(pid: int) -> dict[str, str]:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            return {}
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def mib(value: str) -> float:
        return int(value.split()[0]) / 1024  # "123456 kB"

    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and status(int(p.name)).get("PPid", "").strip() == str(api_pid)]
    for pid, name in [(api_pid, "API"), *((c, f"worker {c}") for c in children)]:
        info = status(pid)
        if "VmRSS" not in info:
            continue
        argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
        label = "API" if name == "API" else argv[argv.index("--role") + 1] if "--role" in argv[:-1] else name
        results.add(f"RSS of the {label} process", f"{mib(info['VmRSS']):.0f} MiB, peak {mib(info['VmHWM']):.0f} MiB")
        record(f"peak RSS, {label} process", mib(info["VmHWM"]), "MiB",
               target=TARGET_API_RSS_MIB if name == "API" else None, higher_is_better=False)


def store_alone(events: int, results: Results) -> None:
    from bench_peers import ledger_sizes
    from bench_peers import theirs as peer_appends

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
    for offset in range(0, events, BATCH):
        ledger.append(requests[offset:offset + BATCH])
    ours = events / (time.perf_counter() - start)
    store.close()

    # The recorder writing what one append writes (an event of the entry's size and one of
    # the marker's, in one transaction), synchronous=FULL set on its connection as on ours:
    # bench/bench_peers.py, which also compares at the store level (issue 22, target 5).
    sizes = ledger_sizes(folder)
    theirs, their_sync = peer_appends(folder, events, 0, BATCH, "FULL", bodies=tuple(sizes.values()))
    results.add("ledger appends on the store alone", f"{ours:,.0f}/s",
                f"{events:,} appends: entry + idempotency marker + running totals, group commit of {BATCH}, "
                "synchronous=FULL")
    results.add("eventsourcing SQLiteAggregateRecorder, same bytes per append", f"{theirs:,.0f}/s",
                f"{BATCH} appends per transaction, events of " + " + ".join(f"{n} B" for n in sizes.values())
                + f", synchronous={their_sync}")
    results.add("ratio ledger / eventsourcing", f"{ours / theirs:.2f}×")
    record("ledger appends, store alone (empty file)", ours, "/s")
    record("ledger appends / eventsourcing recorder, same bytes", ours / theirs, "×", target=1.0)


def chain_cost(events: int, rounds: int = 3) -> None:
    """Appends/s with and without the hash chain, alternated, and one seal's CPU time."""
    import shared.ledger.service as service
    from shared.clock import SystemClock
    from shared.ledger.chain import anchor, seal
    from shared.ledger.entries import EntryDraft, EntryType, Head
    from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    def run(sealed: bool, tag: str) -> float:
        folder = Path(tempfile.mkdtemp(prefix="bench-chain-"))
        store = SqliteDocumentStore(folder / "ledger.db", CONTAINERS, synchronous="FULL")
        ledger = Ledger(store, SystemClock())

        def request(n: int) -> TransactionRequest:
            def plan(head: Head) -> Plan:
                return Plan(entries=[EntryDraft(EntryType.EARN, 10, counts_order=True)], outcome={"points": 10})
            return TransactionRequest("bench", f"c{n % 1000}", f"{tag}{n}", fingerprint_of(n), plan)

        requests = [request(n) for n in range(events)]
        service.seal = seal if sealed else (lambda entry, prev: {"hash": prev})
        try:
            start = time.perf_counter()
            for offset in range(0, events, BATCH):
                ledger.append(requests[offset:offset + BATCH])
            return events / (time.perf_counter() - start)
        finally:
            service.seal = seal
            store.close()

    with_chain: list[float] = []
    without: list[float] = []
    for r in range(rounds):
        with_chain.append(run(True, f"w{r}-"))
        without.append(run(False, f"n{r}-"))
    entry = {"id": "e-000000000001", "pk": "bench:c1", "docType": "entry", "tenantId": "bench", "customerId": "c1",
             "seq": 1, "transactionId": "tx-0123456789abcdef0000000000000001", "entryType": "EARN",
             "signedAmount": 10, "runningBalance": 10, "runningPending": 0, "runningReserved": 0,
             "runningLifetimeEarned": 10, "ordersCredited": 1, "referenceOrderId": "o-1", "referenceEntryId": None,
             "settlesEntryId": None, "ruleSetId": "rs", "ruleSetVersion": 3, "arm": None, "status": "COMMITTED",
             "createdAt": "2026-12-05T08:00:00.000000Z", "idempotencyKey": "order:o-1"}
    prev, n = anchor("bench:c1", 0), 50_000
    start = time.process_time()
    for _ in range(n):
        seal(dict(entry), prev)
    per_seal = (time.process_time() - start) / n * 1e6
    best_with, best_without = max(with_chain), max(without)
    print(f"  appends/s with the chain:    {best_with:,.0f} (rounds: {', '.join(f'{v:,.0f}' for v in with_chain)})")
    print(f"  appends/s without the chain: {best_without:,.0f} (rounds: {', '.join(f'{v:,.0f}' for v in without)})")
    print(f"  cost of the chain: {100 * (1 - best_with / best_without):.1f}% of append throughput; "
          f"one seal (canonical JSON + SHA-256) {per_seal:.1f} µs CPU")


async def drive(platform: LocalPlatform, probe: Probe, args: argparse.Namespace, results: Results) -> None:
    headers = {"Authorization": f"Bearer {platform.keys['merchant']}"}
    expected: Counter = Counter()
    http = Pool(platform.url, headers, size=64)
    try:
        await register_customers(http)
        if args.rules:
            await activate_bench_rules(platform)
        await single_orders(http, probe, expected, min(200, args.orders), 16)  # warm-up, not reported
        rps, e2e = await single_orders(http, probe, expected, args.orders, 32)
        results.add("single-order calls accepted (202)", f"{rps:,.0f} req/s",
                    f"{args.orders:,} POST /v1/orders, 32 concurrent; target ≥ {TARGET_SINGLE_RPS:,.0f}")
        results.add("single-order calls end to end", f"{e2e:,.0f} orders/s", "accepted → committed → projected")
        record("single orders accepted (202)", rps, "req/s", target=TARGET_SINGLE_RPS)
        rps, e2e, n = await batches(http, probe, expected, args.batch_orders, 2)
        results.add(f"batches of {BATCH} accepted", f"{rps:,.0f} orders/s", f"{n:,} orders, 2 concurrent")
        results.add(f"batches of {BATCH} end to end", f"{e2e:,.0f} orders/s",
                    f"accepted → committed → projected; target ≥ {TARGET_BATCH_E2E:,.0f}")
        record(f"batches of {BATCH} end to end ({'7-rule set' if args.rules else 'flat rate'})", e2e, "orders/s",
               target=TARGET_BATCH_E2E_RULES if args.rules else TARGET_BATCH_E2E_FLAT)
        waits, reads = await latencies(http, expected, args.latency_samples)
        results.add("single order with ?wait=5", f"p50 {percentile(waits, 50) * 1000:.2f} ms, "
                    f"p99 {percentile(waits, 99) * 1000:.2f} ms", f"{len(waits)} sequential calls, answered credited")
        p99 = percentile(reads, 99) * 1000
        results.add("balance read", f"p50 {percentile(reads, 50) * 1000:.2f} ms, p99 {p99:.2f} ms",
                    f"{len(reads)} sequential calls; target p99 < {TARGET_BALANCE_P99_MS:g} ms")
        record("balance read p99 (idle)", p99, "ms", target=TARGET_BALANCE_P99_MS, higher_is_better=False)
        await caught_up(probe, time.perf_counter() + TIMEOUT)
        await verify_credited(http, expected)
        results.checks.append(f"every one of {sum(expected.values()):,} orders credited exactly once in the "
                              f"projected balances of {len(CUSTOMERS):,} customers")
    finally:
        await http.aclose()


def drain(stream) -> None:  # type: ignore[no-untyped-def]
    """Keep reading the platform's output so a full pipe never blocks it."""
    for _ in iter(stream.readline, ""):
        pass


@contextlib.contextmanager
def durable_platform(prefix: str) -> Iterator[tuple[LocalPlatform, "Probe"]]:
    """The local platform started in a fresh folder with durability on (SQLite
    synchronous=FULL, whatever the caller's environment says), its output drained so a
    full pipe never blocks it, and a probe on its database; both closed on the way out."""
    os.environ["ACCRUE_SQLITE_SYNCHRONOUS"] = "FULL"
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    platform = LocalPlatform(folder / "data").start()
    assert platform.process is not None and platform.process.stdout is not None
    threading.Thread(target=drain, args=(platform.process.stdout,), daemon=True).start()
    probe = Probe(folder / "data" / "accrue.db")
    try:
        yield platform, probe
    finally:
        probe.close()
        platform.stop()


def write_results(path: Path, results: Results, args: argparse.Namespace, seconds: float) -> None:
    lines = ["# Spine benchmark (bench/bench_spine.py)", "",
             f"Machine: {machine_line()}", "",
             f"`python bench/bench_spine.py --orders {args.orders} --batch-orders {args.batch_orders} "
             f"--latency-samples {args.latency_samples} --store-events {args.store_events}` ({seconds:.0f} s). "
             "Local platform in a subprocess (the API process with uvicorn, an ingest and a project worker "
             "process), durability on (SQLite synchronous=FULL); the load generator (bench/loadgen.py) is this "
             "process, on the same cores.", "",
             "| measure | result | notes |", "|---|---:|---|"]
    lines += [f"| {measure} | {value} | {note} |" for measure, value, note in results.rows]
    lines += ["", "Checks: " + "; ".join(results.checks) + ".", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=5000, help="single-order calls (default 5000)")
    parser.add_argument("--rules", action="store_true",
                        help="earn by the 7-rule set of bench/bench_rules.py (item aggregates) instead of the "
                             "sandbox's flat rate (issue 22, target 1)")
    parser.add_argument("--batch-orders", type=int, help="orders sent in batches of 500 (default 5 × --orders)")
    parser.add_argument("--latency-samples", type=int, default=500,
                        help="sequential ?wait= orders; 5× as many balance reads (default 500)")
    parser.add_argument("--store-events", type=int, help="appends on the store alone (default 4 × --orders)")
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS-spine.md")),
                        help="results file (default bench/RESULTS-spine.md; '-' for none)")
    parser.add_argument("--chain-cost", action="store_true",
                        help="only the hash chain's cost: store-alone appends with and without it, one run")
    args = parser.parse_args()
    if args.chain_cost:
        print(f"machine: {machine_line()}", flush=True)
        print("ledger hash chain on the store alone (synchronous=FULL, group commit of 500):", flush=True)
        chain_cost(args.store_events or 20_000)
        return
    args.batch_orders = args.batch_orders or args.orders * 5
    args.store_events = args.store_events or args.orders * 4
    began = time.perf_counter()
    print(f"machine: {machine_line()}", flush=True)
    results = Results()
    with durable_platform("bench-spine-") as (platform, probe):
        print("local platform over HTTP, durability on (SQLite synchronous=FULL), earning by "
              + ("the 7-rule set of bench/bench_rules.py:" if args.rules else "the sandbox's flat rate:"), flush=True)
        uvloop.run(drive(platform, probe, args, results))
        memory(platform.process.pid, results)
    print("ledger on the store alone vs eventsourcing:", flush=True)
    store_alone(args.store_events, results)
    for check in results.checks:
        print(f"  check: {check}")
    if args.output != "-":
        write_results(Path(args.output), results, args, time.perf_counter() - began)


if __name__ == "__main__":
    main()
