"""Response models of fraud and reconciliation (shared/api/routes/fraud.py); the
fraud policy answers with its own model (``shared.fraud.policy.FraudPolicy``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Drift(BaseModel):
    """One disagreement between the ledger and what was derived from it."""

    tenantId: str
    customerId: str
    kind: str = Field(description="running-balance, running-pending, ..., or a read model behind the ledger",
                      examples=["running-balance"])
    expected: Any = None
    found: Any = None
    entryId: str | None = None
    seq: int | None = None
    entriesDiverging: int = 1


class Reconciliation(BaseModel):
    """The tenant's balances recomputed from the ledger: ``ok``, or each drift found (nothing is patched)."""

    ok: bool
    customers: int = Field(description="customers checked", examples=[42])
    entries: int = Field(description="ledger entries replayed", examples=[1234])
    stale: int = Field(description="read models behind the ledger (catching up, not drift)", examples=[0])
    drifts: list[Drift]
