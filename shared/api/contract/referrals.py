"""Response models of referrals (shared/api/routes/referrals.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReferralProgrammeView(BaseModel):
    """The tenant's referral programme: each party's points, what qualifies, the abuse limits."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "referrerPoints": 500, "refereePoints": 250, "minimumAmount": "20.00", "currency": "EUR",
        "capPerPeriod": 10, "periodDays": 30, "velocityPerDay": 3, "returnWindowDays": 30}]})

    referrerPoints: int
    refereePoints: int
    minimumAmount: str
    currency: str | None = None
    capPerPeriod: int | None = None
    periodDays: int
    velocityPerDay: int | None = None
    returnWindowDays: int
    condition: str | None = Field(default=None, description="a rule-language condition the order must meet")


class ReferralCode(BaseModel):
    """A customer's referral code (the same on every call)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"customerId": "alice-42", "code": "7KQ2ZD9M4"}]})

    customerId: str
    code: str = Field(description="8 symbols and a check symbol (docs/referrals.md)")


class Referral(BaseModel):
    """How a referee was referred, and where the referral stands."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "referralId": "rf-0f3a9c1d0b8e7a65c4d2e1f0", "referrerId": "alice-42", "customerId": "bob-7",
        "status": "qualified", "orderId": "o-1", "qualifiedAt": "2026-11-23T16:11:33.802659Z",
        "referrerPoints": 500, "refereePoints": 250, "createdAt": "2026-11-20T10:00:00.000000Z"}]})

    referralId: str
    referrerId: str
    customerId: str = Field(description="the referee")
    status: str = Field(description="pending, qualified, capped, held, rejected or reversed")
    orderId: str | None = None
    qualifiedAt: str | None = None
    referrerPoints: int | None = None
    refereePoints: int | None = None
    createdAt: str
    reversedAt: str | None = None
