"""Response models of privacy and audit (shared/api/routes/privacy.py, audit.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link

from shared.api.contract.customers import LedgerEntry


class CustomerRef(BaseModel):
    """The customer with this email (found through the blind index; nothing was decrypted)."""

    customerId: str = Field(examples=["alice-42"])


class ErasureOutcome(BaseModel):
    """The personal data is erased (``alreadyErased`` on a repeat: nothing more was done)."""

    customerId: str = Field(examples=["alice-42"])
    erased: bool
    erasedAt: str = Field(examples=["2026-11-23T16:11:33.802659Z"])
    alreadyErased: bool = Field(examples=[False])


class DataExport(BaseModel):
    """Everything held about one customer (the access right): profile, balance, ledger, tier history."""

    tenantId: str = Field(examples=["sandbox"])
    customerId: str = Field(examples=["alice-42"])
    exportedAt: str = Field(examples=["2026-11-23T16:11:33.802659Z"])
    profile: dict[str, Any] = Field(description="the profile with its decrypted personal fields")
    balance: dict[str, Any] | None = Field(description="the read model's balance; null before the first entry")
    ledger: list[LedgerEntry]
    tierHistory: list[dict[str, Any]]


class Actor(BaseModel):
    """Who acted: the key and its role (null key: the system)."""

    keyId: str | None = Field(examples=["e5fe4gprsorz"])
    role: str | None = Field(examples=["tenant-admin"])


class AuditRecord(BaseModel):
    """One record of the hash chain: each names the hash of the one before."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "audit-000000000001", "tenantId": "sandbox", "seq": 1, "at": "2026-11-23T16:11:33.802659Z",
        "actor": {"keyId": "e5fe4gprsorz", "role": "tenant-admin"}, "action": "apikey.created",
        "target": "apikey:gtxq3vbymos3", "before": None, "after": {"role": "merchant", "label": ""},
        "reason": None, "prevHash": "0" * 64, "hash": "9f86d081884c7d65"}]})

    id: str
    tenantId: str
    seq: int
    at: str
    actor: Actor
    action: str = Field(description="a dotted verb such as apikey.created or ruleset.activated")
    target: str | None = None
    before: Any = None
    after: Any = None
    reason: str | None = None
    prevHash: str
    hash: str


class AuditPage(BaseModel):
    """Audit records, oldest first; ``next`` links to the next page (null on the last)."""

    items: list[AuditRecord]
    next: str | None = next_link()


class ChainCheck(BaseModel):
    """The chain's verification: ``ok``, or the first broken link and what is wrong with it."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"ok": True, "tenantId": "sandbox", "records": 12, "head": "9f86d081884c7d65"}]})

    ok: bool
    tenantId: str
    records: int = Field(description="records checked")
    head: str | None = Field(default=None, description="the newest record's hash (when ok)")
    brokenAt: int | None = Field(default=None, description="seq of the first broken record (when not ok)")
    problem: str | None = None
