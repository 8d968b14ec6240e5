"""Benchmark of data out: webhook deliveries and encrypted warehouse exports.

* webhooks: N events fanned out to a local receiver (ThreadingHTTPServer on
  loopback, reached through the test-only allowance) that verifies every
  delivery with the reference ``standardwebhooks`` library; deliveries/s of
  ``DeliveryWorker.drain`` (kept-alive connections, as shipped; bench_webhooks.py adds latency).
* exports: ``--entries`` ledger entries (default 1,000,000) over ``--customers``
  customers, generated straight into a SQLite store, exported (the
  transactions subject: page, gzip NDJSON, client-side encryption v2, local blob
  folder) in a child process; rows/s, MB/s of plaintext and ciphertext, and the
  child's peak RSS (ru_maxrss), with the generation's RSS as a baseline.

Usage: ``python bench/bench_dataout.py [--events N] [--entries N] [--customers N] [--output PATH]``;
writes ``bench/RESULTS-dataout.md`` (or ``--output``; ``-`` prints the table instead).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from machine import machine_line  # bench/machine.py (the script's folder is on sys.path)
from receiver import serve_verifying  # bench/receiver.py
from summary import record  # bench/summary.py: make bench's summary table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from standardwebhooks import Webhook  # noqa: E402


def bench_webhooks(events: int, endpoints: int) -> dict:
    from shared.clock import SystemClock
    from shared.platform import build_platform
    from shared.settings import Settings
    from shared.webhooks.ssrf import TestAllowance

    secrets: dict[str, Webhook] = {}
    counts = {"ok": 0, "bad": 0}
    lock = threading.Lock()

    def on_answer(path: str, headers: dict[str, str], ok: bool) -> None:
        with lock:
            counts["ok" if ok else "bad"] += 1

    server, url = serve_verifying(lambda path, body, headers: secrets[path].verify(body, headers), on_answer)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env({"ACCRUE_DATA_DIR": folder, "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"})
        platform = build_platform(settings, clock=SystemClock())
        platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
        from decimal import Decimal

        from shared.domain.tenants import TenantSettings

        platform.tenants.save(TenantSettings(tenantId="bench", name="bench", currency="EUR", timeZone="UTC",
                                             pointsPerUnit=Decimal(1)))
        for number in range(endpoints):
            _, secret = platform.webhooks.register("bench", f"{url}/e{number}", ["ruleset.activated"])
            secrets[f"/e{number}"] = Webhook(secret)
        started = time.perf_counter()
        for version in range(1, events + 1):
            platform.webhooks.rule_set_activated("bench", "rs", version)
        enqueue = time.perf_counter() - started
        platform.webhook_worker.per_endpoint_batch = 200
        platform.webhook_worker.per_endpoint_concurrency = 4
        started = time.perf_counter()
        report = platform.webhook_worker.drain(max_rounds=10_000)
        elapsed = time.perf_counter() - started
        platform.close()
    server.shutdown()
    return {"events": events, "endpoints": endpoints, "deliveries": report.succeeded, "verified": counts["ok"],
            "refused": counts["bad"], "seconds": elapsed, "per_second": report.succeeded / elapsed,
            "enqueue_per_second": events * endpoints / enqueue}


def insert_sql(container: str) -> str:
    """The INSERT of one row into the container's table (``c_<name>``): the row columns, then one
    column per field the store extracts (``ContainerSpec.extracted``), then the line column of a
    container that keeps lines (``ContainerSpec.line``), as ``row`` orders them."""
    from shared.store.layout import BY_NAME
    from shared.store.sqlite import column_of, tables_of

    spec = BY_NAME[container]
    columns = ("pk", "id", "etag", "ts", "lsn", "body", *(column_of(f) for f in spec.extracted),
               *((spec.line.column,) if spec.line else ()))
    # The first table: a staged container's (the ledger's) main table, where loaded history belongs.
    return f"INSERT INTO {tables_of(container)[0]} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def row(container: str, doc: dict, lsn: int | None = None) -> tuple:
    """The row the store would write for ``doc`` (fixed etag and ts), field and line columns filled as it fills them."""
    from shared.store.layout import BY_NAME
    from shared.store.sqlite import field_value

    spec = BY_NAME[container]
    return (doc["pk"], doc["id"], "e", 0, lsn, orjson.dumps(doc).decode(),
            *(field_value(doc, f) for f in spec.extracted), *((spec.line.line_of(doc),) if spec.line else ()))


def generate(db_path: Path, entries: int, customers: int) -> None:
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    SqliteDocumentStore(db_path, CONTAINERS, synchronous="NORMAL").close()  # schema and indexes
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    for c in range(customers):
        cid = f"c{c:07d}"
        doc = {"id": cid, "pk": f"bench:{cid}", "docType": "customer", "tenantId": "bench", "customerId": cid,
               "joinDate": "2025-01-01", "tags": [], "tier": None, "createdAt": base.isoformat()}
        rows.append(row("customers", doc))
    conn.executemany(insert_sql("customers"), rows)
    insert_entries = insert_sql("ledger")
    per = entries // customers
    lsn = 0
    batch = []
    for c in range(customers):
        cid = f"c{c:07d}"
        balance = 0
        for seq in range(1, per + 1):
            lsn += 1
            balance += 10
            at = (base + timedelta(seconds=lsn)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            doc = {"id": f"e-{seq:012d}", "pk": f"bench:{cid}", "docType": "entry", "tenantId": "bench",
                   "customerId": cid, "seq": seq, "transactionId": "tx-" + uuid.uuid4().hex, "entryType": "EARN",
                   "signedAmount": 10, "runningBalance": balance, "runningPending": 0,
                   "runningLifetimeEarned": balance, "ordersCredited": seq, "referenceOrderId": f"o{lsn}",
                   "referenceEntryId": None, "settlesEntryId": None, "ruleSetId": "rs", "ruleSetVersion": 1,
                   "arm": None, "status": "COMMITTED", "createdAt": at, "idempotencyKey": f"k{lsn}"}
            batch.append(row("ledger", doc, lsn))
            if len(batch) >= 50_000:
                conn.executemany(insert_entries, batch)
                batch.clear()
    conn.executemany(insert_entries, batch)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


CHILD = r"""
import json, os, resource, sys, time
from datetime import datetime, timezone
sys.path.insert(0, sys.argv[1])
from shared.blobs.local import LocalBlobSink
from shared.clock import SystemClock
from shared.exports.service import ExportService
from shared.keys.local import LocalKeyring
from shared.store.layout import CONTAINERS
from shared.store.sqlite import SqliteDocumentStore
folder = sys.argv[2]
store = SqliteDocumentStore(folder + "/accrue.db", CONTAINERS, synchronous="NORMAL")
keys = LocalKeyring.in_folder(folder)
service = ExportService(store, SystemClock(), keys, LocalBlobSink(folder + "/blobs"))
service.save_settings("bench", format="ndjson")  # this benchmark's NDJSON path; Parquet: bench_exports.py
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
manifest = service.backfill("bench", datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc),
                            ["transactions"])
elapsed = time.perf_counter() - started
f = manifest["files"][0]
print(json.dumps({"rows": f["rows"], "seconds": elapsed, "plaintext": f["plaintextBytes"],
                  "ciphertext": os.path.getsize(folder + "/blobs/" + f["path"]), "rss_before_kib": rss_before,
                  "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def bench_export(entries: int, customers: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate(Path(folder) / "accrue.db", entries, customers)
        generated = time.perf_counter() - started
        root = str(Path(__file__).resolve().parent.parent)
        out = subprocess.run([sys.executable, "-c", CHILD, root, folder], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    result["generate_seconds"] = generated
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS-dataout.md")),
                        help="where the results table goes; '-' prints it instead (for trial runs)")
    args = parser.parse_args()
    wh = bench_webhooks(args.events, args.endpoints)
    print(f"webhooks: {wh['deliveries']} deliveries in {wh['seconds']:.2f} s = {wh['per_second']:.0f}/s "
          f"(verified {wh['verified']}, refused {wh['refused']}); outbox writes {wh['enqueue_per_second']:.0f}/s")
    record("webhooks verified deliveries", wh["per_second"], "/s", target=2000.0)
    ex = bench_export(args.entries, args.customers)
    mb = 1024 * 1024
    print(f"export: {ex['rows']} rows in {ex['seconds']:.1f} s = {ex['rows'] / ex['seconds']:.0f} rows/s, "
          f"{ex['plaintext'] / mb / ex['seconds']:.1f} MB/s gzip plaintext, "
          f"{ex['ciphertext'] / mb / ex['seconds']:.1f} MB/s encrypted; "
          f"peak RSS {ex['rss_peak_kib'] / 1024:.0f} MiB (at start {ex['rss_before_kib'] / 1024:.0f} MiB)")
    lines = [
        "# Data-out benchmark (bench/bench_dataout.py)", "",
        f"Machine: {machine_line()}", "",
        "## Webhooks", "",
        f"{wh['events']} events x {wh['endpoints']} endpoints to a loopback receiver that verifies every delivery "
        "with the reference `standardwebhooks` library (kept-alive connections, 4 lanes per endpoint).", "",
        "| deliveries | seconds | deliveries/s | verified | refused |", "|---:|---:|---:|---:|---:|",
        f"| {wh['deliveries']} | {wh['seconds']:.2f} | {wh['per_second']:.0f} | {wh['verified']} | {wh['refused']} |",
        "", "## Export (transactions subject)", "",
        f"{ex['rows']:,} ledger entries over {args.customers:,} customers, generated straight into SQLite "
        f"({ex['generate_seconds']:.0f} s), exported in a child process: paged reads, gzip NDJSON, "
        "Azure Storage client-side encryption v2 (AES-256-GCM) under the export key, local blob folder.", "",
        "| rows | seconds | rows/s | MB/s plaintext (gzip) | MB/s encrypted | plaintext MB | peak RSS MiB | RSS at start MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {ex['rows']:,} | {ex['seconds']:.1f} | {ex['rows'] / ex['seconds']:,.0f} | "
        f"{ex['plaintext'] / mb / ex['seconds']:.1f} | {ex['ciphertext'] / mb / ex['seconds']:.1f} | "
        f"{ex['plaintext'] / mb:.1f} | {ex['rss_peak_kib'] / 1024:.0f} | {ex['rss_before_kib'] / 1024:.0f} |", "",
    ]
    if args.output == "-":
        print("\n".join(lines))
    else:
        Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
