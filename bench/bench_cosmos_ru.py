"""Request units of the spine: RU per ingested order, per balance read, per projection.

Runs the real spine (HTTP through the ASGI app, the intake, the consumer, the
change-feed projector) on the embedded store behind a recorder that notes every
store operation: container, kind, document size and indexed terms. Each is then
priced with Cosmos DB's documented request-unit costs ("Request units in Azure
Cosmos DB"; "Optimize request cost"):

* point read of an item up to 1 KB: 1 RU (+1 RU per further KB); a read of a
  missing item costs the same; ``read_items`` ~ one point read per key;
* write (create, upsert, replace, delete) of an item up to 1 KB with automatic
  indexing: ~5 RU (+~5 RU per further KB). Indexed terms add to that; the
  column ``terms/write`` shows what the indexing policy leaves indexed, so an
  exclusion's saving is visible, but the model does not price terms;
* query within one partition: ~2.5 RU plus 1 RU per KB returned;
* transactional batch: the sum of its operations.

Also prints, where the emulator is available (``--cosmos``), what cosmosdb-server
reports in ``x-ms-request-charge`` for the same point operations (it sends
none: the real service's charges come from Azure Monitor's ``TotalRequestUnits``
once deployed), and the monthly cost of 1 M orders a day at serverless and at
autoscale list prices (USD, single region, no free tier).

Usage: ``python bench/bench_cosmos_ru.py [--orders N] [--customers N] [--cosmos]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from shared.store.layout import UNINDEXED_PATHS  # noqa: E402
from shared.store.port import Create, Delete, PartitionBatch, Query, Upsert  # noqa: E402

KB = 1024
# List prices (USD), Azure Cosmos DB pricing page, single-region write account:
SERVERLESS_PER_MILLION_RU = 0.25
AUTOSCALE_PER_100_RUS_HOUR = 0.012  # 1.5x the manual-throughput rate of 0.008
STORAGE_PER_GB_MONTH = 0.25
HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30.4


def _kb(doc: dict[str, Any]) -> float:
    return len(orjson.dumps({k: v for k, v in doc.items() if not k.startswith("_")})) / KB


def _terms(container: str, doc: Any, prefix: str = "") -> int:
    """Index terms Cosmos DB would write for ``doc`` under the container's policy."""
    excluded = [p.rstrip("/*?").rstrip("/") for p in UNINDEXED_PATHS.get(container, ())]
    if isinstance(doc, dict):
        return sum(_terms(container, v, f"{prefix}/{k}") for k, v in doc.items()
                   if not k.startswith("_") and f"{prefix}/{k}" not in excluded)
    if isinstance(doc, list):
        return sum(_terms(container, v, prefix) for v in doc) or 1
    return 1


def read_ru(kb: float) -> float:
    return max(1.0, math.ceil(kb))


def write_ru(kb: float) -> float:
    return 5.0 * max(1.0, math.ceil(kb))


def query_ru(kb: float) -> float:
    return 2.5 + kb


@dataclass
class Tally:
    ru: float = 0.0
    ops: Counter = field(default_factory=Counter)
    by_container: Counter = field(default_factory=Counter)
    terms: list[int] = field(default_factory=list)
    written_kb: float = 0.0

    detail: Counter = field(default_factory=Counter)

    def add(self, container: str, kind: str, ru: float) -> None:
        self.ru += ru
        self.ops[kind] += 1
        self.by_container[container] += ru
        self.detail[f"{container}.{kind}"] += 1


class Recorder:
    """The store port in front of another store, pricing each operation into ``tally``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.tally = Tally()
        self.inline_reads = getattr(inner, "inline_reads", False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _write(self, container: str, doc: dict[str, Any] | None) -> float:
        if doc is None:
            return write_ru(0)
        kb = _kb(doc)
        self.tally.terms.append(_terms(container, doc))
        self.tally.written_kb += kb
        return write_ru(kb)

    def read(self, container: str, pk: str, id: str) -> Any:
        doc = self._inner.read(container, pk, id)
        self.tally.add(container, "read", read_ru(_kb(doc) if doc else 0))
        return doc

    def read_many(self, container: str, keys: Sequence[tuple[str, str]]) -> Any:
        from shared.store.port import read_many

        docs = read_many(self._inner, container, keys)
        for doc in docs:
            self.tally.add(container, "read", read_ru(_kb(doc) if doc else 0))
        return docs

    def query(self, container: str, query: Query) -> Any:
        docs = self._inner.query(container, query)
        kind = "query" if query.pk is not None else "query-cross-partition"
        self.tally.add(container, kind, query_ru(sum(_kb(d) for d in docs)))
        return docs

    def create(self, container: str, doc: dict[str, Any]) -> Any:
        out = self._inner.create(container, doc)
        self.tally.add(container, "write", self._write(container, doc))
        return out

    def upsert(self, container: str, doc: dict[str, Any], if_match: str | None = None) -> Any:
        out = self._inner.upsert(container, doc, if_match)
        self.tally.add(container, "write", self._write(container, doc))
        return out

    def delete(self, container: str, pk: str, id: str, if_match: str | None = None) -> None:
        self._inner.delete(container, pk, id, if_match)
        self.tally.add(container, "write", write_ru(0))

    def batch(self, container: str, pk: str, operations: Sequence[Any]) -> Any:
        from shared.store.port import one_batch

        return one_batch(self, container, pk, operations)

    def _price_batches(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        for work in batches:
            if work.error is not None:
                continue
            ru = sum(self._write(container, op.doc if isinstance(op, (Create, Upsert)) else None)
                     for op in work.operations)
            self.tally.add(container, "batch", ru)
            self.tally.ops["batch-op"] += len(work.operations)

    def batches(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        try:
            self._inner.batches(container, batches)
        finally:
            self._price_batches(container, batches)

    async def batches_async(self, container: str, batches: Sequence[PartitionBatch]) -> None:
        from shared.store.port import batches_async

        try:
            await batches_async(self._inner, container, batches)
        finally:
            self._price_batches(container, batches)

    def take(self) -> Tally:
        tally, self.tally = self.tally, Tally()
        return tally


def spine(orders: int, customers: int) -> dict[str, Tally]:
    from fastapi.testclient import TestClient

    from shared.api.app import create_app
    from shared.local.workers import FeedPoller, QueueConsumer
    from shared.platform import build_platform
    from shared.settings import Settings
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore
    from tests.conftest import add_customer, auth, make_tenant, order_body

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"ACCRUE_DATA_DIR": tmp, "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
        recorder = Recorder(SqliteDocumentStore(Path(tmp) / "accrue.db", CONTAINERS, synchronous="NORMAL"))
        platform = build_platform(settings, store=recorder)  # type: ignore[arg-type]
        try:
            tenant = make_tenant(platform, "acme")
            for n in range(customers):
                add_customer(platform, "acme", f"c{n}")
            consumer, poller = QueueConsumer(platform, platform.bus), FeedPoller(platform)
            with TestClient(create_app(platform)) as client:
                # Warm-up: caches (tenant, rule set, keys) filled as in a running process.
                client.post("/v1/orders", json=order_body("c0", "warm"), headers=auth(tenant.merchant))
                while consumer.step():
                    pass
                while poller.step():
                    pass
                client.get("/v1/customers/c0/balance", headers=auth(tenant.merchant))
                recorder.take()

                for n in range(orders):
                    answer = client.post("/v1/orders", json=order_body(f"c{n % customers}", f"o{n}"),
                                         headers=auth(tenant.merchant))
                    assert answer.status_code == 202, answer.text
                intake = recorder.take()
                while consumer.step():
                    pass
                ingest = recorder.take()
                while poller.step():
                    pass
                projection = recorder.take()
                for n in range(orders):
                    assert client.get(f"/v1/customers/c{n % customers}/balance",
                                      headers=auth(tenant.merchant)).status_code == 200
                balance = recorder.take()
        finally:
            platform.close()
    return {"intake": intake, "ingest": ingest, "projection": projection, "balance": balance}


def emulator_charges() -> str:
    """What cosmosdb-server puts in ``x-ms-request-charge`` for a few point operations."""
    from shared.store.cosmos import CosmosDocumentStore
    from shared.store.layout import CONTAINERS, LEDGER
    from tests.emulators import COSMOS_EMULATOR_KEY, start_cosmos

    emulator = start_cosmos()
    try:
        created = CosmosDocumentStore(emulator.url, "bench-ru", CONTAINERS, credential=COSMOS_EMULATOR_KEY,
                                      connection_verify=False, create_if_missing=True)
        created.close()
        store = CosmosDocumentStore(emulator.url, "bench-ru", CONTAINERS, credential=COSMOS_EMULATOR_KEY,
                                    connection_verify=False)
        at_start, _ = store.meter.snapshot()
        entry = {"id": "e1", "pk": "acme:c1", "docType": "entry", "points": 10, "seq": 1}
        steps = [
            ("create 1 doc", lambda: store.create(LEDGER, entry)),
            ("point read", lambda: store.read(LEDGER, "acme:c1", "e1")),
            ("batch of 3 creates", lambda: store.batch(LEDGER, "acme:c1", [
                Create(dict(entry, id=f"e{n}", seq=n)) for n in (2, 3, 4)])),
            ("query in a partition", lambda: store.query(LEDGER, Query(pk="acme:c1", limit=10))),
        ]
        lines = []
        for name, step in steps:
            _, before = store.meter.snapshot()
            step()
            _, after = store.meter.snapshot()
            lines.append(f"{name} {after - before:.2f} RU")
        store.close()
        return ("cosmosdb-server's x-ms-request-charge (a fixed figure per request, not the service's cost "
                f"model): {'; '.join(lines)}. Cold start of an existing database: "
                f"{at_start.get('container', 0)} container-metadata request(s), {at_start.get('account', 0)} account")
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--detail", action="store_true", help="operations per order, by container and kind")
    parser.add_argument("--cosmos", action="store_true", help="also ask cosmosdb-server for request charges")
    args = parser.parse_args()

    phases = spine(args.orders, args.customers)
    n = args.orders
    print(f"spine on the embedded store, {n} orders over {args.customers} customers, priced per the model above\n")
    print(f"{'phase':<11} {'RU/order':>9} {'ops/order':>10} {'KB written/order':>17} {'terms/write':>12}  top containers (RU/order)")
    for name, tally in phases.items():
        ops = sum(v for k, v in tally.ops.items() if k != "batch-op")
        terms = sum(tally.terms) / len(tally.terms) if tally.terms else 0
        top = ", ".join(f"{c} {ru / n:.1f}" for c, ru in tally.by_container.most_common(4))
        print(f"{name:<11} {tally.ru / n:>9.1f} {ops / n:>10.2f} {tally.written_kb / n:>17.2f} {terms:>12.1f}  {top}")
        if args.detail:
            print("            " + ", ".join(f"{k} {v / n:.2f}" for k, v in tally.detail.most_common()))
    per_order = (phases["intake"].ru + phases["ingest"].ru) / n
    projection = phases["projection"].ru / n
    balance = phases["balance"].ru / n
    print(f"\nRU per ingested order (intake + ingest): {per_order:.1f}  (goal <= 25)")
    print(f"RU per projection (balance, status, outbox per order): {projection:.1f}")
    print(f"RU per balance read: {balance:.1f}")

    daily_orders = 1_000_000
    daily_ru = daily_orders * (per_order + projection + balance)  # one balance read per order
    monthly_ru = daily_ru * DAYS_PER_MONTH
    average_rus = daily_ru / 86_400
    peak_rus = 3 * average_rus  # busiest hour: 3x the day's average
    autoscale_max = max(1000, math.ceil(peak_rus / 1000) * 1000)
    # Autoscale bills each hour's highest RU/s (at least 10% of the maximum): a day shaped
    # as 6 busy hours at the peak and 18 at the average.
    autoscale_hours = (6 * peak_rus + 18 * max(average_rus, autoscale_max / 10)) / 24
    stored_gb = daily_orders * DAYS_PER_MONTH * (phases["ingest"].written_kb / n) / (1024 * 1024)
    print(f"\n1 M orders/day (+1 balance read each): {daily_ru / 1e6:.1f} M RU/day, {monthly_ru / 1e9:.2f} G RU/month, "
          f"{average_rus:.0f} RU/s average, ~{peak_rus:.0f} RU/s at peak")
    print(f"  serverless: ${monthly_ru / 1e6 * SERVERLESS_PER_MILLION_RU:,.0f}/month for RU "
          f"(the RU/s fit its 5,000 RU/s per container; the ledger reaches its 1 TB per container "
          f"in ~{1024 / max(stored_gb, 1):.0f} months)")
    print(f"  autoscale (max {autoscale_max} RU/s): ${autoscale_hours / 100 * AUTOSCALE_PER_100_RUS_HOUR * HOURS_PER_MONTH:,.0f}"
          f"/month for RU")
    print(f"  storage: ledger grows ~{stored_gb:.0f} GB/month (${STORAGE_PER_GB_MONTH}/GB-month, cumulative)")
    if args.cosmos:
        print("\n" + emulator_charges())


if __name__ == "__main__":
    main()
