"""Running totals stay within what every reader of a JSON number holds exactly
(shared/ledger/entries.py ``MAX_RUNNING_TOTAL`` = 2^53 - 1): Cosmos DB keeps numbers as
doubles, so an odd total past it came back rounded (the balance off by one, the hash
chain broken). A transaction that would pass it is refused whole, on every path that
appends (one request, a batch of them, a retry of the same key), and a customer at the
limit can still spend."""

from __future__ import annotations

import pytest

from shared.errors import PointsOutOfRange
from shared.ledger.chain import verify_customer
from shared.ledger.entries import MAX_POINTS, MAX_RUNNING_TOTAL
from shared.ledger.service import Ledger
from tests.unit.ledger.test_ledger import earn, spend


@pytest.fixture
def ledger(sqlite_store, clock) -> Ledger:
    return Ledger(sqlite_store, clock)


def _fill(ledger: Ledger, customer: str, total: int) -> None:
    n = 0
    while total > 0:
        part = min(total, MAX_POINTS)
        ledger.append_one(earn(customer, f"fill-{n}", part))
        total -= part
        n += 1


def test_a_credit_past_the_largest_exact_total_is_refused_and_writes_nothing(ledger: Ledger, sqlite_store) -> None:
    _fill(ledger, "c1", MAX_RUNNING_TOTAL - 5)
    before = ledger.head("t", "c1")
    with pytest.raises(PointsOutOfRange):
        ledger.append_one(earn("c1", "over", 6))
    assert ledger.head("t", "c1") == before
    assert ledger.append_one(earn("c1", "up-to", 5)).error is None  # exactly the limit is fine
    assert ledger.head("t", "c1").balance == MAX_RUNNING_TOTAL
    assert verify_customer(sqlite_store, "t", "c1").ok


def test_in_a_batch_only_the_request_past_the_limit_is_refused(ledger: Ledger) -> None:
    _fill(ledger, "c1", MAX_RUNNING_TOTAL - 5)
    outcomes = ledger.append([earn("c2", "fine", 10), earn("c1", "over", 6), earn("c1", "then", 5)])
    assert outcomes[0].error is None
    assert isinstance(outcomes[1].error, PointsOutOfRange)
    assert outcomes[2].error is None  # planned on the true head: the refused one wrote nothing
    assert ledger.head("t", "c1").balance == MAX_RUNNING_TOTAL and ledger.head("t", "c2").balance == 10


def test_a_customer_at_the_limit_can_still_spend(ledger: Ledger) -> None:
    _fill(ledger, "c1", MAX_RUNNING_TOTAL)
    assert ledger.append_one(spend("c1", "s1", 10**12)).error is None
    assert ledger.head("t", "c1").balance == MAX_RUNNING_TOTAL - 10**12


def test_a_retry_of_an_applied_key_replays_it_even_at_the_limit(ledger: Ledger) -> None:
    _fill(ledger, "c1", MAX_RUNNING_TOTAL - 5)
    first = ledger.append_one(earn("c1", "last", 5))
    again = ledger.append_one(earn("c1", "last", 5))
    assert again.duplicate and again.transaction_id == first.transaction_id
