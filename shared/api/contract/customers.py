"""Response models of the customers routes (shared/api/routes/customers.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import DryRunnable, next_link

from shared.ledger.entries import EntryType

_CUSTOMER = {"customerId": "alice-42", "joinDate": "2026-11-01", "tags": ["newsletter"], "tier": None,
             "createdAt": "2026-11-23T16:11:33.802659Z"}


class Customer(BaseModel):
    """A customer (personal fields only for keys with the personal-data capability)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CUSTOMER]})

    customerId: str
    joinDate: str | None = None
    tags: list[str] | None = None
    tier: str | None = None
    createdAt: str | None = None
    erased: bool | None = Field(default=None, description="true once the personal data was erased")
    erasedAt: str | None = None
    personalData: dict[str, Any] | None = Field(
        default=None, description="decrypted personal fields (merchant and tenant-admin keys only)")


class CustomerPage(BaseModel):
    """One page of customers by id; ``next`` links to the next page (null on the last)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_CUSTOMER], "next": None}]})

    items: list[Customer]
    next: str | None = next_link()


class Balance(BaseModel):
    """The balance now (read model, ``dataAsOf`` says how fresh) or as of a past instant (``source: ledger``)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customerId": "alice-42", "available": 249, "pending": 0, "reserved": 0, "lifetimeEarned": 249,
        "ordersCredited": 1, "source": "read-model", "dataAsOf": "2026-11-23T16:11:38.003570Z"}]})

    customerId: str
    available: int = Field(description="points the customer can spend")
    pending: int = Field(description="points held (a fraud check, or the return window until they mature: "
                                     "docs/pending.md): not spendable")
    reserved: int = Field(description="points in open redemption reservations")
    lifetimeEarned: int
    ordersCredited: int | None = Field(default=None, description="read model only")
    wallets: dict[str, int] | None = Field(
        default=None, description="available points per wallet (tenants with wallets: docs/wallets.md)")
    asOf: str | None = Field(default=None, description="the instant asked for (ledger answers only)")
    source: Literal["read-model", "ledger"]
    dataAsOf: str | None = Field(description="how fresh this answer is")


class LedgerEntry(BaseModel):
    """One ledger entry (append-only: a correction is a new entry that references the old one)."""

    id: str
    seq: int
    transactionId: str | None = None
    entryType: EntryType
    signedAmount: int
    runningBalance: int | None = None
    runningPending: int | None = None
    runningReserved: int | None = None
    referenceOrderId: str | None = None
    referenceEntryId: str | None = None
    settlesEntryId: str | None = None
    ruleSetId: str | None = None
    ruleSetVersion: int | None = None
    arm: str | None = None
    status: str | None = Field(default=None, examples=["COMMITTED"])
    createdAt: str | None = None
    attributes: dict[str, Any] | None = None
    pendingState: Literal["pending", "matured", "cancelled", "approved", "rejected"] | None = Field(
        default=None, description="PENDING credits only: pending still, or how they were settled (docs/pending.md)")
    wallet: str | None = Field(default=None, description="the wallet a credit went to or a debit named")
    walletSplit: dict[str, int] | None = Field(default=None, description="signed points per wallet")
    runningWallets: dict[str, int] | None = Field(default=None, description="available points per wallet after it")
    tenantId: str
    customerId: str


class LedgerPage(BaseModel):
    """Ledger entries, newest first; ``next`` links to the next page (null on the last)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [{
        "id": "e-000000000003", "seq": 3, "transactionId": "tx-8d3c1fcf", "entryType": "EARN", "signedAmount": 50,
        "runningBalance": 383, "runningPending": 0, "runningReserved": 0, "referenceOrderId": "ord-1003",
        "ruleSetId": "rate:10", "status": "COMMITTED", "createdAt": "2026-11-23T16:11:42.450686Z",
        "attributes": {"rule": "rate:10"}, "tenantId": "sandbox", "customerId": "alice-42"}],
        "next": "/v1/customers/alice-42/ledger?limit=1&cursor="
                "eyJrIjpbMl0sInIiOiIvdjEvY3VzdG9tZXJzL3tjdXN0b21lcklkfS9sZWRnZXIiLCJ2IjoxfQ.3c1d2e9a7b40"}]})

    items: list[LedgerEntry]
    next: str | None = next_link()


class AdjustmentOutcome(DryRunnable):
    """The adjustment's outcome (``duplicate`` when the idempotency key was already used)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "adjusted", "customerId": "alice-42", "points": 100, "balanceAfter": 342,
        "actorKeyId": "e5fe4gprsorz", "entryIds": ["e-000000000005"], "transactionId": "tx-1bb54c25",
        "duplicate": False}]})

    status: Literal["adjusted"]
    customerId: str
    points: int
    balanceAfter: int
    actorKeyId: str
    entryIds: list[str] | None = None
    transactionId: str
    duplicate: bool


class TransferPart(BaseModel):
    """Points of the transfer that expire on one date (``expiresAt`` null: they never expire)."""

    points: int
    expiresAt: str | None = None


class TransferOutcome(DryRunnable):
    """A completed transfer (``duplicate`` when the idempotency key was already used): the lots moved,
    grouped by expiry date, and the sender's available balance after it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "transferId": "tr-5d41402abc4b2a76b9719d91", "status": "completed", "fromCustomerId": "alice-42",
        "toCustomerId": "bob-7", "points": 150, "parts": [{"points": 100, "expiresAt": "2027-11-30T23:00:00Z"},
                                                          {"points": 50, "expiresAt": None}],
        "balanceAfter": 92, "createdAt": "2026-11-23T16:11:33.802659Z", "duplicate": False}]})

    transferId: str
    status: Literal["completed"]
    fromCustomerId: str
    toCustomerId: str
    points: int
    parts: list[TransferPart]
    balanceAfter: int
    createdAt: str | None = None
    duplicate: bool


class TransferView(BaseModel):
    """A transfer read back by either party. ``pending``: recorded, nothing moved yet;
    ``in-progress``: debited from the sender, the credit still to come (it always comes: the
    request or the recovery job drives it); ``completed``. ``parts`` once debited;
    ``balanceAfter`` (the sender's available balance after the debit) for the sender only."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "transferId": "tr-5d41402abc4b2a76b9719d91", "status": "completed", "fromCustomerId": "alice-42",
        "toCustomerId": "bob-7", "points": 150, "parts": [{"points": 150, "expiresAt": None}],
        "balanceAfter": 92, "createdAt": "2026-11-23T16:11:33.802659Z"}]})

    transferId: str
    status: Literal["pending", "in-progress", "completed"]
    fromCustomerId: str
    toCustomerId: str
    points: int
    parts: list[TransferPart] | None = None
    balanceAfter: int | None = None
    createdAt: str | None = None
