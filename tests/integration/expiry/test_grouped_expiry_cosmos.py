"""The expiry job's bulk ledger read (``pk IN (...)`` across partitions) and its grouped
transactions on the Cosmos DB emulator: the same books as reading customer by customer,
and one transaction per customer with a per-lot key on each EXPIRE."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.clock import ManualClock
from shared.expiry.service import read_book, read_books
from shared.ledger.entries import EntryDraft, EntryType
from shared.ledger.service import Ledger, Plan, TransactionRequest

pytestmark = pytest.mark.cosmos

BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_bulk_books_match_one_by_one_and_a_group_expires_each_lot_once(cosmos_store) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock(BASE + timedelta(days=60))
    ledger = Ledger(cosmos_store, clock)
    customers = [f"x{n}" for n in range(5)]
    for n, customer in enumerate(customers):
        for lot in range(n + 1):
            draft = EntryDraft(EntryType.EARN, 10 + lot, reference_order_id=f"o{lot}",
                               attributes={"expiresAt": (BASE + timedelta(days=lot + 1)).isoformat()})
            ledger.append_one(TransactionRequest("gx", customer, f"k{lot}", f"k{lot}",
                                                 lambda head, d=draft: Plan([d], {})))
    newest: list[dict] = []
    books = read_books(cosmos_store, "gx", customers, newest)
    for customer in customers:
        single = read_book(cosmos_store, "gx", customer)
        assert books[customer].balance == single.balance and books[customer].seq == single.seq
        assert {k: v.remaining for k, v in books[customer].lots.items()} == \
            {k: v.remaining for k, v in single.lots.items()}
    assert len(newest) == len(customers)

    from shared.expiry.service import ExpiryService

    service = ExpiryService(cosmos_store, ledger, None, clock)  # type: ignore[arg-type]
    report = service.expire_customers("gx", customers, clock.now())
    assert not report.failed and report.lots_expired == sum(range(1, 6))
    assert all(ledger.head("gx", c).balance == 0 for c in customers)
    assert service.expire_customers("gx", customers, clock.now()).lots_expired == 0
