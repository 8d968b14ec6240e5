"""Benchmark of historical imports: rows per second end to end, and peak memory.

``--customers`` customers (default 100,000) are imported first (kind ``customers``,
no personal fields: the setup, timed but not the figure), then ``--orders``
historical orders (default 1,000,000, NDJSON, the customers' orders spread over
five years) are imported end to end: the file uploaded through the blob port,
the job run through the work-item queue in its bounded slices (as the
``work-items`` timer runs it: SQLite ``synchronous=NORMAL``, the ledger's group
commit), until the import is done. Then the ledger is checked (every order
credited once, the total points exact) and the same file is imported again (it
must write nothing: the re-run rate is printed too).

Memory: each orders import runs in a child process of its own, which reports its
peak RSS; it is run for a quarter of the file and for the whole file, so "flat in
the file size" is the two peaks being close (the file is streamed; the ledger's
head cache is bounded at 100,000 customers).

Usage: ``python bench/bench_imports.py [--orders N] [--customers N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from machine import machine_line  # bench/machine.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TENANT = "bench"
START = datetime(2020, 1, 1, tzinfo=timezone.utc)


def write_orders(path: Path, orders: int, customers: int, prefix: str) -> int:
    """The orders file, streamed to disk; returns the total points."""
    total = 0
    span = 5 * 365 * 86400
    with path.open("w", encoding="utf-8") as out:
        for n in range(orders):
            points = n % 50
            total += points
            moment = START + timedelta(seconds=(n * 7919) % span)
            out.write(f'{{"orderId":"{prefix}{n}","customerId":"c{n % customers}","amount":"{10 + n % 90}.00",'
                      f'"currency":"EUR","timestamp":"{moment.strftime("%Y-%m-%dT%H:%M:%SZ")}","points":{points}}}\n')
    return total


def platform_for(data_dir: Path):  # type: ignore[no-untyped-def]
    from shared.platform import build_platform
    from shared.settings import Settings

    return build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(data_dir), "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}))


def run_to_end(platform, kind: str, path: Path, fmt: str = "ndjson") -> tuple[dict, float]:  # type: ignore[no-untyped-def]
    from shared.imports.service import ImportSpec
    from shared.jobs import work_items

    started = time.perf_counter()
    created = platform.imports.create(TENANT, ImportSpec(kind=kind, format=fmt), None)

    def chunks():  # type: ignore[no-untyped-def]
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk

    platform.imports.upload(TENANT, created["importId"], chunks())
    platform.imports.start(TENANT, created["importId"], None)
    queue = work_items(platform)
    while queue.run(max_items=1, budget_seconds=30).claimed:
        pass
    return platform.imports.status(TENANT, created["importId"]), time.perf_counter() - started


def anon_mib() -> float:
    """Anonymous resident memory (the process's own heap), without file-backed pages:
    SQLite maps the database (``MMAP_BYTES``, 1 GiB), and the pages it touches count in
    RSS although they are the database file's, reclaimable, and grow with the database,
    not with the import file."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> int:
    """One orders import in this process: prints its figures and peak RSS as JSON."""
    from shared import gc_tuning

    platform = platform_for(Path(args.data_dir))
    # As the worker process that runs the work-items timer does once it has loaded
    # (shared.local.worker_process): the loaded heap frozen, young collections rarer.
    gc_tuning.settle()
    try:
        status, seconds = run_to_end(platform, "orders", Path(args.file))
        print(json.dumps({"status": status["status"], "rows": status["rowsDone"], "failed": status["rowsFailed"],
                          "seconds": seconds, "anon_mib": anon_mib(),
                          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    finally:
        platform.close()
    return 0


def run_child(data_dir: Path, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", "--data-dir", str(data_dir), "--file", str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from decimal import Decimal

    from shared.domain.tenants import TenantSettings

    print(f"machine: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        platform = platform_for(data_dir)
        try:
            platform.tenants.save(TenantSettings(tenantId=TENANT, name="bench", currency="EUR",
                                                 pointsPerUnit=Decimal(1)))
            customers = root / "customers.csv"
            with customers.open("w") as out:
                out.write("customerId,joinDate\n")
                for n in range(args.customers):
                    out.write(f"c{n},{date(2019, 1, 1) + timedelta(days=n % 365)}\n")
            status, seconds = run_to_end(platform, "customers", customers, "csv")
            assert status["rowsDone"] == args.customers, status
            print(f"setup: {args.customers:,} customers imported in {seconds:.1f} s "
                  f"({args.customers / seconds:,.0f} rows/s)")
        finally:
            platform.close()

        results = []
        for share in (4, 1):
            count = args.orders // share
            path = root / f"orders-{count}.ndjson"
            expected = write_orders(path, count, args.customers, f"q{share}-")
            size = path.stat().st_size
            figures = run_child(data_dir, path)
            assert figures["status"] == "done" and figures["rows"] == count and figures["failed"] == 0, figures
            results.append((count, size, figures, expected))
            print(f"orders: {count:,} rows ({size / 2**20:,.0f} MiB) in {figures['seconds']:.1f} s: "
                  f"{count / figures['seconds']:,.0f} rows/s end to end; peak RSS {figures['peak_rss_mib']:,.0f} MiB "
                  f"(anonymous at the end: {figures['anon_mib']:,.0f} MiB)")

        count = sum(r[0] for r in results)
        expected = sum(r[3] for r in results)
        platform = platform_for(data_dir)
        try:
            heads = [platform.ledger.head(TENANT, f"c{n}") for n in range(args.customers)]
            assert sum(h.orders_credited for h in heads) == count, "every order credited once"
            assert sum(h.balance for h in heads) == expected, "the points are exact"
            print(f"check: {count:,} orders credited once, {expected:,} points, exact")
        finally:
            platform.close()
        whole = results[-1][0]
        again = run_child(data_dir, root / f"orders-{whole}.ndjson")
        assert again["rows"] == whole
        print(f"re-run of the whole file: {whole / again['seconds']:,.0f} rows/s, nothing written "
              f"(peak RSS {again['peak_rss_mib']:,.0f} MiB)")
        quarter, whole = results[0][2]["peak_rss_mib"], results[-1][2]["peak_rss_mib"]
        print(f"memory: peak RSS {quarter:,.0f} MiB for {results[0][1] / 2**20:,.0f} MiB of file, {whole:,.0f} MiB "
              f"for {results[-1][1] / 2**20:,.0f} MiB; anonymous {results[0][2]['anon_mib']:,.0f} MiB and "
              f"{results[-1][2]['anon_mib']:,.0f} MiB (the rest is SQLite's memory-mapped database)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ACCRUE_LOG_LEVEL", "WARNING")
    sys.exit(main())
