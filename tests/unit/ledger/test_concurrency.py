"""Concurrent writers on one customer, with real threads and real processes:
no entry lost, no sequence number won twice, every running balance right."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from shared.clock import SystemClock
from shared.ledger.entries import EntryDraft, EntryType, Head
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.store.layout import CONTAINERS
from shared.store.sqlite import SqliteDocumentStore
from tests.conftest import run_in_threads

PER_WRITER = 40


def _earn(key: str, points: int) -> TransactionRequest:
    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN, points)], outcome={"points": points})

    return TransactionRequest("t", "hot", key, fingerprint_of([key, points]), plan)


def _write(path: str, writer: int) -> None:
    store = SqliteDocumentStore(path, CONTAINERS, synchronous="NORMAL")
    ledger = Ledger(store, SystemClock())
    for number in range(PER_WRITER):
        outcome = ledger.append([_earn(f"w{writer}-{number}", writer + 1)])[0]
        assert outcome.error is None, outcome.error
    store.close()


def _check(path: Path, writers: int) -> None:
    store = SqliteDocumentStore(path, CONTAINERS)
    entries = Ledger(store, SystemClock()).entries("t", "hot", newest_first=False, limit=10_000)
    assert [e["seq"] for e in entries] == list(range(1, writers * PER_WRITER + 1))
    running = 0
    for entry in entries:
        running += entry["signedAmount"]
        assert entry["runningBalance"] == running
    assert running == sum((w + 1) * PER_WRITER for w in range(writers))
    assert len({e["idempotencyKey"] for e in entries}) == len(entries)
    store.close()


def test_threads_racing_on_one_customer(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    SqliteDocumentStore(path, CONTAINERS).close()
    run_in_threads(_write, [(path, w) for w in range(4)])
    _check(tmp_path / "s.db", 4)


def test_processes_racing_on_one_customer(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    SqliteDocumentStore(path, CONTAINERS).close()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write, args=(path, w)) for w in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    _check(tmp_path / "s.db", 3)
