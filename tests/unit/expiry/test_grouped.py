"""The expiry job's grouped transactions (one per customer, all its due lots) write the
same ledger effects as expiring lot by lot, one transaction each: the same EXPIREs (lot,
points, per-lot key ``expire:<lot>:<n>``), the same balances, an intact hash chain, and a
rerun that writes nothing (shared/expiry/service.py)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from shared.expiry import service as expiry_service
from shared.ledger.chain import verify_customer
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType
from shared.ledger.service import Plan, TransactionRequest
from tests.unit.expiry.conftest import entries, policy_tenant

BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
CUTOFF = BASE + timedelta(days=30)
_numbers = itertools.count()

# (kind, points, days): an earn expiring after ``days`` (0: never), a redemption, a
# reservation, or the release of the oldest open reservation.
operations = st.lists(st.tuples(st.sampled_from(["earn", "earn", "redeem", "reserve", "release"]),
                                st.integers(1, 60), st.integers(0, 45)), min_size=1, max_size=25)


def _write(platform, tenant_id: str, customer_id: str, history: list[tuple[str, int, int]]) -> None:  # type: ignore[no-untyped-def]
    """The same history for any customer: entries straight through the ledger."""
    reservations: list[tuple[str, int]] = []
    for n, (kind, points, days) in enumerate(history):
        balance = platform.ledger.head(tenant_id, customer_id).balance
        if kind == "earn":
            attributes = {"expiresAt": (BASE + timedelta(days=days)).isoformat()} if days else {}
            draft = EntryDraft(EntryType.EARN, points, reference_order_id=f"o{n}", attributes=attributes)
        elif kind in ("redeem", "reserve") and balance > 0:
            status = EntryStatus.PENDING if kind == "reserve" else EntryStatus.COMMITTED
            draft = EntryDraft(EntryType.REDEEM, -min(points, balance), status=status)
        elif kind == "release" and reservations:
            held_id, held = reservations.pop(0)
            draft = EntryDraft(EntryType.RELEASE, -held, settles_entry_id=held_id, settles_amount=held)
        else:
            continue
        outcome = platform.ledger.append_one(TransactionRequest(
            tenant_id, customer_id, f"k{n}", f"k{n}", lambda head, d=draft: Plan([d], {})))
        if kind == "reserve":
            reservations.append((outcome.entries[0]["id"], outcome.entries[0]["signedAmount"]))


def _expiries(platform, tenant_id: str, customer_id: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [(e["signedAmount"], e["referenceEntryId"], e["idempotencyKey"], e["attributes"]["cutoff"])
            for e in entries(platform, tenant_id, customer_id) if e["entryType"] == "EXPIRE"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=operations, cap=st.sampled_from([1, 2, 3, 90]))
def test_grouped_expiry_equals_lot_by_lot_expiry(platform, history, cap, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    tenant_id = "grouped"
    if platform.store.read("tenants", tenant_id, tenant_id) is None:
        policy_tenant(platform, tenant_id, customers=())
    n = next(_numbers)
    grouped, single = f"g{n}", f"s{n}"
    for customer_id in (grouped, single):
        _write(platform, tenant_id, customer_id, history)
    service = platform.expiry

    # Lot by lot: one transaction per due lot, keyed expire:<lot>:<n>, until nothing is due.
    while True:
        book = service.book(tenant_id, single)
        due = book.due(CUTOFF)
        if not due:
            break
        lot = due[0]
        outcome = platform.ledger.append_one(service._request(
            tenant_id, single, {single: book}, lot.lot_id, expiry_service.expire_key(lot), CUTOFF))
        assert outcome.entries and not outcome.duplicate

    # Grouped, at most ``cap`` lots per transaction.
    monkeypatch.setattr(expiry_service, "MAX_LOTS_PER_TRANSACTION", cap)
    report = service.expire_customers(tenant_id, [grouped], CUTOFF)
    assert not report.failed

    assert _expiries(platform, tenant_id, grouped) == _expiries(platform, tenant_id, single)
    assert report.lots_expired == len(_expiries(platform, tenant_id, single))
    assert platform.ledger.head(tenant_id, grouped) == platform.ledger.head(tenant_id, single)
    keys = [key for _, _, key, _ in _expiries(platform, tenant_id, grouped)]
    assert len(keys) == len(set(keys)), "each lot's expiry appears once"
    assert verify_customer(platform.store, tenant_id, grouped).ok
    # Exactly once: a rerun writes nothing.
    assert service.expire_customers(tenant_id, [grouped], CUTOFF).lots_expired == 0
    assert not service.book(tenant_id, grouped).due(CUTOFF)


def test_a_group_planned_before_a_redemption_leaves_out_the_spent_lot(client, platform, clock) -> None:  # type: ignore[no-untyped-def]
    """A redemption written between the job's read and its append takes the first lot: the
    transaction, re-planned on the new head, expires only what is left."""
    policy_tenant(platform, "race2", customers=("c1",))
    _write(platform, "race2", "c1", [("earn", 30, 5), ("earn", 40, 10), ("earn", 50, 60)])
    service = platform.expiry
    books = {"c1": service.book("race2", "c1")}
    due = books["c1"].due(CUTOFF)
    assert [lot.remaining for lot in due] == [30, 40]
    request = service._group_request("race2", "c1", books, [(lot.lot_id, lot.expiries) for lot in due], CUTOFF)
    platform.ledger.append_one(TransactionRequest("race2", "c1", "late", "late",
                                                  lambda head: Plan([EntryDraft(EntryType.REDEEM, -35)], {})))
    (outcome,) = platform.ledger.append([request])
    assert outcome.error is None
    assert [(e["signedAmount"], e["idempotencyKey"]) for e in outcome.entries] == [
        (-35, f"expire:{due[1].lot_id}:0")]
    assert outcome.outcome["points"] == 35 and platform.ledger.head("race2", "c1").balance == 50
