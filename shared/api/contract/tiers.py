"""Response models of tiers and expiry (shared/api/routes/tiers.py, expiries.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link


class TierSchedule(BaseModel):
    """When the programme was and will be evaluated, in the tenant's time zone."""

    timeZone: str = Field(examples=["Europe/Paris"])
    lastEvaluationAt: str | None = None
    lastRunAt: str | None = None
    lastReport: dict[str, Any] | None = None
    nextEvaluationAt: str = Field(examples=["2026-12-01T00:00:00+01:00"])


class TierProgramView(BaseModel):
    """The tier programme (its tiers, qualifying window, evaluation and grace) and its version.

    The other members are those of the programme as it was saved (PUT /v1/tiers)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "version": 2, "updatedAt": "2026-11-23T16:11:33.802659Z",
        "tiers": [{"name": "silver", "threshold": {"points": 1000}, "multiplier": "1.25"},
                  {"name": "gold", "threshold": {"points": 5000}, "multiplier": "1.5"}],
        "windowMonths": 12}]})

    version: int
    updatedAt: str
    tiers: list[dict[str, Any]]
    schedule: TierSchedule | None = Field(default=None, description="GET only")


class CustomerTier(BaseModel):
    """A customer's tier, since when, its multiplier, the qualifying values and any grace period."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "customerId": "alice-42", "tier": "silver", "since": "2026-11-01T00:00:00Z", "multiplier": "1.25",
        "belowSince": None, "graceUntil": None, "qualifying": {"points": 1200, "spend": "240.00", "orders": 9},
        "nextEvaluationAt": "2026-12-01T00:00:00Z", "programVersion": 2}]})

    customerId: str
    tier: str | None
    since: str | None
    multiplier: str = Field(description="the points multiplier of the tier (a decimal string)")
    belowSince: str | None
    graceUntil: str | None
    qualifying: dict[str, Any] | None
    nextEvaluationAt: str | None
    programVersion: int | None


class TierChange(BaseModel):
    """One change of a customer's tier: from, to, why and when."""

    id: str | None = None
    customerId: str
    changeSeq: int
    fromTier: str | None
    toTier: str | None
    direction: str | None = Field(default=None, examples=["up"])
    reason: str | None = None
    trigger: str | None = None
    qualifying: dict[str, Any] | None = None
    evaluationAt: str | None = None
    belowSince: str | None = None
    programVersion: int | None = None
    at: str | None = None


class TierHistoryPage(BaseModel):
    """Tier changes, newest first; ``next`` links to the next page (null on the last)."""

    items: list[TierChange]
    next: str | None = next_link()


class ExpiryDay(BaseModel):
    """The points whose last valid day (in the tenant's time zone) is ``expiresOn``."""

    expiresOn: str = Field(examples=["2027-11-30"])
    expiresAt: str = Field(examples=["2027-12-01T00:00:00+01:00"])
    points: int = Field(examples=[249])
    lots: int = Field(examples=[1])
    overdue: bool = Field(description="past its day; the expiry job has not written the EXPIRE yet")


class UpcomingExpiries(BaseModel):
    """A customer's points that will expire, soonest first, from the ledger itself."""

    customerId: str = Field(examples=["alice-42"])
    timeZone: str = Field(examples=["Europe/Paris"])
    asOf: str = Field(examples=["2026-11-23T16:11:33.802659Z"])
    available: int
    deficit: int = Field(description="points owed (a clawback below zero), taken from the next points earned")
    neverExpiring: int
    items: list[ExpiryDay]
    next: str | None = next_link()
    more: bool = Field(description="true when more days exist than ``limit``")
