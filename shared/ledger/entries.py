"""Ledger entries and the running state (the head) of a customer's partition.

An entry is immutable once written. Every entry carries the partition's running
totals *after* it (balance, pending, lifetime earned, orders credited), so the
newest entry is the customer's state and any past entry is the state as of its
time: a balance read never sums a history, and a reconciliation can verify each
running value against the sum of what came before.

Running totals, precisely:

* ``runningBalance``: the sum of ``signedAmount`` of COMMITTED entries. This is
  the available (spendable) balance.
  It also counts PENDING debits (open redemption reservations): a reservation
  takes its points out of the spendable balance the moment it is written, so
  no two reservations can spend the same points (``counts_toward_available``).
* ``runningPending``: the sum of ``signedAmount`` of PENDING credits (held
  earns) minus what later entries settled (``settlesEntryId``). Pending points
  are not spendable.
* ``runningReserved``: points taken by PENDING debits (reservations) that no
  later entry has settled yet (confirmed or released).
* ``runningLifetimeEarned``: COMMITTED EARN entries plus the REVERSAL entries
  that claw them back (refunds). Redemptions and expiry do not lower it.
* ``ordersCredited``: orders that produced a credit (a zero-point order counts:
  it still writes one EARN entry of 0 so its rule set is on record).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class EntryType(str, Enum):
    EARN = "EARN"
    REDEEM = "REDEEM"
    EXPIRE = "EXPIRE"
    CONVERT = "CONVERT"
    ADJUST = "ADJUST"
    REVERSAL = "REVERSAL"
    # A reservation cancelled or timed out: its points come back (settles the PENDING REDEEM).
    RELEASE = "RELEASE"
    # A held earn rejected in review: zero points, settles the PENDING EARN.
    VOID = "VOID"
    # A transfer between two customers (shared/transfers): the sender's debit and the
    # receiver's credit(s), each naming the transfer and the other party in ``attributes``.
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"


class EntryStatus(str, Enum):
    COMMITTED = "COMMITTED"
    PENDING = "PENDING"


ENTRY_DOC = "entry"
MARKER_DOC = "idempotency"
ORDER_DOC = "order"

MAX_POINTS = 10**15
# The largest running total an entry may carry: the largest integer a JSON number holds
# exactly where numbers are doubles (Cosmos DB, JavaScript clients). An odd total past it
# came back from Cosmos DB rounded: the balance off by one, the hash chain broken.
MAX_RUNNING_TOTAL = 2**53 - 1


def within_range(head: "Head") -> bool:
    """Whether every running total of ``head`` is one a JSON reader holds exactly."""
    limit = MAX_RUNNING_TOTAL
    return (-limit <= head.balance <= limit and head.pending <= limit and head.reserved <= limit
            and -limit <= head.lifetime_earned <= limit and all(-limit <= v <= limit for _, v in head.wallets))


def entry_id(seq: int) -> str:
    """The sequence number is the id: two writers cannot both create seq N."""
    assert 1 <= seq < 10**12
    return f"e-{seq:012d}"


def order_record_id(order_id: str) -> str:
    """An order's record in its customer's partition: one per order id, whatever
    idempotency key carried it (a second key for the same order is refused)."""
    return f"order-{order_id}"


def settlement_id(pending_entry_id: str) -> str:
    """The record that settles a pending entry (a redemption's reservation, a held
    earn): one per entry, so it cannot be settled twice."""
    return f"settled-{pending_entry_id}"


@dataclass(frozen=True)
class Head:
    """The running state of one customer partition after its newest entry."""

    seq: int = 0
    balance: int = 0
    pending: int = 0
    lifetime_earned: int = 0
    orders_credited: int = 0
    reserved: int = 0
    # The newest entry's ``hash`` (shared/ledger/chain.py); None before any hashed entry.
    # Not part of equality: two heads with the same totals are the same state.
    hash: str | None = field(default=None, compare=False)
    # Available points per wallet (a tenant with wallets only: shared/ledger/wallets.py), by name.
    wallets: tuple[tuple[str, int], ...] = ()
    # The newest entry's ``createdAt``: a live entry is dated no earlier (shared.ledger.service).
    created_at: str | None = field(default=None, compare=False)
    # ``lastImportedSeq``: the seq of the partition's newest imported entry, 0 if it has none;
    # None when unknown (a partition begun before entries carried it). With 0, ``createdAt``
    # never decreases along ``seq``, so an as-of read is one index seek (Ledger.head_as_of).
    imported_seq: int | None = field(default=0, compare=False)

    @classmethod
    def from_entry(cls, doc: dict[str, Any]) -> "Head":
        return cls(
            seq=doc["seq"],
            balance=doc["runningBalance"],
            pending=doc["runningPending"],
            lifetime_earned=doc["runningLifetimeEarned"],
            orders_credited=doc["ordersCredited"],
            reserved=doc.get("runningReserved", 0),
            hash=doc.get("hash"),
            wallets=tuple(sorted((doc.get("runningWallets") or {}).items())),
            created_at=doc.get("createdAt"),
            imported_seq=doc.get("lastImportedSeq"),
        )

    def wallet(self, name: str, default: str | None = None) -> int:
        """Available points in wallet ``name`` (before any entry named wallets, the
        whole balance is in the ``default`` wallet)."""
        if not self.wallets:
            return self.balance if name == default else 0
        return dict(self.wallets).get(name, 0)


@dataclass(frozen=True)
class EntryDraft:
    """What a transaction wants written; the ledger assigns seq, ids and totals."""

    entry_type: EntryType
    signed_amount: int
    status: EntryStatus = EntryStatus.COMMITTED
    reference_order_id: str | None = None
    reference_entry_id: str | None = None
    settles_entry_id: str | None = None
    # The settled PENDING entry's own signedAmount: positive for a held earn,
    # negative for a reservation (so one field serves both, with no sign flag).
    settles_amount: int = 0
    rule_set_id: str | None = None
    rule_set_version: int | None = None
    arm: str | None = None
    counts_order: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    # Wallets (shared/ledger/wallets.py; ignored for a tenant without wallets): the wallet a
    # credit goes to or a debit takes from, or the whole split given explicitly.
    wallet: str | None = None
    wallet_split: tuple[tuple[str, int], ...] | None = None
    # The entry's own ``idempotencyKey`` when a transaction groups several keyed effects
    # (the expiry job writes one EXPIRE per lot, keyed ``expire:<lot>:<n>``, in one transaction
    # per customer); None: the transaction's key, as for every other entry. Reconciliation
    # holds each key to one transaction either way (shared/app/reconcile.py).
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        assert isinstance(self.signed_amount, int) and not isinstance(self.signed_amount, bool)
        assert abs(self.signed_amount) <= MAX_POINTS, "points out of range"


_COMMITTED = EntryStatus.COMMITTED.value  # read once: an enum member's .value is a descriptor call


def counts_toward_available(status: str, signed_amount: int) -> bool:
    """Whether an entry moves the available balance: every COMMITTED entry, and
    PENDING debits (reservations), never PENDING credits (held earns)."""
    return status == _COMMITTED or signed_amount < 0


def advance(head: Head, draft: EntryDraft) -> Head:
    """The head after ``draft``: the one place running totals are computed."""
    balance, pending, lifetime = head.balance, head.pending, head.lifetime_earned
    reserved = head.reserved
    if counts_toward_available(draft.status.value, draft.signed_amount):
        balance += draft.signed_amount
    if draft.status is EntryStatus.COMMITTED:
        if draft.entry_type in (EntryType.EARN, EntryType.REVERSAL):
            lifetime += draft.signed_amount
    elif draft.signed_amount < 0:
        reserved -= draft.signed_amount
    else:
        pending += draft.signed_amount
    if draft.settles_amount > 0:
        pending -= draft.settles_amount
    else:
        reserved += draft.settles_amount
    assert pending >= 0 and reserved >= 0, "settled more than was pending or reserved"
    return Head(
        seq=head.seq + 1,
        balance=balance,
        pending=pending,
        lifetime_earned=lifetime,
        orders_credited=head.orders_credited + (1 if draft.counts_order else 0),
        reserved=reserved,
        wallets=head.wallets,
    )
