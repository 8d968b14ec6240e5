"""Properties of the lot replay (shared/ledger/lots.py) over random but valid ledgers.

A small simulator turns a random list of operations into the entries the real
services write (earns, held earns approved or voided, redemptions direct or
reserved then confirmed or released, conversions, adjustments, refunds, vouchers
bought and refunded (an ADJUST naming the purchase), and the expiry job's EXPIREs),
with running balances from ``shared.ledger.entries.advance``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from shared.ledger.entries import EntryDraft, EntryStatus, EntryType, Head, advance, entry_id
from shared.ledger.lots import LotBook, replay

BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)
FIFO_DEBITS = {"REDEEM", "CONVERT", "ADJUST"}


class Simulator:
    def __init__(self) -> None:
        self.head = Head()
        self.entries: list[dict[str, Any]] = []
        self.book = LotBook()  # the replay, kept in step to plan the job's EXPIREs
        self.held: list[tuple[str, int]] = []
        self.reservations: list[tuple[str, int]] = []
        self.vouchers: list[tuple[str, int]] = []  # purchases not refunded yet: entry id, points
        self.orders: dict[str, int] = {}  # order id -> points still claw-backable

    def write(self, kind: EntryType, amount: int, status: EntryStatus = EntryStatus.COMMITTED,
              settles: tuple[str, int] | None = None, order: str | None = None, ref: str | None = None,
              expires_days: int | None = None) -> dict[str, Any]:
        draft = EntryDraft(kind, amount, status=status, settles_entry_id=settles[0] if settles else None,
                           settles_amount=settles[1] if settles else 0)
        self.head = advance(self.head, draft)
        attributes = {} if expires_days is None else {"expiresAt": (BASE + timedelta(days=expires_days)).isoformat()}
        entry = {"id": entry_id(self.head.seq), "seq": self.head.seq, "entryType": kind.value, "signedAmount": amount,
                 "status": status.value, "runningBalance": self.head.balance, "referenceOrderId": order,
                 "referenceEntryId": ref, "settlesEntryId": draft.settles_entry_id,
                 **({"attributes": attributes} if attributes else {})}
        self.entries.append(entry)
        self.book.apply(entry)
        return entry

    def run(self, op: tuple[str, int, int]) -> None:
        name, a, b = op
        balance = self.head.balance
        if name == "earn":
            order = f"o{len(self.entries)}"
            self.write(EntryType.EARN, a, order=order, expires_days=None if b == 0 else b)
            self.orders[order] = a
        elif name == "hold":
            entry = self.write(EntryType.EARN, a, status=EntryStatus.PENDING, order=f"o{len(self.entries)}",
                               expires_days=b or None)
            self.held.append((entry["id"], a))
        elif name in ("approve", "void") and self.held:
            held_id, points = self.held.pop(a % len(self.held))
            held = next(e for e in self.entries if e["id"] == held_id)
            if name == "approve":
                self.write(EntryType.EARN, points, settles=(held_id, points), order=held["referenceOrderId"])
                self.orders[held["referenceOrderId"]] = points
            else:
                self.write(EntryType.VOID, 0, settles=(held_id, points))
        elif name in ("redeem", "convert", "reserve") and balance > 0:
            points = 1 + a % balance
            if name == "reserve":
                entry = self.write(EntryType.REDEEM, -points, status=EntryStatus.PENDING)
                self.reservations.append((entry["id"], -points))
            else:
                self.write(EntryType.REDEEM if name == "redeem" else EntryType.CONVERT, -points)
        elif name == "buy" and balance > 0:
            points = 1 + a % balance
            self.vouchers.append((self.write(EntryType.REDEEM, -points)["id"], points))
        elif name == "refund-voucher" and self.vouchers:
            purchase, points = self.vouchers.pop(a % len(self.vouchers))
            self.write(EntryType.ADJUST, points, ref=purchase)  # shared/vouchers: _finish_refund
        elif name in ("confirm", "release") and self.reservations:
            rid, amount = self.reservations.pop(a % len(self.reservations))
            if name == "confirm":
                self.write(EntryType.REDEEM, 0, settles=(rid, amount))
            else:
                self.write(EntryType.RELEASE, -amount, settles=(rid, amount))
        elif name == "adjust":
            points = a if b % 2 == 0 else -(1 + a % balance) if balance > 0 else 0
            if points:
                self.write(EntryType.ADJUST, points, expires_days=b if points > 0 and b > 2 else None)
        elif name == "refund" and self.orders:
            order = sorted(self.orders)[a % len(self.orders)]
            points = min(self.orders[order], 1 + b * 7)
            if points:
                self.orders[order] -= points
                self.write(EntryType.REVERSAL, -points, order=order)
        elif name == "expire":
            # The job's rule: each due lot with points left, exactly its remainder.
            for lot in self.book.due(BASE + timedelta(days=a % 12)):
                self.write(EntryType.EXPIRE, -lot.remaining, ref=lot.lot_id, order=lot.order_id)


OPS = st.lists(st.tuples(
    st.sampled_from(["earn", "earn", "hold", "approve", "void", "redeem", "convert", "reserve", "confirm", "release",
                     "adjust", "refund", "expire", "buy", "refund-voucher"]),
    st.integers(1, 120), st.integers(0, 10)), max_size=60)


def simulate(ops) -> Simulator:
    sim = Simulator()
    for op in ops:
        sim.run(op)
    return sim


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_remaining_lots_and_deficit_always_add_up_to_the_balance(ops) -> None:
    sim = Simulator()
    for op in ops:
        sim.run(op)
        book = sim.book
        assert book.spendable - book.deficit == sim.head.balance
        assert book.deficit >= 0 and all(0 <= lot.remaining <= lot.amount for lot in book.lots.values())
        if book.deficit:
            assert book.spendable == 0, "no spendable lot while a deficit is open"
        if sim.head.balance >= 0:
            assert book.spendable == sim.head.balance and book.deficit == 0


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_debits_take_oldest_expiry_first_and_expire_takes_only_its_lot(ops) -> None:
    sim = simulate(ops)
    book = LotBook()
    for entry in sim.entries:
        before = {lot.lot_id: lot.remaining for lot in book.open_lots()}
        # The oracle, independent of the code under test: soonest expiry first, never last, then seq.
        never = datetime.max.replace(tzinfo=timezone.utc)
        order = [lot.lot_id for lot in sorted((lot for lot in book.lots.values() if lot.remaining > 0),
                                              key=lambda lot: (lot.expires_at or never, lot.seq))]
        if entry["entryType"] == "REVERSAL":
            own = [i for i in order if book.lots[i].order_id == entry["referenceOrderId"]]
            order = own + [i for i in order if i not in own]
        book.apply(entry)
        move = book.movements.get(entry["id"])
        if move is None:
            continue
        assert sum(points for _, points in move.lots) - move.deficit == entry["signedAmount"]
        if entry["signedAmount"] >= 0:
            continue
        taken = [lot_id for lot_id, _ in move.taken]
        if entry["entryType"] == "EXPIRE":
            assert taken == [entry["referenceEntryId"]] and move.beyond_lot == 0 and move.deficit == 0
            assert dict(move.taken)[entry["referenceEntryId"]] == before[entry["referenceEntryId"]]
            continue
        # FIFO: the lots taken from are a prefix of the order, all emptied but the last.
        assert taken == order[:len(taken)]
        for lot_id in taken[:-1]:
            assert book.lots[lot_id].remaining == 0
        if move.deficit:
            assert all(book.lots[i].remaining == 0 for i in order)


@settings(max_examples=100, deadline=None)
@given(OPS, st.integers(0, 60))
def test_consumption_is_derivable_from_the_ledger_alone(ops, cut) -> None:
    sim = simulate(ops)
    whole = replay(sim.entries)
    cut = min(cut, len(sim.entries))
    resumed = replay(sim.entries[cut:], replay(sim.entries[:cut]))
    again = replay(list(sim.entries))
    for other in (resumed, again):
        assert other.movements == whole.movements
        assert {i: (lot.remaining, lot.expired) for i, lot in other.lots.items()} == \
               {i: (lot.remaining, lot.expired) for i, lot in whole.lots.items()}
        assert other.deficit == whole.deficit


@settings(max_examples=100, deadline=None)
@given(OPS)
def test_a_release_or_a_voucher_refund_gives_back_to_the_lots_its_debit_took_from(ops) -> None:
    """So the points keep the expiry they had (a voucher's refund once formed a lot that never
    expired: points about to expire, spent on a voucher then cancelled, lived for ever)."""
    sim = simulate(ops)
    book = replay(sim.entries)
    for entry in sim.entries:
        if entry["entryType"] == "RELEASE":
            debit = entry["settlesEntryId"]
        elif entry["entryType"] == "ADJUST" and entry["referenceEntryId"]:
            debit = entry["referenceEntryId"]
        else:
            continue
        reservation = book.movements[debit]
        given_back = dict(book.movements[entry["id"]].lots)
        taken = dict(reservation.taken)
        # Or to a lot that stood in for a refunded order's points: an earlier refund of the
        # order of a lot the debit took from took it from that lot instead.
        orders = {book.lots[lot_id].order_id for lot_id in taken} - {None}
        stood_in = {lot_id for refund in sim.entries[:entry["seq"]]
                    if refund["entryType"] == "REVERSAL" and refund["referenceOrderId"] in orders
                    for lot_id, _ in book.movements[refund["id"]].taken
                    if book.lots[lot_id].order_id != refund["referenceOrderId"]}
        for lot_id, points in given_back.items():
            assert lot_id in stood_in or (lot_id in taken and points <= taken[lot_id])
        assert sum(given_back.values()) - book.movements[entry["id"]].deficit == entry["signedAmount"]


@pytest.mark.parametrize("refund_first", [True, False])
def test_a_full_refund_and_a_release_leave_the_same_lots_in_either_order(refund_first: bool) -> None:
    """The outside review's case: an order's points partly reserved and partly spent, then the
    order refunded in full and the reservation cancelled. Refund first, the clawback takes the
    later order's points in place of the reserved ones; the release must then refill the later
    order's lot, not the refunded order's soon-expiring one."""
    sim = Simulator()
    old = sim.write(EntryType.EARN, 100, order="o-old", expires_days=10)
    new = sim.write(EntryType.EARN, 100, order="o-new", expires_days=30)
    reservation = sim.write(EntryType.REDEEM, -30, status=EntryStatus.PENDING)
    sim.write(EntryType.REDEEM, -50)
    steps = [lambda: sim.write(EntryType.REVERSAL, -100, order="o-old"),
             lambda: sim.write(EntryType.RELEASE, 30, settles=(reservation["id"], -30))]
    for step in steps if refund_first else reversed(steps):
        step()
    lots = {lot.lot_id: lot.remaining for lot in sim.book.lots.values()}
    assert lots == {old["id"]: 0, new["id"]: 50}
    assert replay(sim.entries).movements == sim.book.movements  # the ledger alone says the same


def test_an_approved_held_earn_keeps_the_held_expiry_and_order() -> None:
    sim = Simulator()
    sim.run(("hold", 50, 3))
    sim.run(("approve", 0, 0))
    (lot,) = replay(sim.entries).lots.values()
    assert lot.lot_id == sim.entries[1]["id"] and lot.expires_at == BASE + timedelta(days=3)
    assert lot.order_id == sim.entries[0]["referenceOrderId"]


def test_a_refund_takes_its_own_order_first_then_fifo_then_deficit() -> None:
    sim = Simulator()
    sim.write(EntryType.EARN, 30, order="early", expires_days=1)
    sim.write(EntryType.EARN, 100, order="big", expires_days=9)
    sim.write(EntryType.REDEEM, -80)            # FIFO: early 30, then big 50
    sim.write(EntryType.REVERSAL, -100, order="big")
    move = sim.book.movements[sim.entries[-1]["id"]]
    assert move.taken == ((sim.entries[1]["id"], 50),) and move.deficit == 50
    assert sim.head.balance == -50 and sim.book.deficit == 50
    sim.write(EntryType.EARN, 70, order="later", expires_days=5)
    lot = sim.book.lots[sim.entries[-1]["id"]]
    assert lot.covered == 50 and lot.remaining == 20 and sim.book.deficit == 0
