"""Balance as of an instant in O(log n): live entries are dated no earlier than their
partition's newest entry, each carries ``lastImportedSeq``, and a partition without
imported entries answers ``head_as_of`` by one seek of the (pk, createdAt) index."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from shared.clock import ManualClock, iso
from shared.ledger.entries import EntryDraft, EntryType, Head
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.store.layout import LEDGER, customer_pk

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _request(customer: str, key: str, points: list[int], occurred_at: datetime | None = None) -> TransactionRequest:
    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN if p > 0 else EntryType.ADJUST, p) for p in points],
                    outcome={})
    return TransactionRequest("t", customer, key, fingerprint_of({"k": key}), plan, occurred_at=occurred_at)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def ledger(sqlite_store, clock) -> Ledger:
    return Ledger(sqlite_store, clock)


def _walk(ledger: Ledger, customer: str, moment: datetime) -> Head:
    """The answer by definition: the newest entry by seq dated at or before ``moment``."""
    dated = [e for e in ledger.entries("t", customer, limit=10_000) if e["createdAt"] <= iso(moment)]
    return Head.from_entry(dated[0]) if dated else Head()


def test_a_clock_stepped_back_does_not_date_an_entry_before_the_one_before_it(ledger: Ledger, clock) -> None:
    ledger.append([_request("c1", "a", [10])])
    clock.advance(timedelta(seconds=-30))
    ledger.append([_request("c1", "b", [5])])
    first, second = ledger.entries("t", "c1", newest_first=False)
    assert second["createdAt"] == first["createdAt"] == iso(START)
    assert [first["lastImportedSeq"], second["lastImportedSeq"]] == [0, 0]


def test_the_seek_gives_the_walks_answer_at_every_instant(ledger: Ledger, clock) -> None:
    rng = random.Random(7)
    for n in range(60):
        clock.advance(timedelta(seconds=rng.choice([-5, 0, 1, 1, 3])))  # ties, and a clock stepped back
        ledger.append([_request("c1", f"k{n}", [rng.randint(1, 9) for _ in range(rng.randint(1, 3))])])
    pk = customer_pk("t", "c1")
    moments = [START + timedelta(seconds=s, microseconds=m) for s in range(-2, 120, 3) for m in (0, 1)]
    for moment in moments:
        seeked = ledger._as_of_by_seek(pk, iso(moment))
        assert seeked is not None
        assert seeked == _walk(ledger, "c1", moment) == ledger.head_as_of("t", "c1", moment), moment


def test_a_partition_with_an_imported_entry_falls_back_to_the_walk(ledger: Ledger, clock) -> None:
    for n in range(5):
        clock.advance(timedelta(hours=1))
        ledger.append([_request("c1", f"live{n}", [10])])
    # Imported afterwards but dated between the live entries: newest by seq, not by createdAt.
    ledger.append([_request("c1", "imp", [100], occurred_at=START + timedelta(hours=2, minutes=30))])
    pk = customer_pk("t", "c1")
    assert ledger._read_head(pk).imported_seq == 6
    assert ledger._as_of_by_seek(pk, iso(START + timedelta(hours=3))) is None
    clock.advance(timedelta(hours=1))
    ledger.append([_request("c1", "after", [1])])
    assert ledger._read_head(pk).imported_seq == 6  # carried forward
    moment = START + timedelta(hours=3, minutes=30)
    assert ledger.head_as_of("t", "c1", moment).balance == 130  # three live earns and the import


def test_a_partition_begun_before_entries_carried_the_field_falls_back(ledger: Ledger, sqlite_store, clock) -> None:
    ledger.append([_request("c1", "a", [10])])
    table = sqlite_store.merged_table(LEDGER)
    conn = sqlite_store._conn()
    conn.execute(f"UPDATE {table} SET body = json_remove(body, '$.lastImportedSeq')")
    ledger._forget_head(customer_pk("t", "c1"))
    clock.advance(timedelta(seconds=1))
    ledger.append([_request("c1", "b", [5])])
    pk = customer_pk("t", "c1")
    head = ledger._read_head(pk)
    assert head.seq == 2 and head.imported_seq is None
    assert ledger._as_of_by_seek(pk, iso(START)) is None
    assert ledger.head_as_of("t", "c1", START).balance == 10


def test_the_seek_reads_the_created_at_index_not_the_partition(ledger: Ledger, sqlite_store, clock) -> None:
    for n in range(20):
        clock.advance(timedelta(seconds=1))
        ledger.append([_request("c1", f"k{n}", [1])])
    statements: list[str] = []
    conn = sqlite_store._conn()
    conn.set_trace_callback(statements.append)
    try:
        assert ledger.head_as_of("t", "c1", START + timedelta(seconds=5)).seq == 5
    finally:
        conn.set_trace_callback(None)
    reads = [sql for sql in statements if sql.startswith("SELECT")]
    assert len(reads) == 3  # the head, the seek, the entries of that instant
    for sql in reads:
        plan = " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (sql, plan)
    assert "x_createdAt<" in " ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + reads[1]))
