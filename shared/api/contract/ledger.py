"""Response models of the ledger's hash-chain verification (shared/api/routes/ledger.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChainProblem(BaseModel):
    """One break of a hash chain or of the tenant digest."""

    kind: str = Field(description="chain-gap, chain-prev-hash, chain-hash, chain-unhashed, chain-genesis, "
                                  "digest-root, digest-head-missing, digest-head-changed, digest-unreadable",
                      examples=["chain-hash"])
    detail: str
    seq: int | None = None


class CustomerChain(BaseModel):
    """A customer's chain: its length, its head and what is broken (nothing, when ``ok``)."""

    customerId: str
    ok: bool
    entries: int = Field(examples=[12])
    headSeq: int = Field(examples=[12])
    headHash: str | None = Field(default=None, examples=["9f2c…"])
    problems: list[ChainProblem]


class Digest(BaseModel):
    """The newest daily tenant digest the ledger was checked against."""

    day: str | None = None
    root: str | None = None
    customers: int | None = None
    auditSeq: int | None = None


class LedgerVerification(BaseModel):
    """The hash chains of one customer (``customerId``) or of the whole tenant, and the tenant digest."""

    tenantId: str
    ok: bool
    customers: int = Field(description="customers checked", examples=[42])
    entries: int = Field(description="entries checked", examples=[1234])
    broken: list[CustomerChain] = Field(description="customers whose chain is broken")
    digest: Digest | None = None
    digestProblems: list[ChainProblem]
