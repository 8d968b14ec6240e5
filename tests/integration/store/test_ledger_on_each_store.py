"""The ledger's guarantees held on each adapter (SQLite and Cosmos DB through
cosmosdb-server), where they rest on what the store does rather than on the ledger's
own code: the chain of a partition's batches in one call (``DocumentStore.batches``)
and the exactness of the numbers it gives back. Found by an outside review of the
Cosmos adapter: both held on SQLite and broke on Cosmos."""

from __future__ import annotations

from shared.errors import PointsOutOfRange
from shared.ledger.chain import verify_customer
from shared.ledger.entries import MAX_POINTS, MAX_RUNNING_TOTAL, EntryDraft, EntryType
from shared.ledger.service import Ledger, Plan, TransactionRequest
from shared.store.port import DocumentStore


def _credit(key: str, points: int) -> TransactionRequest:
    return TransactionRequest("shop", "c1", key, key,
                              lambda head, p=points: Plan([EntryDraft(EntryType.EARN, p)], {}))


def test_requests_planned_on_a_head_another_instance_moved_are_replanned(store: DocumentStore, clock) -> None:
    """Two requests for one customer in one append, planned on this instance's cached head
    while a second instance (another Functions host) appended: the first loses its sequence
    number, the second must not be written on the head the first never wrote."""
    here, there = Ledger(store, clock), Ledger(store, clock)
    here.append_one(_credit("k0", 100))  # this instance caches the head at seq 1
    there.append_one(_credit("elsewhere", 5))  # seq 2, behind this instance's back
    outcomes = here.append([_credit("a", 10), _credit("b", 20)])
    assert [o.error for o in outcomes] == [None, None]
    entries = sorted(Ledger(store, clock).entries("shop", "c1", limit=10), key=lambda e: e["seq"])
    assert [e["runningBalance"] for e in entries] == [100, 105, 115, 135]
    assert Ledger(store, clock).head("shop", "c1").balance == 135
    assert verify_customer(store, "shop", "c1").ok


def test_running_totals_up_to_the_limit_come_back_exactly_and_past_it_are_refused(store: DocumentStore,
                                                                                  clock) -> None:
    ledger = Ledger(store, clock)
    left, n = MAX_RUNNING_TOTAL, 0
    while left:  # the largest exact total: odd, so a double would round it
        part = min(left, MAX_POINTS)
        assert ledger.append_one(_credit(f"k{n}", part)).error is None
        left, n = left - part, n + 1
    outcome = ledger.append([_credit("over", 1)])[0]
    assert isinstance(outcome.error, PointsOutOfRange)
    fresh = Ledger(store, clock)
    assert fresh.head("shop", "c1").balance == MAX_RUNNING_TOTAL
    assert verify_customer(store, "shop", "c1").ok
