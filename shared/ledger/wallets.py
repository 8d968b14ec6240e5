"""Wallets in the ledger: how each entry splits over a tenant's wallets, and the
per-wallet running balances (docs/wallets.md).

For a tenant with wallets (``shared.domain.wallets.WalletSettings``), every entry
that moves the available balance carries

* ``walletSplit``: ``{wallet: signed points}``, adding up to what the entry moves;
* ``runningWallets``: every wallet's available balance after it, adding up to
  ``runningBalance``.

The split is decided here, once, when the entry is written (``split``):

* an explicit ``EntryDraft.wallet_split`` is taken as given (checked);
* a credit goes to ``EntryDraft.wallet`` (``into "promo"``, an adjustment's
  target, a matured earn's wallet), else to the default wallet;
* a debit naming a wallet (a redemption or adjustment with ``wallet``, an
  EXPIRE of a lot of that wallet) takes from it alone;
* any other debit draws from the wallets in the tenant's spending order, each
  down to zero; what no wallet holds (a refund's clawback of spent points)
  goes on the default wallet, below zero.

A RELEASE of a reservation gives back to the wallets the reservation took from
(the ledger reads the reservation's split). Per-wallet invariants, asserted on
every append: the running wallets add up to the running balance; a wallet goes
below zero only by a debit that names it or by a clawback beyond every wallet.

A tenant without wallets: ``split`` is never called, no entry carries either
field, and the ledger is exactly as before.
"""

from __future__ import annotations

from typing import Any, Mapping

from shared.domain.wallets import WalletSettings
from shared.ledger.entries import EntryDraft, counts_toward_available


def moves(draft: EntryDraft) -> int:
    """What the draft moves in the available balance."""
    return draft.signed_amount if counts_toward_available(draft.status.value, draft.signed_amount) else 0


def start(balances: Mapping[str, int], balance: int, settings: WalletSettings) -> dict[str, int]:
    """The wallets before an entry: the head's, or (the tenant's first entry since it
    defined wallets) its whole balance in the default wallet."""
    if balances:
        out = {name: 0 for name in settings.names}
        out.update(balances)
        return out
    return {name: (balance if name == settings.default else 0) for name in settings.names}


def split(balances: Mapping[str, int], draft: EntryDraft, settings: WalletSettings,
          released: Mapping[str, int] | None = None) -> dict[str, int]:
    """How ``draft`` splits over the wallets, given their balances before it."""
    amount = moves(draft)
    if amount == 0:
        return {}
    if draft.wallet_split is not None:
        given = dict(draft.wallet_split)
    elif released:
        given = {name: -points for name, points in released.items() if points}
    elif amount > 0:
        given = {draft.wallet or settings.default: amount}
    elif draft.wallet is not None:
        given = {draft.wallet: amount}
    else:
        need, given = -amount, {}
        for name in settings.spending_order:
            take = min(need, max(0, balances.get(name, 0)))
            if take:
                given[name] = -take
                need -= take
        if need:
            given[settings.default] = given.get(settings.default, 0) - need
    assert sum(given.values()) == amount, "a wallet split must add up to what the entry moves"
    assert set(given) <= set(settings.names), f"unknown wallet in {sorted(given)}"
    assert all((points > 0) == (amount > 0) for points in given.values() if points), "a split moves one way"
    return given


def apply(balances: Mapping[str, int], given: Mapping[str, int]) -> dict[str, int]:
    after = dict(balances)
    for name, points in given.items():
        after[name] = after.get(name, 0) + points
    return after


def running_of(doc: Mapping[str, Any]) -> dict[str, int]:
    return dict(doc.get("runningWallets") or {})


def balances(running: Mapping[str, int], balance: int, settings: WalletSettings) -> dict[str, int]:
    """Every wallet's available points (a reader's view: ``start`` in the settings' order)."""
    current = start(running, balance, settings)
    return {name: current.get(name, 0) for name in settings.names}
