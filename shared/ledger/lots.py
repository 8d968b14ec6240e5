"""Points lots: which points an entry added and which points it took, derived
from a customer's ledger entries alone (pure functions, no store).

``replay(entries)`` walks a customer's entries in ``seq`` order and returns a
``LotBook``: every lot with what remains of it, the customer's deficit, and for
each entry that moved the available balance a ``Movement`` saying which lots it
took from or gave back to. Nothing of this is stored: the ledger is the record,
the book is a function of it, so two readers always agree.

Lots (credits that add spendable points):

* a COMMITTED entry with ``signedAmount > 0`` forms a lot: an EARN, a positive
  ADJUST, an EARN that settles a held (PENDING) earn, any other positive entry.
  Its id is the entry id; its expiry is ``attributes.expiresAt`` (a UTC instant),
  else, for an approved held earn, the held entry's, else none (never expires).
* a RELEASE (a reservation cancelled or timed out) does not form a new lot: it
  gives the points back to the lots the reservation took them from, in reverse
  order of taking (the last lot taken from is refilled first), so the points
  keep the expiry they had. A RELEASE that finds nothing to restore (a
  reservation older than the history replayed) forms a lot of its own.
* a positive ADJUST whose ``referenceEntryId`` names an earlier debit (a
  cancelled or expired voucher's refund, shared/vouchers) gives the points back
  the same way, to the lots that debit took them from: points about to expire
  when they bought a voucher do not come back as points that never expire.
* a PENDING credit (held earn) is not spendable and forms no lot until settled.
* points given back to a lot of an order whose refund took other orders' points
  in its place (the order's own were reserved or spent when it was refunded)
  go first to those other lots, in the same wallet, up to what was taken from
  them: they stood in for the refunded order's points. So a full refund and a
  reservation's release leave the same lots in either order (an outside review
  found refund-then-release refilled the refunded order's soon-expiring lot
  while the later order's lot stayed drained: those points expired early).

Debits take from lots, never more than a lot holds:

* REDEEM (reservations included, when written), CONVERT, negative ADJUST and
  any other debit: first-expiring first (FIFO by ``expiresAt``, lots that never
  expire last, ties by seq);
* EXPIRE: exactly the lot named by ``referenceEntryId``, at most what remains;
* REVERSAL (a refund's clawback): first what remains of the refunded order's
  own lots (``referenceOrderId``), then FIFO.

Wallets (a tenant with wallets, shared/ledger/wallets.py): a lot belongs to the
wallet its entry's ``walletSplit`` credited (``Lot.wallet``; None before the
tenant had wallets), and a debit with a ``walletSplit`` takes each wallet's part
from that wallet's lots first (FIFO among them, then lots of no wallet), only
then from any lot; a refund's clawback too (its split is the ledger's, by the
spending order), the refunded order's own lots first within each wallet's part.
So the lots of a wallet add up to its running balance whenever the tenant had
its wallets before its first credit and no credit has paid off a deficit (the
lots give such a credit to the deficit, the wallets to the wallet it names).

Deficit: a clawback larger than all remaining lots takes the balance below
zero; the shortfall is the ``deficit``. While there is a deficit every lot is
empty, and any later credit (a lot, a RELEASE) first pays the deficit off; only
the rest becomes spendable in the lot (``Lot.covered`` records what went to the
deficit). Hence, after every entry:

    sum(lot.remaining) - deficit == available balance (runningBalance)

and ``deficit > 0`` only when every lot is empty, so when the balance is not
negative the remaining lots add up to it exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from shared.ledger.entries import EntryType, counts_toward_available

_NEVER = datetime.max.replace(tzinfo=timezone.utc)
# The values compared on every entry replayed, read once (an enum member's ``.value`` is a
# descriptor call: ~1 µs each, several per entry, a good part of a replay).
_RELEASE, _EXPIRE, _REVERSAL = EntryType.RELEASE.value, EntryType.EXPIRE.value, EntryType.REVERSAL.value
_ADJUST = EntryType.ADJUST.value


@dataclass
class Lot:
    lot_id: str
    seq: int
    amount: int
    remaining: int
    expires_at: datetime | None
    order_id: str | None
    entry_type: str
    # Points of ``amount`` that paid off a deficit instead of becoming spendable.
    covered: int = 0
    # Points taken by EXPIRE entries, and how many EXPIRE entries named this lot.
    expired: int = 0
    expiries: int = 0
    wallet: str | None = None

    @property
    def fifo_key(self) -> tuple[datetime, int]:
        return (self.expires_at or _NEVER, self.seq)


@dataclass(frozen=True)
class Movement:
    """What one entry did to the lots: ``lots`` are signed per-lot changes in the
    order applied (negative: taken, positive: formed or given back); ``deficit``
    is the signed change of the deficit. ``sum(lots) - deficit == signedAmount``."""

    entry_id: str
    seq: int
    entry_type: str
    signed_amount: int
    lots: tuple[tuple[str, int], ...]
    deficit: int = 0
    # EXPIRE only: points it took beyond what its lot held (never, for entries the job writes).
    beyond_lot: int = 0

    @property
    def taken(self) -> tuple[tuple[str, int], ...]:
        return tuple((lot, -points) for lot, points in self.lots if points < 0)


@dataclass
class LotBook:
    lots: dict[str, Lot] = field(default_factory=dict)
    movements: dict[str, Movement] = field(default_factory=dict)
    deficit: int = 0
    balance: int = 0
    seq: int = 0
    # Held earns by entry id: an approval inherits the held entry's expiry and order.
    _held: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Order id -> [lot id, points] its refunds took from other orders' lots and no give-back
    # has repaid yet (module docstring).
    _stood_in: dict[str, list[list[Any]]] = field(default_factory=dict)

    # --- reads -----------------------------------------------------------------------

    def open_lots(self) -> list[Lot]:
        """Lots with points left, in the order debits take them (FIFO)."""
        return sorted((lot for lot in self.lots.values() if lot.remaining > 0), key=lambda lot: lot.fifo_key)

    def due(self, cutoff: datetime) -> list[Lot]:
        """Lots with points left whose expiry is at or before ``cutoff``."""
        return [lot for lot in self.open_lots() if lot.expires_at is not None and lot.expires_at <= cutoff]

    @property
    def spendable(self) -> int:
        return sum(lot.remaining for lot in self.lots.values())

    def trial(self, entry: dict[str, Any]) -> tuple[Movement, dict[str, Lot]]:
        """What appending ``entry`` (a debit, without its ``seq``) would take, replayed by this
        very code on a copy of the open lots, the book left as it is: the movement and the lots
        it names. A writer that must describe a debit's lots before the ledger writes it (a
        transfer's parts) asks here rather than deciding on its own."""
        copy = LotBook(lots={lot_id: dataclasses.replace(lot) for lot_id, lot in self.lots.items()
                             if lot.remaining > 0},
                       deficit=self.deficit, balance=self.balance, seq=self.seq)
        probe = {"id": "~trial", "status": "COMMITTED", **entry, "seq": self.seq + 1}
        assert probe["signedAmount"] < 0, "a trial is of a debit"
        copy.apply(probe)
        return copy.movements["~trial"], copy.lots

    # --- the replay ------------------------------------------------------------------

    def apply(self, entry: dict[str, Any]) -> None:
        seq = entry["seq"]
        if seq <= self.seq:
            raise ValueError(f"entries must be replayed in seq order: {seq} after {self.seq}")
        self.seq = seq
        amount, status = entry["signedAmount"], entry["status"]
        if not counts_toward_available(status, amount):
            if amount > 0:
                self._held[entry["id"]] = entry
            return
        if amount == 0:
            return
        self.balance += amount
        kind = entry["entryType"]
        if amount > 0:
            settled = entry.get("settlesEntryId")
            if kind == _RELEASE and settled in self.movements:
                self._restore(entry, self.movements[settled])
            elif kind == _ADJUST and self._debit(entry.get("referenceEntryId")) is not None:
                self._restore(entry, self._debit(entry["referenceEntryId"]))  # type: ignore[arg-type]
            else:
                self._form(entry)
        elif kind == _EXPIRE:
            self._expire(entry)
        elif entry.get("walletSplit"):
            # A wallet tenant's debit, a refund's clawback included: each wallet's part from that
            # wallet's lots (a refund's own order's first), as the ledger split it. (A clawback
            # taken from the order's lots whatever the split left a wallet's lots apart from its
            # balance, and the expiry job later took a wallet below zero.)
            self._take_by_wallet(entry, entry.get("referenceOrderId") if kind == _REVERSAL else None)
            if kind == _REVERSAL:
                self._note_stand_ins(entry)
        elif kind == _REVERSAL:
            order_id = entry.get("referenceOrderId")
            first = [lot for lot in self.open_lots() if order_id is not None and lot.order_id == order_id]
            self._take(entry, -amount, first)
            self._note_stand_ins(entry)
        else:
            self._take(entry, -amount, [])

    def _note_stand_ins(self, refund: dict[str, Any]) -> None:
        order_id = refund.get("referenceOrderId")
        if order_id is None:
            return
        for lot_id, points in self.movements[refund["id"]].taken:
            if self.lots[lot_id].order_id != order_id:
                self._stood_in.setdefault(order_id, []).append([lot_id, points])

    def _give_back(self, lot: Lot, points: int, given: list[tuple[str, int]]) -> None:
        """``points`` back to ``lot``: first to the lots that stood in for its order's refunded
        points (same wallet, latest first), the rest to the lot itself."""
        for stand_in in reversed(self._stood_in.get(lot.order_id or "", ())):
            if points == 0:
                break
            other = self.lots[stand_in[0]]
            if stand_in[1] == 0 or other.wallet != lot.wallet:
                continue
            part = min(points, stand_in[1])
            stand_in[1] -= part
            other.remaining += part
            given.append((other.lot_id, part))
            points -= part
        if points:
            lot.remaining += points
            given.append((lot.lot_id, points))

    def _debit(self, entry_id: str | None) -> Movement | None:
        movement = self.movements.get(entry_id) if entry_id else None
        return movement if movement is not None and movement.signed_amount < 0 else None

    def _take_by_wallet(self, entry: dict[str, Any], order_id: str | None = None) -> None:
        taken: list[tuple[str, int]] = []
        deficit = 0
        for wallet, part in entry["walletSplit"].items():
            if part >= 0:
                continue
            first = [lot for lot in self.open_lots() if lot.wallet == wallet]
            first += [lot for lot in self.open_lots() if lot.wallet is None]
            if order_id is not None:  # a refund: the order's own lots first, within the wallet's
                first = [lot for lot in first if lot.order_id == order_id] + \
                        [lot for lot in first if lot.order_id != order_id]
            more, short = self._fifo(-part, first)
            taken.extend(more)
            deficit += short
        self._record(entry, tuple(taken), deficit)

    def _form(self, entry: dict[str, Any]) -> None:
        held = self._held.pop(entry.get("settlesEntryId") or "", None) or {}
        expires = expiry_of(entry) or expiry_of(held)
        amount = entry["signedAmount"]
        covered = min(self.deficit, amount)
        self.deficit -= covered
        self.lots[entry["id"]] = Lot(
            lot_id=entry["id"], seq=entry["seq"], amount=amount, remaining=amount - covered, expires_at=expires,
            order_id=entry.get("referenceOrderId") or held.get("referenceOrderId"), entry_type=entry["entryType"],
            covered=covered, wallet=_wallet_of(entry))
        self._record(entry, ((entry["id"], amount - covered),), -covered)

    def _restore(self, entry: dict[str, Any], reservation: Movement) -> None:
        rest = entry["signedAmount"]
        covered = min(self.deficit, rest)
        self.deficit -= covered
        rest -= covered
        given: list[tuple[str, int]] = []
        for lot_id, taken in reversed(reservation.taken):
            if rest == 0:
                break
            back = min(rest, taken)
            self._give_back(self.lots[lot_id], back, given)
            rest -= back
        if rest:
            # More released than the reservation took from lots (history cut short): a lot of its own.
            self.lots[entry["id"]] = Lot(entry["id"], entry["seq"], rest, rest, expiry_of(entry),
                                         entry.get("referenceOrderId"), entry["entryType"])
            given.append((entry["id"], rest))
        self._record(entry, tuple(given), -covered)

    def _expire(self, entry: dict[str, Any]) -> None:
        points = -entry["signedAmount"]
        lot = self.lots.get(entry.get("referenceEntryId") or "")
        taken: list[tuple[str, int]] = []
        if lot is not None:
            lot.expiries += 1
            part = min(points, lot.remaining)
            if part:
                lot.remaining -= part
                lot.expired += part
                taken.append((lot.lot_id, -part))
            points -= part
        beyond = points
        more, deficit = self._fifo(points, [])
        self._record(entry, (*taken, *more), deficit, beyond_lot=beyond)

    def _take(self, entry: dict[str, Any], points: int, first: list[Lot]) -> None:
        taken, deficit = self._fifo(points, first)
        self._record(entry, taken, deficit)

    def _fifo(self, points: int, first: list[Lot]) -> tuple[tuple[tuple[str, int], ...], int]:
        if points == 0:
            return (), 0  # nothing to take (every EXPIRE the job writes): no need to sort the open lots
        taken: list[tuple[str, int]] = []
        for lot in [*first, *self.open_lots()]:
            if points == 0:
                break
            part = min(points, lot.remaining)
            if part:
                lot.remaining -= part
                taken.append((lot.lot_id, -part))
                points -= part
        self.deficit += points
        return tuple(taken), points

    def _record(self, entry: dict[str, Any], lots: tuple[tuple[str, int], ...], deficit: int,
                beyond_lot: int = 0) -> None:
        self.movements[entry["id"]] = Movement(entry["id"], entry["seq"], entry["entryType"],
                                               entry["signedAmount"], lots, deficit, beyond_lot)


def _wallet_of(entry: dict[str, Any]) -> str | None:
    split = entry.get("walletSplit") or {}
    return next(iter(split)) if len(split) == 1 else entry.get("wallet")


def replay(entries: Iterable[dict[str, Any]], book: LotBook | None = None) -> LotBook:
    """The lot book after ``entries`` (a customer's, in seq order), continuing ``book`` if given."""
    book = book if book is not None else LotBook()
    for entry in entries:
        book.apply(entry)
    return book


def lots_of(entries: Iterable[dict[str, Any]]) -> list[Lot]:
    """Every lot the entries formed, in the order they were formed."""
    return list(replay(entries).lots.values())


def consumption_of(entries: Iterable[dict[str, Any]], entry_id: str) -> Movement | None:
    """Which lots ``entry_id`` took from (or gave back to), from the ledger alone."""
    return replay(entries).movements.get(entry_id)


def expiry_of(entry: dict[str, Any]) -> datetime | None:
    """An entry's ``attributes.expiresAt`` as an aware UTC instant (None: no expiry).
    A naive value is read as UTC; a value that is not a date is ignored."""
    value = (entry.get("attributes") or {}).get("expiresAt")
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant.replace(tzinfo=timezone.utc) if instant.tzinfo is None else instant.astimezone(timezone.utc)


__all__ = ["Lot", "LotBook", "Movement", "consumption_of", "expiry_of", "lots_of", "replay"]
