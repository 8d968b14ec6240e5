"""Appends against the ``eventsourcing`` library's SQLite recorder, made fair (issue 22, target 5).

One script, both sides with the same:

* body size: every stored document's JSON body (``--body`` bytes, 512 by default)
  and every eventsourcing ``StoredEvent.state`` are exactly that many bytes;
* durability: WAL on both, ``PRAGMA synchronous`` set to the same value on both
  (``--synchronous FULL``, the store's default, or ``NORMAL``); the recorder's one
  pooled connection is read back after the run to show what it used;
* commit cadence: ``--batch`` events per transaction on both (one
  ``insert_events`` call / one ``store.batches`` call), the same events over
  ``--partitions`` aggregates / partitions;
* fresh files in one temporary folder, rounds alternated (ours, theirs, ours, ...),
  the median of ``--rounds`` reported, with the 1-minute load average.

What is compared:

1. ``store, plain container``: ``SqliteDocumentStore.batches`` into an append-only
   container with no indexed fields, the nearest to the recorder's table (a
   primary key and the body), but still the store's contract (etag, ``_ts``,
   partition batches each atomic, a refused create refused alone);
2. ``store, ledger container``: the same into the real ledger container (staged
   recent/main tables behind the view, the change feed's ``lsn``, the indexes on
   seq, createdAt and tenantId), with ledger-entry-shaped documents;
3. ``Ledger.append``: what the platform does per order (entry + idempotency marker,
   running totals, hash chain). Its entry is the ledger's own (about 675 bytes),
   not padded; it is compared with the recorder writing the same bytes per append
   (an event of the entry's size and one of the marker's, in one transaction).

Run: ``python bench/bench_peers.py [--events 20000] [--body 512] [--synchronous FULL]``.
Figures are reported (``bench/summary.py``), never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine_line
from bench.summary import record

PARTITIONS = 1000


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _padded(base: dict, body: int) -> dict:
    """``base`` with a ``pad`` string making its compact JSON exactly ``body`` bytes."""
    doc = dict(base, pad="")
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    if size > body:
        raise SystemExit(f"--body {body} is smaller than the document without padding ({size} bytes)")
    doc["pad"] = "x" * (body - size)
    assert len(json.dumps(doc, separators=(",", ":")).encode()) == body
    return doc


TUNED = True  # --peer-tuning: the recorder gets the store's page, cache and mmap sizes


def theirs(folder: Path, events: int, body: int, batch: int, synchronous: str,
           bodies: tuple[int, ...] | None = None) -> tuple[float, str]:
    """Appends/s into the recorder; ``bodies``: the sizes of the events one append
    writes (one event of ``body`` bytes if not given), all of one append's events
    in the same transaction, ``batch`` appends per transaction."""
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteDatastore

    if TUNED:
        # The store's page size, set on the new file before the recorder puts it in WAL mode
        # (a WAL file's page size is fixed once it has content).
        import sqlite3

        from shared.store.sqlite import PAGE_BYTES

        with sqlite3.connect(folder / "es.db") as pre:
            pre.execute(f"PRAGMA page_size={PAGE_BYTES}")
            pre.execute("PRAGMA journal_mode=WAL")
        pre.close()
    # One pooled connection, so the PRAGMA set here is the one every insert uses.
    datastore = SQLiteDatastore(str(folder / "es.db"), pool_size=1, max_overflow=0)
    recorder = SQLiteAggregateRecorder(datastore)
    recorder.create_table()
    with datastore.get_connection(commit=True) as conn:
        raw = conn._sqlite_conn
        raw.execute(f"PRAGMA synchronous={synchronous}")  # outside a transaction, as SQLite needs
        if TUNED:
            from shared.store.sqlite import CACHE_KIB, MMAP_BYTES

            # Not durability: the cache and mmap sizes the store gives its own connections.
            raw.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            raw.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    ids = [uuid.uuid4() for _ in range(PARTITIONS)]
    versions = [0] * PARTITIONS
    states = [b"x" * size for size in (bodies or (body,))]
    stored = []
    for n in range(events):
        for state in states:
            versions[n % PARTITIONS] += 1
            stored.append(StoredEvent(ids[n % PARTITIONS], versions[n % PARTITIONS], "bench:Earned", state))
    per = len(states) * batch
    start = time.perf_counter()
    for offset in range(0, len(stored), per):
        recorder.insert_events(stored[offset:offset + per])
    rate = events / (time.perf_counter() - start)
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA synchronous")
        used = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(cursor.fetchone()[0], "?")
        cursor.execute("PRAGMA journal_mode")
        used += f", {cursor.fetchone()[0]}"
        cursor.execute("PRAGMA page_size")
        page = cursor.fetchone()[0]
        cursor.execute("PRAGMA cache_size")
        used += f", page {page} B, cache {-cursor.fetchone()[0] // 1024} MiB"
    datastore.close()
    return rate, used


def _store_rate(folder: Path, name: str, events: int, batch: int, synchronous: str, container: str,
                specs: tuple, doc_of: Callable[[int], dict]) -> tuple[float, str]:
    from shared.store.port import Create, PartitionBatch
    from shared.store.sqlite import SqliteDocumentStore

    store = SqliteDocumentStore(folder / f"{name}.db", specs, synchronous=synchronous)
    docs = [doc_of(n) for n in range(events)]
    calls = []
    for offset in range(0, events, batch):
        by_pk: dict[str, list] = {}
        for doc in docs[offset:offset + batch]:
            by_pk.setdefault(doc["pk"], []).append(Create(doc))
        calls.append(list(by_pk.items()))
    start = time.perf_counter()
    for call in calls:
        work = [PartitionBatch(pk, ops) for pk, ops in call]
        store.batches(container, work)
        assert all(w.error is None for w in work)
    rate = events / (time.perf_counter() - start)
    used = store._conn().execute("PRAGMA synchronous").fetchone()[0]
    mode = store._conn().execute("PRAGMA journal_mode").fetchone()[0]
    store.close()
    return rate, f"{ {1: 'NORMAL', 2: 'FULL', 3: 'EXTRA'}.get(used, '?')}, {mode}"


def store_plain(folder: Path, events: int, body: int, batch: int, synchronous: str) -> tuple[float, str]:
    from shared.store.port import ContainerSpec

    spec = ContainerSpec("events", append_only=True)

    def doc_of(n: int) -> dict:
        return _padded({"id": f"e-{n // PARTITIONS + 1:012d}", "pk": f"bench:c{n % PARTITIONS}"}, body)

    return _store_rate(folder, "plain", events, batch, synchronous, "events", (spec,), doc_of)


def store_ledger(folder: Path, events: int, body: int, batch: int, synchronous: str) -> tuple[float, str]:
    from shared.store.layout import CONTAINERS, LEDGER

    def doc_of(n: int) -> dict:
        seq = n // PARTITIONS + 1
        return _padded({"id": f"e-{seq:012d}", "pk": f"bench:c{n % PARTITIONS}", "docType": "entry",
                        "tenantId": "bench", "customerId": f"c{n % PARTITIONS}", "seq": seq,
                        "entryType": "EARN", "signedAmount": 10, "referenceOrderId": None,
                        "createdAt": f"2026-12-06T02:00:{n % 60:02d}.{n % 1_000_000:06d}Z"}, body)

    return _store_rate(folder, "ledger", events, batch, synchronous, LEDGER, CONTAINERS, doc_of)


def ledger_append(folder: Path, events: int, body: int, batch: int, synchronous: str) -> tuple[float, str]:
    from shared.clock import SystemClock
    from shared.ledger.entries import EntryDraft, EntryType, Head
    from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    store = SqliteDocumentStore(folder / "appends.db", CONTAINERS, synchronous=synchronous)
    ledger = Ledger(store, SystemClock())

    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN, 10, counts_order=True)], outcome={"points": 10})

    requests = [TransactionRequest("bench", f"c{n % PARTITIONS}", f"k{n}", fingerprint_of(n), plan)
                for n in range(events)]
    start = time.perf_counter()
    for offset in range(0, events, batch):
        ledger.append(requests[offset:offset + batch])
    rate = events / (time.perf_counter() - start)
    store.close()
    return rate, ", ".join(f"{kind} {size} B" for kind, size in ledger_sizes(folder).items())


def ledger_sizes(folder: Path) -> dict[str, int]:
    """The body sizes of what one ``Ledger.append`` writes (entry, idempotency marker)."""
    from shared.clock import SystemClock
    from shared.ledger.entries import EntryDraft, EntryType, Head
    from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
    from shared.store.layout import CONTAINERS
    from shared.store.sqlite import SqliteDocumentStore

    store = SqliteDocumentStore(folder / "sizes.db", CONTAINERS)

    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN, 10, counts_order=True)], outcome={"points": 10})

    Ledger(store, SystemClock()).append(
        [TransactionRequest("bench", "c1", "k1", fingerprint_of(1), plan)])
    sizes = dict(store._conn().execute(
        "SELECT json_extract(body, '$.docType'), length(body) FROM c_ledger ORDER BY id").fetchall())
    store.close()
    return sizes


def theirs_as_ledger(folder: Path, events: int, body: int, batch: int, synchronous: str) -> tuple[float, str]:
    """The recorder writing what ``Ledger.append`` writes per append: an event of the
    entry's size and one of the marker's, in the same transaction."""
    sizes = ledger_sizes(folder)
    rate, used = theirs(folder, events, body, batch, synchronous, bodies=tuple(sizes.values()))
    return rate, f"{used}; per append " + " + ".join(f"{size} B" for size in sizes.values())


SIDES: dict[str, Callable[..., tuple[float, str]]] = {
    "eventsourcing SQLiteAggregateRecorder": theirs,
    "store, plain container": store_plain,
    "store, ledger container": store_ledger,
    "Ledger.append (entry + marker + totals)": ledger_append,
    "eventsourcing, Ledger.append's bytes (2 events per append)": theirs_as_ledger,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--body", type=int, default=512)
    parser.add_argument("--batch", type=int, default=500, help="events per transaction, both sides")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-tuning", choices=("same", "default"), default="same",
                        help="same: the recorder gets the store's page, cache and mmap sizes; default: its own")
    parser.add_argument("--only", choices=("store", "all"), default="all",
                        help="store: skip Ledger.append")
    args = parser.parse_args()
    global TUNED
    TUNED = args.peer_tuning == "same"
    print(f"machine: {machine_line()}", flush=True)
    print(f"{args.events:,} events over {PARTITIONS:,} aggregates/partitions, body {args.body} B, "
          f"{args.batch} per transaction, WAL, synchronous={args.synchronous}, {args.rounds} rounds "
          f"alternated, median; recorder's page/cache/mmap sizes: {args.peer_tuning}; load at start {_load()}", flush=True)
    sides = {k: v for k, v in SIDES.items() if args.only == "all" or "Ledger" not in k}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    notes: dict[str, str] = {}
    loads = []
    for round_no in range(args.rounds):
        for name, run in sides.items():
            folder = Path(tempfile.mkdtemp(prefix="bench-peers-"))
            try:
                rate, note = run(folder, args.events, args.body, args.batch, args.synchronous)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            rates[name].append(rate)
            notes[name] = note
            loads.append(os.getloadavg()[0])
            print(f"  round {round_no + 1}: {name}: {rate:,.0f}/s ({note}), load {loads[-1]:.1f}", flush=True)
    peer = statistics.median(rates["eventsourcing SQLiteAggregateRecorder"])
    print(f"\nmedian of {args.rounds} (load average during the runs {min(loads):.1f}-{max(loads):.1f}):")
    print("| side | appends/s | ratio to eventsourcing | rounds | notes |\n|---|---:|---:|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {median / peer:.2f}× | "
              f"{', '.join(f'{v:,.0f}' for v in values)} | {notes[name]} |")
    sync = args.synchronous
    for name, label in (("store, plain container", "plain"), ("store, ledger container", "ledger container")):
        record(f"store appends ({label}, {args.body} B, {sync}) / eventsourcing", statistics.median(rates[name]) / peer,
               "×", target=1.0)
    if "Ledger.append (entry + marker + totals)" in rates:
        ours = statistics.median(rates["Ledger.append (entry + marker + totals)"])
        same_bytes = statistics.median(rates["eventsourcing, Ledger.append's bytes (2 events per append)"])
        print(f"\nLedger.append / eventsourcing writing the same bytes per append: {ours / same_bytes:.2f}×")
        record(f"Ledger.append ({sync}) / eventsourcing, same bytes per append", ours / same_bytes, "×")


if __name__ == "__main__":
    main()
