"""Benchmark of warehouse exports (issue 18): Parquet and gzip NDJSON, both under Azure
client-side encryption v2, and the micro-batch commit-to-file latency. Parquet's
transactions are read columnar (store ``scan_json``, Arrow's JSON reader); NDJSON row by row.

* throughput: ``--entries`` ledger entries (default 1,000,000) over ``--customers`` customers,
  generated straight into SQLite (bench_dataout.generate), exported as a backfill of the
  transactions subject in a child process per format; rows/s and the child's peak RSS. Run at
  two history sizes (``--entries`` and a fifth of it) to show memory flat in history size.
* micro-batch latency: a writer thread commits entries (``--rate`` per second) while
  micro-batches run every ``--period`` seconds with no lag; for each file, the latency of its
  oldest row (file written - row committed); p50/p99/max printed. A committed row waits at
  most the period plus one micro-batch's duration; the micro-batch reads every customer's
  partition (a query per customer), so its duration grows with the tenant's customers.

Usage: ``python bench/bench_exports.py [--entries N] [--customers N] [--rate N] [--seconds S] [--period S]``
(prints figures; nothing is asserted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_dataout import generate  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from datetime import datetime, timezone
sys.path.insert(0, sys.argv[1])
from shared.blobs.local import LocalBlobSink
from shared.clock import SystemClock
from shared.exports.service import ExportService
from shared.keys.local import LocalKeyring
from shared.store.layout import CONTAINERS
from shared.store.sqlite import SqliteDocumentStore
folder, fmt = sys.argv[2], sys.argv[3]
store = SqliteDocumentStore(folder + "/accrue.db", CONTAINERS, synchronous="NORMAL")
service = ExportService(store, SystemClock(), LocalKeyring.in_folder(folder), LocalBlobSink(folder + "/blobs-" + fmt),
                        export_keys=LocalKeyring(folder + "/export-keyring.json"))
service.save_settings("bench", format=fmt)
if fmt == "parquet":
    # Imports are not the export's memory or time (one-off, ~0.2 s CPU).
    import pyarrow.compute, pyarrow.json, pyarrow.parquet  # noqa: E401
    # Where pandas is installed (the test tools bring it; the product does not depend on it),
    # pyarrow imports it the first time pa.array is given a list, to check for pandas objects:
    # ~0.5 s of CPU once per process, as these imports are, so it too is paid before the clock.
    try:
        import pandas  # noqa: F401
    except ImportError:
        pass
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# Peak RSS counts the SQLite file's pages mapped by reads (the store's mmap_size, 1 GiB):
# file-backed and reclaimable, they grow with what is read. Anonymous memory (heap, Arrow
# buffers) is what an export holds; sampled here every 10 ms.
import threading
anon_peak = [0]
def sample():
    while True:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    anon_peak[0] = max(anon_peak[0], int(line.split()[1]))
        time.sleep(0.01)
threading.Thread(target=sample, daemon=True).start()
started = time.perf_counter()
cpu = time.process_time()
manifest = service.backfill("bench", datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc),
                            ["transactions"])
elapsed = time.perf_counter() - started
cpu = time.process_time() - cpu
import os
print(json.dumps({"cpu_seconds": cpu, "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), "rows": sum(f["rows"] for f in manifest["files"]), "files": len(manifest["files"]),
                  "seconds": elapsed, "bytes": sum(f["plaintextBytes"] for f in manifest["files"]),
                  "rss_before_kib": rss_before, "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "anon_peak_kib": anon_peak[0]}))
"""


def throughput(entries: int, customers: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        generate(Path(folder) / "accrue.db", entries, customers)
        root = str(Path(__file__).resolve().parent.parent)
        for fmt in ("parquet", "ndjson"):
            out = subprocess.run([sys.executable, "-c", CHILD, root, folder, fmt], capture_output=True, text=True,
                                 check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["format"] = fmt
            results.append(result)
    return results


def format_stage(rows: int) -> dict:
    """The Parquet stage alone (rows already read): typed conversion, zstd Parquet, CSE v2
    encryption; what the format costs beside the store's paged reads."""
    import hashlib
    import resource

    from shared.blobs import cse
    from shared.exports.keys import ExportKek
    from shared.exports.parquet import PartitionedWriter
    from shared.keys.local import LocalKeyring

    def source():
        for i in range(rows):
            yield {"tenantId": "bench", "entryId": f"e-{i % 100:012d}", "customerId": f"c{i // 100:07d}", "seq": i % 100,
                   "transactionId": f"tx-{i}", "entryType": "EARN", "points": 10, "status": "COMMITTED",
                   "runningBalance": i, "runningPending": 0, "runningLifetimeEarned": i, "ordersCredited": i,
                   "referenceOrderId": f"o{i}", "referenceEntryId": None, "settlesEntryId": None, "ruleSetId": "rs",
                   "ruleSetVersion": 1, "arm": None, "createdAt": f"2026-01-{1 + i * 10 // rows:02d}T10:00:00.000000Z"}

    with tempfile.TemporaryDirectory() as folder:
        keys = LocalKeyring(Path(folder) / "x.json")
        started = time.perf_counter()
        writer = PartitionedWriter("transactions")
        writer.add(source())
        size = 0
        for part in writer.partitions("2026-01-01"):
            _, sealed = cse.encrypt(part.chunks(), ExportKek(keys, "bench"))
            digest = hashlib.sha256()
            for chunk in sealed:
                digest.update(chunk)
                size += len(chunk)
        elapsed = time.perf_counter() - started
    return {"rows": rows, "seconds": elapsed, "bytes": size,
            "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def latency(customers: int, rate: int, seconds: float, period: float) -> dict:
    import threading
    from datetime import datetime, timedelta, timezone

    from shared.blobs.local import LocalBlobSink
    from shared.clock import SystemClock, parse_iso
    from shared.exports.service import ExportService
    from shared.keys.local import LocalKeyring
    from shared.store.layout import CONTAINERS, LEDGER
    from shared.store.sqlite import SqliteDocumentStore

    with tempfile.TemporaryDirectory() as folder:
        generate(Path(folder) / "accrue.db", customers, customers)  # one entry per customer to start
        store = SqliteDocumentStore(Path(folder) / "accrue.db", CONTAINERS, synchronous="NORMAL")
        service = ExportService(store, SystemClock(), LocalKeyring.in_folder(folder), LocalBlobSink(Path(folder) / "b"),
                                lag=timedelta(0), export_keys=LocalKeyring(Path(folder) / "x.json"))
        service.run("bench")  # the history, before the clock starts
        stop = threading.Event()

        def write() -> None:
            seq = 1
            while not stop.is_set():
                seq += 1
                for c in range(min(rate, customers)):
                    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    cid = f"c{c:07d}"
                    store.create(LEDGER, {"id": f"e-{seq:012d}", "pk": f"bench:{cid}", "docType": "entry",
                                          "tenantId": "bench", "customerId": cid, "seq": seq, "signedAmount": 1,
                                          "status": "COMMITTED", "createdAt": now})
                time.sleep(max(0.0, 1.0 - 0.0))

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        lags, durations = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(period)
            started = time.perf_counter()
            manifest = service.run("bench")
            durations.append(time.perf_counter() - started)
            written = datetime.now(timezone.utc)
            frm = manifest["from"]["transactions"]
            for f in manifest["files"]:
                if f["subject"] == "transactions" and f["rows"] and frm:
                    lags.append((written - parse_iso(frm)).total_seconds())
        stop.set()
        writer.join()
        lags.sort()
        pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] if lags else float("nan")  # noqa: E731
        return {"batches": len(durations), "p50": pick(0.5), "p99": pick(0.99), "max": lags[-1] if lags else 0,
                "run_mean": sum(durations) / len(durations), "run_max": max(durations)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200, help="entries committed per second in the latency run")
    parser.add_argument("--latency-customers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--period", type=float, default=5.0, help="micro-batch period in the latency run (s)")
    parser.add_argument("--stage", action="store_true",
                        help="also time the row path's Parquet stage alone (dicts to Parquet, no store reads)")
    parser.add_argument("--only-format", action="store_true", help="only the Parquet stage (no store reads)")
    parser.add_argument("--no-latency", action="store_true", help="skip the micro-batch latency run")
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if args.stage or args.only_format:
        stage = format_stage(args.entries)
        print(f"parquet stage alone (row path: typed conversion, zstd Parquet, CSE v2 encryption, no store reads): "
              f"{stage['rows']:,} rows in {stage['seconds']:.1f} s = {stage['rows'] / stage['seconds']:,.0f} rows/s, "
              f"{stage['bytes'] / 2**20:.1f} MiB encrypted, peak RSS {stage['rss_peak_kib'] / 1024:.0f} MiB")
    if args.only_format:
        return
    from summary import record  # noqa: PLC0415 - bench/ is on the path

    anon: dict[str, list[float]] = {}
    for entries in (args.entries // 5, args.entries):
        for r in throughput(entries, args.customers):
            anon.setdefault(r["format"], []).append(r["anon_peak_kib"] / 1024)
            if entries == args.entries:
                record(f"export {r['format']}, {entries:,} entries", r["rows"] / r["seconds"], "rows/s",
                       target=300_000 if r["format"] == "parquet" else None)
            print(f"export {r['format']:7s} {r['rows']:>9,} rows in {r['seconds']:6.1f} s = "
                  f"{r['rows'] / r['seconds']:>9,.0f} rows/s, {r['files']} file(s), {r['bytes'] / 2**20:6.1f} MiB, "
                  f"peak RSS {r['rss_peak_kib'] / 1024:.0f} MiB (at start {r['rss_before_kib'] / 1024:.0f} MiB; "
                  f"anonymous peak {r['anon_peak_kib'] / 1024:.0f} MiB, the rest the SQLite file's mapped pages), "
                  f"CPU {r['cpu_seconds']:.1f} s, load {r['load']}")
    for fmt, (small, large) in anon.items():
        print(f"{fmt}: anonymous memory at {args.entries:,} entries / at {args.entries // 5:,}: {large / small:.2f}x")
        if fmt == "parquet":
            record(f"export parquet memory at {args.entries:,} / at {args.entries // 5:,} entries", large / small,
                   "x", target=1.2, higher_is_better=False)
    if args.no_latency:
        return
    lat = latency(args.latency_customers, args.rate, args.seconds, args.period)
    print(f"micro-batch every {args.period:.0f} s, {args.latency_customers} customers, {args.rate} entries/s: "
          f"{lat['batches']} batches, commit-to-file latency of a batch's oldest possible row p50 {lat['p50']:.1f} s, "
          f"p99 {lat['p99']:.1f} s, max {lat['max']:.1f} s; a micro-batch takes {lat['run_mean']:.2f} s "
          f"(max {lat['run_max']:.2f} s)")


if __name__ == "__main__":
    main()
