"""The ledger service: atomic appends, running totals, idempotency, immutability."""

from __future__ import annotations

import pytest

from shared.errors import Conflict, ImmutableDocument, InsufficientPoints
from shared.ledger.entries import EntryDraft, EntryType, Head
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of, marker_id
from shared.store.layout import LEDGER, customer_pk
from shared.store.port import Create, Delete, Upsert
from tests.conftest import run_in_threads


def earn(customer: str, key: str, points: int, payload: object = None) -> TransactionRequest:
    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN, points, counts_order=True)],
                    outcome={"status": "credited", "points": points})

    return TransactionRequest("t", customer, key, fingerprint_of(payload or {"key": key, "points": points}), plan)


def spend(customer: str, key: str, points: int) -> TransactionRequest:
    def plan(head: Head) -> Plan:
        if head.balance < points:
            raise InsufficientPoints(f"only {head.balance}")
        return Plan(entries=[EntryDraft(EntryType.ADJUST, -points)], outcome={"status": "adjusted"})

    return TransactionRequest("t", customer, key, fingerprint_of({"spend": key, "points": points}), plan)


@pytest.fixture
def ledger(sqlite_store, clock) -> Ledger:
    return Ledger(sqlite_store, clock)


def test_entries_carry_sequence_and_running_totals(ledger: Ledger) -> None:
    ledger.append([earn("c1", "a", 100), earn("c1", "b", 50), spend("c1", "c", 30)])
    entries = ledger.entries("t", "c1", newest_first=False)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e["id"] for e in entries] == ["e-000000000001", "e-000000000002", "e-000000000003"]
    assert [e["runningBalance"] for e in entries] == [100, 150, 120]
    assert [e["runningLifetimeEarned"] for e in entries] == [100, 150, 150]
    assert ledger.head("t", "c1") == Head(seq=3, balance=120, pending=0, lifetime_earned=150, orders_credited=2)


def test_a_duplicate_key_replays_the_first_outcome_and_writes_nothing(ledger: Ledger, sqlite_store) -> None:
    first = ledger.append_one(earn("c1", "order-1", 100))
    again = ledger.append_one(earn("c1", "order-1", 100))
    assert again.duplicate and not first.duplicate
    assert again.transaction_id == first.transaction_id
    assert again.outcome == first.outcome
    assert len(ledger.entries("t", "c1")) == 1


def test_duplicates_inside_one_call_are_credited_once(ledger: Ledger) -> None:
    outcomes = ledger.append([earn("c1", "k", 10), earn("c1", "k", 10), earn("c2", "k", 10)])
    assert [o.duplicate for o in outcomes] == [False, True, False]
    assert ledger.head("t", "c1").balance == 10
    assert ledger.head("t", "c2").balance == 10


def test_same_key_with_a_different_request_is_a_conflict(ledger: Ledger) -> None:
    ledger.append_one(earn("c1", "k", 10))
    with pytest.raises(Conflict, match="different request"):
        ledger.append_one(earn("c1", "k", 99))
    assert ledger.head("t", "c1").balance == 10


def test_a_refused_plan_writes_nothing(ledger: Ledger) -> None:
    ledger.append_one(earn("c1", "a", 10))
    outcome = ledger.append([spend("c1", "b", 50)])[0]
    assert isinstance(outcome.error, InsufficientPoints)
    assert ledger.marker("t", "c1", "b") is None
    assert ledger.head("t", "c1").seq == 1


def test_the_marker_is_written_in_the_same_batch_as_the_entries(ledger: Ledger, sqlite_store) -> None:
    outcome = ledger.append_one(earn("c1", "a", 10))
    marker = sqlite_store.read(LEDGER, customer_pk("t", "c1"), marker_id("a"))
    assert marker["transactionId"] == outcome.transaction_id
    entry = ledger.entries("t", "c1")[0]
    assert entry["_ts"] == marker["_ts"] and entry["createdAt"] == marker["createdAt"]


def test_ledger_documents_cannot_be_modified_or_removed(ledger: Ledger, sqlite_store) -> None:
    ledger.append_one(earn("c1", "a", 10))
    entry = ledger.entries("t", "c1")[0]
    pk = customer_pk("t", "c1")
    tampered = dict(entry, signedAmount=1_000_000, runningBalance=1_000_000)
    with pytest.raises(ImmutableDocument):
        sqlite_store.upsert(LEDGER, tampered)
    with pytest.raises(ImmutableDocument):
        sqlite_store.upsert(LEDGER, tampered, if_match=entry["_etag"])
    with pytest.raises(ImmutableDocument):
        sqlite_store.delete(LEDGER, pk, entry["id"])
    with pytest.raises(ImmutableDocument):
        sqlite_store.batch(LEDGER, pk, [Create({"id": "x", "pk": pk}), Upsert(tampered)])
    with pytest.raises(ImmutableDocument):
        sqlite_store.batch(LEDGER, pk, [Delete(entry["id"])])
    assert sqlite_store.read(LEDGER, pk, entry["id"]) == entry
    assert sqlite_store.read(LEDGER, pk, "x") is None


def test_a_stale_head_is_corrected_by_the_sequence_conflict(sqlite_store, clock) -> None:
    writer_a, writer_b = Ledger(sqlite_store, clock), Ledger(sqlite_store, clock)
    writer_a.append_one(earn("c1", "a1", 10))
    writer_b.append_one(earn("c1", "b1", 20))  # b reads seq 1 from the store
    writer_a.append_one(earn("c1", "a2", 30))  # a's cache says seq 1: must collide, re-read, succeed
    entries = writer_a.entries("t", "c1", newest_first=False)
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e["runningBalance"] for e in entries] == [10, 30, 60]


def test_balance_as_of_a_past_instant(ledger: Ledger, clock) -> None:
    from datetime import timedelta

    ledger.append_one(earn("c1", "a", 10))
    before = clock.now()
    clock.advance(timedelta(hours=1))
    ledger.append_one(earn("c1", "b", 5))
    assert ledger.head_as_of("t", "c1", before).balance == 10
    assert ledger.head_as_of("t", "c1", before - timedelta(seconds=1)).balance == 0
    assert ledger.head_as_of("t", "c1", clock.now()).balance == 15


def test_an_orders_entries_come_oldest_first_among_the_customers_others(ledger: Ledger) -> None:
    def for_order(order_id: str, key: str, points: int) -> TransactionRequest:
        def plan(head: Head) -> Plan:
            return Plan(entries=[EntryDraft(EntryType.EARN, points, reference_order_id=order_id)],
                        outcome={"status": "credited"})
        return TransactionRequest("t", "c1", key, fingerprint_of(key), plan)

    ledger.append([for_order("o1", "a", 5), for_order("o2", "b", 7), for_order("o1", "c", 3),
                   *[for_order(f"x{n}", f"x{n}", 1) for n in range(20)], for_order("o1", "d", 2)])
    assert [(e["seq"], e["signedAmount"]) for e in ledger.entries_for_order("t", "c1", "o1")] == \
        [(1, 5), (3, 3), (24, 2)]


def test_the_ledgers_reads_use_an_index_on_sqlite_not_a_walk_of_the_partition(ledger: Ledger, sqlite_store,
                                                                              clock) -> None:
    """Markers and order records are kept out of the seq and referenceOrderId indexes
    (ContainerSpec.sparse); a read ordering by seq must still be planned on that index."""
    ledger.append([earn("c1", f"k{n}", 10) for n in range(5)])
    statements: list[str] = []
    conn = sqlite_store._conn()
    conn.set_trace_callback(statements.append)
    try:
        ledger._forget_head(customer_pk("t", "c1"))
        assert ledger.head("t", "c1").seq == 5
        assert [e["seq"] for e in ledger.entries("t", "c1", limit=2)] == [5, 4]
        assert [e["seq"] for e in ledger.entries("t", "c1", before_seq=4, limit=2)] == [3, 2]
        assert ledger.head_as_of("t", "c1", clock.now()).seq == 5
    finally:
        conn.set_trace_callback(None)
    reads = [sql for sql in statements if sql.startswith("SELECT") and "c_ledger" in sql]
    assert len(reads) == 4
    for sql in reads:
        plan = " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall())
        assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (sql, plan)


def test_transaction_ids_are_unique_across_threads_and_a_forked_child() -> None:
    import os

    from shared.ledger.service import new_transaction_id

    made: list[str] = []
    run_in_threads(lambda: made.extend(new_transaction_id() for _ in range(2000)), [()] * 4)
    assert len(set(made)) == len(made) == 8000
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its first id must not be one the parent makes next
        os.write(writer, new_transaction_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(reader, 200).decode()
    os.close(reader)
    os.close(writer)
    assert from_child.startswith("tx-") and from_child != new_transaction_id()
    assert from_child[:19] != made[0][:19]  # another random prefix, not the parent's
