"""Wallets (sub-balances): a tenant's named pots of points (docs/wallets.md).

A tenant may define wallets, e.g. ``main``, ``promo``, ``partner-air``, each with
its own expiry policy, a default wallet (credited when nothing names one) and a
spending order (the order debits draw from wallets when they name none). A
tenant that defines none has no wallets at all: its ledger entries carry no
wallet fields and everything behaves exactly as before.

What is checked here (a tenant settings change that fails any of it is a 422
and changes nothing): 1 to ``MAX_WALLETS`` wallets with unique names of
``WALLET_NAME``; the spending order names each wallet exactly once; the default
is one of them. Renaming or removing a wallet that holds points is refused by
the tenant settings route (shared/api/routes/tenants.py) only in so far as the
names must stay a superset: wallets are never removed once defined.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.expiry.policy import ExpiryPolicy

WALLET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MAX_WALLETS = 10
# A wallet named in a request body (a redemption, a conversion, an adjustment).
WalletName = Annotated[str, StringConstraints(pattern=WALLET_NAME.pattern, max_length=32)]


class Wallet(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: WalletName
    # Points credited to this wallet expire by this policy (None: the tenant's expiryPolicy).
    expiry_policy: ExpiryPolicy | None = Field(default=None, alias="expiryPolicy")


class WalletSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    wallets: tuple[Wallet, ...] = Field(min_length=1, max_length=MAX_WALLETS)
    default: WalletName
    spending_order: tuple[WalletName, ...] = Field(alias="spendingOrder", max_length=MAX_WALLETS)

    @model_validator(mode="after")
    def _shape(self) -> "WalletSettings":
        names = [w.name for w in self.wallets]
        if len(set(names)) != len(names):
            raise ValueError("wallet names must be unique")
        if self.default not in names:
            raise ValueError(f"the default wallet {self.default!r} is not one of the wallets")
        if sorted(self.spending_order) != sorted(names):
            raise ValueError("spendingOrder must name every wallet exactly once")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.wallets)

    def wallet(self, name: str) -> Wallet:
        return next(w for w in self.wallets if w.name == name)
