"""A ledger plans on the head it cached, and another process may have moved the
partition since: each process (the API, the workers, a timer job) has its own
``Ledger`` and its own head cache over one store.

Found by the concurrency harness (tests/e2e/test_concurrency_harness.py): the
reservation-timeout job, in its own process, released a reservation that the API
had made after the job cached the customer's head. Planned on that stale head
(nothing reserved), the release broke the running-totals invariant before anything
was written, and the job died with "settled more than was pending or reserved"
instead of re-reading the head. The class of tests: every kind of entry that
settles a pending one, settled by a ledger whose cached head predates the pending
entry, must be re-planned on the true head and written once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.clock import SystemClock
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType, Head
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.store.layout import CONTAINERS
from shared.store.sqlite import SqliteDocumentStore


def _request(key: str, draft: EntryDraft) -> TransactionRequest:
    def plan(head: Head) -> Plan:
        return Plan(entries=[draft], outcome={"key": key})

    return TransactionRequest("t", "c", key, fingerprint_of(key), plan)


# (the pending entry another process writes, the entry that settles it, totals after)
SETTLEMENTS = {
    "reservation released": (EntryDraft(EntryType.REDEEM, -30, status=EntryStatus.PENDING),
                             EntryDraft(EntryType.RELEASE, 30, settles_entry_id="e-000000000002",
                                        settles_amount=-30), (100, 0, 0)),
    "reservation confirmed": (EntryDraft(EntryType.REDEEM, -30, status=EntryStatus.PENDING),
                              EntryDraft(EntryType.REDEEM, 0, settles_entry_id="e-000000000002",
                                         settles_amount=-30), (70, 0, 0)),
    "conversion released": (EntryDraft(EntryType.CONVERT, -30, status=EntryStatus.PENDING),
                            EntryDraft(EntryType.RELEASE, 30, settles_entry_id="e-000000000002",
                                       settles_amount=-30), (100, 0, 0)),
    "held earn approved": (EntryDraft(EntryType.EARN, 40, status=EntryStatus.PENDING),
                           EntryDraft(EntryType.EARN, 40, settles_entry_id="e-000000000002",
                                      settles_amount=40), (140, 0, 0)),
    "held earn voided": (EntryDraft(EntryType.EARN, 40, status=EntryStatus.PENDING),
                         EntryDraft(EntryType.VOID, 0, settles_entry_id="e-000000000002",
                                    settles_amount=40), (100, 0, 0)),
}


@pytest.mark.parametrize("name", list(SETTLEMENTS))
def test_a_settlement_planned_on_a_stale_cached_head_is_replanned(tmp_path: Path, name: str) -> None:
    pending, settling, (available, reserved, held) = SETTLEMENTS[name]
    store = SqliteDocumentStore(tmp_path / "s.db", CONTAINERS, synchronous="NORMAL")
    try:
        job, api = Ledger(store, SystemClock()), Ledger(store, SystemClock())  # two processes' ledgers
        assert job.append_one(_request("float", EntryDraft(EntryType.ADJUST, 100))).error is None
        assert job.peek_head("t", "c").seq == 1  # the job's cache now holds seq 1: nothing pending
        api.append_one(_request("pending", pending))
        outcome = job.append_one(_request("settle", settling))
        assert outcome.error is None and not outcome.duplicate
        head = api.head("t", "c")
        assert (head.seq, head.balance, head.reserved, head.pending) == (3, available, reserved, held)
        entries = api.entries("t", "c", newest_first=False)
        assert [e["seq"] for e in entries] == [1, 2, 3] and entries[2]["settlesEntryId"] == "e-000000000002"
    finally:
        store.close()


def test_a_settlement_on_the_true_head_that_breaks_the_totals_still_stops_loudly(tmp_path: Path) -> None:
    """Re-planning is for stale heads only: on a head just read, a settlement of more than
    is reserved is a bug, and the invariant stops it."""
    store = SqliteDocumentStore(tmp_path / "s.db", CONTAINERS, synchronous="NORMAL")
    try:
        ledger = Ledger(store, SystemClock())
        with pytest.raises(AssertionError, match="settled more than was pending or reserved"):
            ledger.append_one(_request("bad", EntryDraft(EntryType.RELEASE, 30, settles_entry_id="e-000000000001",
                                                         settles_amount=-30)))
        assert ledger.entries("t", "c") == []
    finally:
        store.close()
