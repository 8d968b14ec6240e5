"""Benchmark: does the embedded store stay fast as the ledger grows? (issue 22, target 2)

For each ledger size (documents already in ``c_ledger``: entries and idempotency
markers, as appends write them), a fresh SQLite file is filled to that size,
then timed:

* ledger appends/s on the store alone (``Ledger.append``, group commit of 500
  requests over 1,000 customers, ``synchronous=FULL``), the spine's store-alone
  figure, but on a file that already holds the history;
* for one big customer holding a fifth of the appends (100k entries at 1 M):
  a history page filtered by entry type (``Ledger.entries``, 50 newest
  ``redeem`` entries, one in ten of the customer's entries) and a balance as of
  a moment in the middle of the history (``Ledger.head_as_of``), p50/p99.

The fill is not timed and does not go through Python: template entry and
marker rows (written by real appends) are copied in SQL with new customers,
sequence numbers, ids and times, so a 1 M-document file takes seconds. The
appending customers own the copied history (their newest entry is the head
the ledger plans on), so an append lands where it would on a real file.

Prints one line per size and the ratio of each size's appends/s to the
smallest size's; with ``ACCRUE_BENCH_SUMMARY`` set (``bench/run_all.py``) the
figures go to the summary table too.

The ledger is staged (``shared.store.layout.STAGED``): the history is loaded into
its main table, and ``--warmup`` untimed appends first bring its recent table to
the size it keeps in steady state, so the timed appends pay their merge steps.
Each line gives appends/s and CPU µs per append (the process's CPU time: what
another process's load on a shared machine disturbs least), the file's size and
the load average.

Usage: ``python bench/bench_store_growth.py [--sizes 10000,100000,1000000]
[--appends N] [--reads N] [--warmup N]`` (``--sizes ...,10000000`` adds a 10 M
file: its fill takes minutes and about 10 GB of disk).
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from machine import machine_line  # bench/machine.py
from summary import record  # bench/summary.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.clock import SystemClock, iso  # noqa: E402
from shared.ledger.entries import EntryDraft, EntryType, Head  # noqa: E402
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of  # noqa: E402
from shared.store.layout import CONTAINERS, LEDGER  # noqa: E402
from shared.store.sqlite import MERGE_ROWS, MERGE_THRESHOLD, SqliteDocumentStore, tables_of  # noqa: E402

TENANT = "bench"
CUSTOMERS = 1000
BATCH = 500
BIG = "big"  # the customer holding a fifth of the history
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def request(n: int, customer: str, entry_type: EntryType = EntryType.EARN) -> TransactionRequest:
    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(entry_type, 10, counts_order=True)], outcome={"points": 10})
    return TransactionRequest(TENANT, customer, f"k-{customer}-{n}", fingerprint_of(n), plan)


def fill(path: Path, documents: int) -> None:
    """``documents`` ledger documents (half entries, half markers): a fifth for the big
    customer, the rest spread over the 1,000 appending customers, interleaved in time
    as intake would write them."""
    store = SqliteDocumentStore(path, CONTAINERS, synchronous="FULL")
    ledger = Ledger(store, SystemClock())
    ledger.append([request(0, "template")])
    store.merge_recent()  # the history is loaded into the ledger's main table: merged, as it would be
    store.close()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    table = tables_of(LEDGER)[0]
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    templates = conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE pk = ?",
                             (f"{TENANT}:template",)).fetchall()
    entry = next(dict(zip(columns, r)) for r in templates if r[columns.index("x_docType")] == "entry")
    marker = next(dict(zip(columns, r)) for r in templates if r[columns.index("x_docType")] != "entry")
    conn.execute(f"DELETE FROM {table} WHERE pk = ?", (f"{TENANT}:template",))
    appends = documents // 2
    big = appends // 5
    per_customer = (appends - big) // CUSTOMERS
    base = BASE.timestamp()
    # One row per (customer, seq): the big customer is customer -1; rows go in round
    # by round (seq outer), as appends interleave customers on a real file.
    conn.execute("BEGIN")
    conn.execute("CREATE TEMP TABLE who (c INTEGER PRIMARY KEY, pk TEXT, cid TEXT, n INTEGER)")
    conn.executemany("INSERT INTO temp.who VALUES (?, ?, ?, ?)",
                     [(c, f"{TENANT}:{name}", name, n) for c, name, n in
                      [(-1, BIG, big)] + [(c, f"c{c}", per_customer) for c in range(CUSTOMERS)]])
    # Rounds past the small customers' history hold the big customer's rows alone: the join
    # seeks the customers still filling (n >= seq) instead of testing all 1,001 each round.
    conn.execute("CREATE INDEX temp.who_n ON who (n, c)")
    rounds = max(big, per_customer)
    # The change feed's numbers: increasing with (round, kind, customer), in insertion order
    # and below any append's, computed here rather than by a pass rewriting every row after.
    lsn = f"((s.seq * 2 + {{kind}}) * {CUSTOMERS + 2} + w.c + 2)"
    select_columns = {
        "pk": "w.pk", "etag": "'fill'", "ts": "CAST(? + s.seq AS INTEGER)", "lsn": lsn,
        "x_tenantId": f"'{TENANT}'", "x_createdAt": "strftime('%Y-%m-%dT%H:%M:%f000Z', ? + s.seq, 'unixepoch')",
    }
    for kind, template in (("entry", entry), ("marker", marker)):
        exprs, params = [], []
        for column in columns:
            if column == "id":
                exprs.append("printf('e-%012d', s.seq)" if kind == "entry" else "printf('idem-%s-%d', w.cid, s.seq)")
            elif column == "body":
                exprs.append(
                    "json_set(?, '$.pk', w.pk, '$.customerId', w.cid, '$.createdAt', "
                    "strftime('%Y-%m-%dT%H:%M:%f000Z', ? + s.seq, 'unixepoch')"
                    + (", '$.id', printf('e-%012d', s.seq), '$.seq', s.seq, '$.runningBalance', s.seq * 10,"
                       " '$.runningLifetimeEarned', s.seq * 10, '$.ordersCredited', s.seq,"
                       " '$.entryType', CASE WHEN s.seq % 10 = 0 THEN 'redeem' ELSE 'earn' END)"
                       if kind == "entry" else ", '$.id', printf('idem-%s-%d', w.cid, s.seq))"))
                params += [template["body"], base]
            elif column == "x_seq":
                exprs.append("s.seq" if kind == "entry" else "NULL")
            elif column in select_columns:
                exprs.append(select_columns[column].replace("{kind}", "0" if kind == "entry" else "1"))
                params += [base] if "?" in select_columns[column] else []
            else:
                # Other columns copy the template's, the entries' line among them (shared.store.lines):
                # the size of a real one, its values the template's; nothing here reads lines.
                exprs.append("?")
                params.append(template[column])
        # Rows in (seq, customer) order: the fill's own speed does not matter much, but it
        # should not take minutes; chunks of rounds keep each statement bounded.
        for low in range(1, rounds + 1, 1000):
            conn.execute(
                f"WITH RECURSIVE s(seq) AS (SELECT ? UNION ALL SELECT seq + 1 FROM s WHERE seq < ?) "
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(exprs)} "
                f"FROM s JOIN temp.who w INDEXED BY who_n ON w.n >= s.seq ORDER BY s.seq, w.c",
                [low, min(rounds, low + 999), *params])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    count = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    conn.close()
    assert abs(count - documents) <= 2 * CUSTOMERS + 2, (count, documents)


def measure(size: int, appends: int, reads: int, warmup: int, merging: dict[str, int]) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-growth-"))
    path = folder / "ledger.db"
    started = time.perf_counter()
    fill(path, size)
    filled = time.perf_counter() - started
    store = SqliteDocumentStore(path, CONTAINERS, synchronous="FULL", **merging)
    ledger = Ledger(store, SystemClock())
    # Untimed first: the ledger's recent table (shared.store.sqlite, staged containers) filled
    # to where it runs in steady state, so the timed appends pay their share of merge steps.
    requests = [request(n, f"c{n % CUSTOMERS}") for n in range(warmup + appends)]
    for offset in range(0, warmup, BATCH):
        assert all(o.error is None for o in ledger.append(requests[offset:offset + BATCH]))
    start, cpu = time.perf_counter(), time.process_time()
    for offset in range(warmup, warmup + appends, BATCH):
        outcomes = ledger.append(requests[offset:offset + BATCH])
        assert all(o.error is None for o in outcomes)
    rate = appends / (time.perf_counter() - start)
    cpu_us = (time.process_time() - cpu) / appends * 1e6
    load = os.getloadavg()[0]
    history, as_of = [], []
    big_entries = size // 10
    for n in range(reads):
        t0 = time.perf_counter()
        page = ledger.entries(TENANT, BIG, entry_types=["redeem"], limit=50)
        history.append((time.perf_counter() - t0) * 1000)
        assert big_entries < 500 or len(page) == 50
        moment = BASE + timedelta(seconds=big_entries * (n + 1) / (reads + 1))
        t0 = time.perf_counter()
        head = ledger.head_as_of(TENANT, BIG, moment)
        as_of.append((time.perf_counter() - t0) * 1000)
        assert big_entries < 500 or head.seq > 0
    store.close()
    size_bytes = sum(f.stat().st_size for f in folder.iterdir())
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()
    return {"appends": rate, "cpu_us": cpu_us, "load": load, "gb": size_bytes / 1e9, "fill": filled, "big": big_entries,
            "history_p50": percentile(history, 50), "history_p99": percentile(history, 99),
            "asof_p50": percentile(as_of, 50), "asof_p99": percentile(as_of, 99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="ledger documents before the timed appends, comma-separated")
    parser.add_argument("--appends", type=int, default=40_000, help="timed appends per size")
    parser.add_argument("--reads", type=int, default=200, help="timed reads of each kind per size")
    parser.add_argument("--warmup", type=int, default=15_000, help="untimed appends first, per size")
    parser.add_argument("--merge-rows", type=int, default=MERGE_ROWS, help="ledger rows moved per merge step")
    parser.add_argument("--merge-threshold", type=int, default=MERGE_THRESHOLD,
                        help="recent ledger rows past which a writer runs a merge step")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {machine_line()}")
    print(f"ledger merge: {args.merge_rows:,} rows per step past {args.merge_threshold:,} recent rows;"
          f" {args.warmup:,} untimed appends, then {args.appends:,} timed")
    print("ratio: appends/s against the first size; CPU ratio: CPU µs per append of the first size"
          " over this size's (what a shared machine's load disturbs least)")
    print(f"{'documents':>10} {'appends/s':>10} {'ratio':>6} {'CPU µs':>7} {'CPU ratio':>9} {'big cust.':>9} "
          f"{'history p50/p99 ms':>19} {'as-of p50/p99 ms':>17} {'fill s':>7} {'GB':>5} {'load':>5}", flush=True)
    first = first_cpu = None
    for size in sizes:
        m = measure(size, args.appends, args.reads, args.warmup,
                    {"merge_rows": args.merge_rows, "merge_threshold": args.merge_threshold})
        first = first or m["appends"]
        first_cpu = first_cpu or m["cpu_us"]
        print(f"{size:>10,} {m['appends']:>10,.0f} {m['appends'] / first:>6.2f} {m['cpu_us']:>7.0f} "
              f"{first_cpu / m['cpu_us']:>9.2f} {m['big']:>9,} "
              f"{m['history_p50']:>9.2f}/{m['history_p99']:<9.2f} {m['asof_p50']:>8.2f}/{m['asof_p99']:<8.2f} "
              f"{m['fill']:>7.1f} {m['gb']:>5.1f} {m['load']:>5.2f}", flush=True)
        record(f"store appends at {size:,} docs", m["appends"], "/s")
        if size != sizes[0]:
            record(f"appends at {size:,} / at {sizes[0]:,}", m["appends"] / first, "×", target=0.8)
            record(f"CPU per append at {sizes[0]:,} / at {size:,}", first_cpu / m["cpu_us"], "×", target=0.8)
        if m["big"] >= 50_000:
            record(f"history page p99, {m['big']:,}-entry customer", m["history_p99"], "ms",
                   target=10.0, higher_is_better=False)
            record(f"as-of read p99, {m['big']:,}-entry customer", m["asof_p99"], "ms",
                   target=10.0, higher_is_better=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
