"""Benchmark of the maturation job: pending earns matured per second.

``--earns`` pending window earns (default 1,000,000) over ``--customers``
customers (default 100,000) are generated straight into a SQLite store (raw
inserts, as bench_expiry.py does), every one due in the same UTC hour and every
customer on that hour's maturity calendar (the worst case: a campaign day's
orders all mature together). Then the job's body for one tenant
(``Maturation.start`` and ``slice`` in a loop, what a work item runs: a slice is
``PAGE`` customers, one group-committed append of one EARN per due earn, SQLite
``synchronous=NORMAL``) matures what is due. Afterwards the ledger is checked
(one settling EARN per matured earn, nothing pending left among the customers
visited) and a second pass over the same customers must write nothing.

Usage: ``python bench/bench_maturation.py [--earns N] [--customers N] [--max-seconds S]``.
``--max-seconds`` bounds the run (it stops between slices); the figures are then
for the part done, and say so.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench_expiry import row_writer  # bench/ (the script's folder is on sys.path)
from machine import machine_line

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TENANT = "bench"
EARNED = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
DUE = datetime(2026, 5, 15, 9, 30, tzinfo=timezone.utc)


def generate(db_path: Path, earns: int, customers: int) -> None:
    from shared.domain.tenants import TenantSettings
    from shared.pending.maturation import CALENDAR_DOC, hour_pk
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    SqliteDocumentStore(db_path, CONTAINERS, synchronous="NORMAL").close()  # schema and indexes
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    write, flush, buffered = row_writer(conn)
    write("tenants", TenantSettings(tenantId=TENANT, name="bench", timeZone="UTC", pendingDays=14).to_doc())
    per = earns // customers
    lsn = 0
    created = EARNED.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for c in range(customers):
        cid = f"c{c:07d}"
        pk = f"{TENANT}:{cid}"
        for seq in range(1, per + 1):
            lsn += 1
            write("ledger", {
                "id": f"e-{seq:012d}", "pk": pk, "docType": "entry", "tenantId": TENANT, "customerId": cid,
                "seq": seq, "transactionId": "tx-" + uuid.uuid4().hex, "entryType": "EARN", "signedAmount": 10,
                "runningBalance": 0, "runningPending": 10 * seq, "runningReserved": 0, "runningLifetimeEarned": 0,
                "ordersCredited": seq, "referenceOrderId": f"o{seq}", "referenceEntryId": None,
                "settlesEntryId": None, "ruleSetId": "rs", "ruleSetVersion": 1, "arm": None, "status": "PENDING",
                "createdAt": created, "idempotencyKey": f"k{lsn}", "attributes": {"maturesAt": DUE.isoformat()}},
                lsn)
        write("expirycalendar", {"id": cid, "pk": hour_pk(TENANT, DUE), "docType": CALENDAR_DOC, "tenant": TENANT,
                                 "customerId": cid, "hour": DUE.replace(minute=0).isoformat()})
        if buffered() >= 50_000:
            flush()
    flush()
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def run(db_path: Path, max_seconds: float) -> dict:
    from shared.app.tenants import TenantDirectory
    from shared.clock import ManualClock
    from shared.ledger.service import Ledger
    from shared.pending.maturation import Maturation, MaturationReport
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    store = SqliteDocumentStore(db_path, CONTAINERS, synchronous="NORMAL")
    clock = ManualClock(DUE + timedelta(minutes=50))
    job = Maturation(store, Ledger(store, clock), TenantDirectory(store), clock)
    cursor = job.start(TENANT)
    started = time.perf_counter()
    done, slices = False, 0
    while time.perf_counter() - started < max_seconds:
        cursor, done = job.slice(TENANT, cursor)
        slices += 1
        if done:
            break
    elapsed = time.perf_counter() - started
    visited = job.calendar.customers(TENANT, DUE, None, min(cursor["customers"], 10_000) or 1)
    rerun_started = time.perf_counter()
    again: MaturationReport = job.mature_customers(TENANT, visited[:1000])
    rerun = {"customers": len(visited[:1000]), "matured": again.matured,
             "seconds": time.perf_counter() - rerun_started}
    store.close()
    return {**cursor, "seconds": elapsed, "slices": slices, "complete": done, "rerun": rerun,
            "per_second": cursor["matured"] / elapsed if elapsed else 0.0,
            "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def check(db_path: Path) -> dict:
    from shared.store.sqlite import table_of

    conn = sqlite3.connect(db_path)
    ledger = table_of("ledger")
    matured = conn.execute(f"SELECT COUNT(*), COUNT(DISTINCT json_extract(body,'$.pk') || "
                           f"json_extract(body,'$.settlesEntryId')) FROM {ledger} "
                           "WHERE json_extract(body,'$.attributes.maturedAt') IS NOT NULL").fetchone()
    conn.close()
    return {"matured_entries": matured[0], "distinct_settled": matured[1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--earns", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    assert args.earns >= args.customers, "at least one earn per customer"
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "accrue.db"
        started = time.perf_counter()
        generate(db, args.earns, args.customers)
        print(f"generated {args.earns:,} pending earns over {args.customers:,} customers, all due in one hour, "
              f"in {time.perf_counter() - started:.1f} s")
        result = run(db, args.max_seconds)
        print(f"maturation: {result['matured']:,} earns ({result['points']:,} points) of {result['customers']:,} "
              f"customers in {result['seconds']:.1f} s, {result['slices']} slice(s) = "
              f"{result['per_second']:,.0f} earns/s"
              + ("" if result["complete"] else f" (stopped after {args.max_seconds:.0f} s: part of the work)")
              + f"; peak RSS {result['rss_peak_mib']:.0f} MiB")
        rerun = result["rerun"]
        print(f"second pass over {rerun['customers']:,} visited customers: {rerun['matured']} matured "
              f"in {rerun['seconds']:.2f} s")
        checked = check(db)
        print(f"check: {checked}")
        assert checked["matured_entries"] == checked["distinct_settled"] == result["matured"]
        assert rerun["matured"] == 0 and result["failed"] == 0


if __name__ == "__main__":
    main()
