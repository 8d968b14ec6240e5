"""Benchmark of the expiry job: lots expired per second.

``--lots`` EARN lots (default 1,000,000) over ``--customers`` customers are
generated straight into a SQLite store (raw inserts, as bench_dataout.py does
for entries), each customer with one REDEEM after its earns (so the first lot
is spent and the second half spent: FIFO is exercised), and every customer on
one expiry-calendar day (the worst case: an end-of-quarter policy puts a whole
tenant on one day). Then ``ExpiryService.run`` (the timer job's body, as
shipped: SQLite ``synchronous=NORMAL``, the ledger's group commit) expires
everything that is due; the ledger is checked afterwards (every balance 0, one
EXPIRE per due lot) and a second run must write nothing.

Usage: ``python bench/bench_expiry.py [--lots N] [--customers N] [--max-seconds S]``.
``--max-seconds`` bounds the job (it runs in bounded pages and stops between
pages); the figures are then for the part done, and say so.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from machine import machine_line  # bench/machine.py (the script's folder is on sys.path)
from summary import record  # bench/summary.py: make bench's summary table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

TENANT = "bench"
DUE_DAY = "2026-05-01"


def row_writer(conn: sqlite3.Connection):
    """``write(container, doc, lsn)`` buffers a row for the container's table (``c_<name>``) with its
    field columns (``ContainerSpec.extracted``: indexed and filtered fields) filled as the store fills
    them; ``flush()`` inserts what is buffered."""
    from shared.store.layout import BY_NAME
    from shared.store.sqlite import column_of, field_value, tables_of

    pending: dict[str, list[tuple]] = {}

    def write(container: str, doc: dict, lsn: int | None = None) -> None:
        fields = BY_NAME[container].extracted
        pending.setdefault(container, []).append(
            (doc["pk"], doc["id"], "e", 0, lsn, orjson.dumps(doc).decode(), *(field_value(doc, f) for f in fields)))

    def flush() -> None:
        for container, rows in pending.items():
            fields = BY_NAME[container].extracted
            columns = ("pk", "id", "etag", "ts", "lsn", "body", *(column_of(f) for f in fields))
            # The first table: a staged container's (the ledger's) main table, where loaded history belongs.
            conn.executemany(f"INSERT INTO {tables_of(container)[0]} ({', '.join(columns)}) "
                             f"VALUES ({', '.join('?' for _ in columns)})", rows)
            rows.clear()

    return write, flush, lambda: sum(len(rows) for rows in pending.values())


def generate(db_path: Path, lots: int, customers: int) -> int:
    """Returns how many lots are due (what the job must expire)."""
    from shared.domain.tenants import TenantSettings
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    SqliteDocumentStore(db_path, CONTAINERS, synchronous="NORMAL").close()  # schema and indexes
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    write, flush, buffered = row_writer(conn)
    tenant = TenantSettings(tenantId=TENANT, name="bench", timeZone="UTC").to_doc()
    write("tenants", tenant)  # its pk and id: the tenant id
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    per = lots // customers
    lsn, due = 0, 0

    for c in range(customers):
        cid = f"c{c:07d}"
        pk = f"{TENANT}:{cid}"
        balance = 0

        def entry(seq: int, kind: str, amount: int, **extra) -> None:
            nonlocal lsn, balance
            lsn += 1
            balance += amount
            at = (base + timedelta(seconds=lsn % 86_400)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            doc = {"id": f"e-{seq:012d}", "pk": pk, "docType": "entry", "tenantId": TENANT, "customerId": cid,
                   "seq": seq, "transactionId": "tx-" + uuid.uuid4().hex, "entryType": kind, "signedAmount": amount,
                   "runningBalance": balance, "runningPending": 0, "runningReserved": 0,
                   "runningLifetimeEarned": balance, "ordersCredited": seq, "referenceEntryId": None,
                   "settlesEntryId": None, "ruleSetId": "rs", "ruleSetVersion": 1, "arm": None,
                   "status": "COMMITTED", "createdAt": at, "idempotencyKey": f"k{lsn}", **extra}
            write("ledger", doc, lsn)

        for seq in range(1, per + 1):
            expires = (base + timedelta(days=seq * 10)).isoformat()  # Jan..Apr 2026: all due by DUE_DAY
            entry(seq, "EARN", 10, referenceOrderId=f"o{seq}", attributes={"expiresAt": expires})
        entry(per + 1, "REDEEM", -15, referenceOrderId=None)
        due += per - 1  # the first lot is spent whole, the second half
        calendar = {"id": cid, "pk": f"{TENANT}:{DUE_DAY}", "docType": "expiryDue", "tenantId": TENANT,
                    "customerId": cid, "day": DUE_DAY}
        write("expirycalendar", calendar)
        if buffered() >= 50_000:
            flush()
    flush()
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return due


def run_job(db_path: Path, max_seconds: float) -> dict:
    from shared.app.tenants import TenantDirectory
    from shared.clock import ManualClock
    from shared.expiry import service as expiry
    from shared.ledger.service import Ledger
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    store = SqliteDocumentStore(db_path, CONTAINERS, synchronous="NORMAL")
    clock = ManualClock(datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc))
    service = expiry.ExpiryService(store, Ledger(store, clock), TenantDirectory(store), clock)
    started, cpu_started = time.perf_counter(), time.process_time()
    lots = points = customers = 0
    complete = False
    while time.perf_counter() - started < max_seconds:
        report = service.run(max_customers=expiry.PAGE)  # one page per call, so the bench can stop between pages
        lots, points, customers = lots + report.lots_expired, points + report.points_expired, \
            customers + report.customers
        assert not report.failed, report.failed
        if report.complete:
            complete = True
            break
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started  # on shared cores, wall time counts other work too
    again = None
    if complete:
        store.delete("system", expiry.STATE_PK, expiry._state_id(TENANT))  # forget "done today"
        rerun = time.perf_counter()
        second = service.run()
        again = {"lots": second.lots_expired, "customers": second.customers, "seconds": time.perf_counter() - rerun}
    store.close()
    return {"lots": lots, "points": points, "customers": customers, "seconds": elapsed, "complete": complete,
            "cpu_seconds": cpu, "per_cpu_second": lots / cpu if cpu else 0.0,
            "per_second": lots / elapsed if elapsed else 0.0, "rerun": again,
            "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def check(db_path: Path, customers: int, due: int) -> dict:
    from shared.store.sqlite import column_of, table_of

    # seq and docType are ledger fields kept as columns (shared.store.layout): read from them.
    ledger, seq, doc_type = table_of("ledger"), column_of("seq"), column_of("docType")
    conn = sqlite3.connect(db_path)
    expires = conn.execute(f"SELECT COUNT(*) FROM {ledger} WHERE "
                           "json_extract(body,'$.entryType')='EXPIRE'").fetchone()[0]
    nonzero = conn.execute(
        f"SELECT COUNT(*) FROM (SELECT pk, MAX({seq}) AS s FROM {ledger} WHERE {doc_type}='entry' GROUP BY pk) AS h "
        f"JOIN {ledger} d ON d.pk=h.pk AND d.{seq}=h.s WHERE json_extract(d.body,'$.runningBalance') != 0"
    ).fetchone()[0]
    conn.close()
    return {"expire_entries": expires, "due_lots": due, "customers_with_points_left": nonzero}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--max-seconds", type=float, default=150.0)
    args = parser.parse_args()
    assert args.lots >= 2 * args.customers, "at least two lots per customer"
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "accrue.db"
        started = time.perf_counter()
        due = generate(db, args.lots, args.customers)
        print(f"generated {args.lots:,} lots over {args.customers:,} customers ({due:,} due) "
              f"in {time.perf_counter() - started:.1f} s")
        result = run_job(db, args.max_seconds)
        print(f"expiry job: {result['lots']:,} lots ({result['points']:,} points) of {result['customers']:,} "
              f"customers in {result['seconds']:.1f} s = {result['per_second']:,.0f} lots/s"
              + ("" if result["complete"] else f" (stopped after {args.max_seconds:.0f} s: part of the work)")
              + f"; CPU {result['cpu_seconds']:.1f} s = {result['per_cpu_second']:,.0f} lots per CPU-second"
              + f"; peak RSS {result['rss_peak_mib']:.0f} MiB; load average {os.getloadavg()[0]:.1f}")
        record(f"expiry job over {args.lots:,} lots", result["per_second"], "lots/s", target=20000.0)
        if result["rerun"]:
            rerun = result["rerun"]
            print(f"second run: {rerun['lots']} lots written, {rerun['customers']:,} customers replayed "
                  f"in {rerun['seconds']:.1f} s")
            checked = check(db, args.customers, due)
            print(f"check: {checked}")
            assert checked["expire_entries"] == due and checked["customers_with_points_left"] == 0
            assert rerun["lots"] == 0


if __name__ == "__main__":
    main()
