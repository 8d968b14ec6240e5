"""Tenants and their settings: the programme a merchant runs on Accrue."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.domain.money import MINOR_UNITS
from shared.domain.orders import EntityId
from shared.domain.wallets import WalletSettings
from shared.expiry.policy import ExpiryPolicy
from shared.ratelimit.policy import RateLimits
from shared.transfers.policy import TransferLimits

Evaluator = Literal["closure", "wasm"]


_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


class TenantSettings(BaseModel):
    """What a tenant configures. Stored in the ``tenants`` container."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    tenant_id: EntityId = Field(alias="tenantId")
    name: str = Field(min_length=1, max_length=200)
    # Orders must be in the tenant's settlement currency: a points rate per unit of
    # mixed currencies would give different points for the same spend.
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    time_zone: str = Field(default="UTC", alias="timeZone", max_length=64)
    # The interim earning rule (until a rule set is active): points per whole
    # currency unit, rounded down per order.
    points_per_unit: Decimal = Field(default=Decimal(1), alias="pointsPerUnit", ge=0, le=1000, max_digits=10, decimal_places=4)
    evaluator: Evaluator = "closure"
    # How long points stay valid when the earning rule gives no expiry (shared/expiry/policy.py,
    # docs/expiry.md). None: they never expire. Stamped on each lot when it is written.
    expiry_policy: ExpiryPolicy | None = Field(default=None, alias="expiryPolicy")
    # The return window (shared/pending/window.py, docs/pending.md): points earned on an order stay
    # pending (not spendable) for this many local calendar days; 0: available at once (as before).
    pending_days: int = Field(default=0, alias="pendingDays", ge=0, le=365)
    # Named wallets (sub-balances) with their own expiry policy and a spending order
    # (shared/domain/wallets.py, docs/wallets.md). None: no wallets, exactly as before.
    wallets: WalletSettings | None = None
    # API rate limits per key and per tenant (shared/ratelimit, docs/api-policies.md). None: the defaults.
    rate_limits: RateLimits | None = Field(default=None, alias="rateLimits")
    # Transfers between members (shared/transfers, docs/transfers.md). None: the defaults.
    transfer_limits: TransferLimits | None = Field(default=None, alias="transferLimits")
    # A sandbox tenant (shared.app.sample_data): sample data, the partner simulator instead of
    # real partners, GraphQL introspection allowed. Set at provisioning only; never changed.
    sandbox: bool = False

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value not in MINOR_UNITS:
            raise ValueError(f"unknown currency {value!r}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        # Only a zone of the IANA database by its name: not a folder of it ("America" raised
        # IsADirectoryError, a 500), not the host's own ``localtime`` (a different zone on each
        # machine), nor ``Factory``, ``posixrules`` or the ``posix/``/``right/`` copies.
        if value in _NOT_ZONES or value.startswith(("posix/", "right/")) or value not in _zones():
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Paris")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Paris") from None
        return value

    def expiry_policy_of(self, wallet: str | None) -> ExpiryPolicy | None:
        """The policy that stamps a lot credited to ``wallet``: the wallet's own, else the tenant's."""
        if self.wallets is not None and wallet is not None and wallet in self.wallets.names:
            own = self.wallets.wallet(wallet).expiry_policy
            if own is not None:
                return own
        return self.expiry_policy

    def wallet_of(self, wallet: str | None) -> str | None:
        """The wallet a credit naming ``wallet`` goes to: None without wallets; the default
        when it names none or one the tenant does not have."""
        if self.wallets is None:
            return None
        return wallet if wallet in self.wallets.names else self.wallets.default

    def to_doc(self) -> dict:
        return {"id": self.tenant_id, "pk": self.tenant_id, "docType": "tenant",
                **self.model_dump(mode="json", by_alias=True)}

    @classmethod
    def from_doc(cls, doc: dict) -> "TenantSettings":
        return cls.model_validate({k: v for k, v in doc.items() if k not in ("id", "pk", "docType", "_etag", "_ts")})
