"""The tenant's expiry policy and the calendar arithmetic of expiry dates.

A lot's expiry is stored on its ledger entry as ``attributes.expiresAt``: the UTC
instant from which its points are no longer valid. The rule language writes it
for "expiring in N days" / "expiring on D" (``shared.rules.result``); when the
rule gives none, ingestion stamps the tenant's policy here, at write time, so a
later policy change never rewrites history.

Expiry is day-granular in the tenant's time zone:

* a lot's *last valid day* is the local date of ``expiresAt`` minus a
  microsecond (an instant at local midnight belongs to the day before);
* the daily job, run on local day T, expires every lot whose last valid day is
  before T, i.e. whose ``expiresAt`` is at or before local midnight of T
  (``cutoff``). A lot ending mid-day is therefore valid to the end of that day.

Policies (all counted from the moment Accrue accepted the order, in the
tenant's time zone):

* ``never``: no expiry (the default when a tenant sets nothing);
* ``rolling`` with ``months`` (1..120): valid through the same day ``months``
  later (clamped to the month's end: 31 Jan + 1 month -> 28/29 Feb);
* ``endOfQuarter`` with ``quartersAfter`` (0..8, default 1): valid through the
  last day of the quarter ``quartersAfter`` quarters after the earning one
  (0: the earning quarter itself).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

ONE_MICROSECOND = timedelta(microseconds=1)


class ExpiryPolicy(BaseModel):
    """How long points earned without a rule-given expiry stay valid."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    kind: Literal["never", "rolling", "endOfQuarter"]
    months: int | None = Field(default=None, ge=1, le=120)
    quarters_after: int | None = Field(default=None, alias="quartersAfter", ge=0, le=8)

    @model_validator(mode="after")
    def _shape(self) -> "ExpiryPolicy":
        if self.kind == "rolling" and self.months is None:
            raise ValueError("a rolling policy needs months (1..120)")
        if self.kind != "rolling" and self.months is not None:
            raise ValueError(f"months applies to a rolling policy, not to {self.kind}")
        if self.kind != "endOfQuarter" and self.quarters_after is not None:
            raise ValueError(f"quartersAfter applies to an endOfQuarter policy, not to {self.kind}")
        return self

    def last_valid_day(self, earned_on: date) -> date | None:
        """The last local day on which points earned on ``earned_on`` are valid."""
        if self.kind == "never":
            return None
        if self.kind == "rolling":
            assert self.months is not None
            return add_months(earned_on, self.months)
        quarter = (earned_on.month - 1) // 3 + (1 if self.quarters_after is None else self.quarters_after)
        year, index = earned_on.year + quarter // 4, quarter % 4
        last_month = index * 3 + 3
        return date(year, last_month, calendar.monthrange(year, last_month)[1])

    def expires_at(self, earned_at: datetime, zone: ZoneInfo) -> datetime | None:
        """The UTC instant the points stop being valid (local midnight after the last valid day)."""
        day = self.last_valid_day(earned_at.astimezone(zone).date())
        return None if day is None else local_midnight(day + timedelta(days=1), zone)


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant local ``day`` starts in ``zone``."""
    return datetime.combine(day, time(0), zone).astimezone(timezone.utc)


def local_today(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()


def cutoff(now: datetime, zone: ZoneInfo) -> datetime:
    """Lots with ``expiresAt <= cutoff`` are expired as of ``now``'s local day."""
    return local_midnight(local_today(now, zone), zone)


def last_valid_day(expires_at: datetime, zone: ZoneInfo) -> date:
    return (expires_at - ONE_MICROSECOND).astimezone(zone).date()


def stamp(instant: datetime) -> str:
    """How an expiry instant is written on an entry (UTC, ISO 8601, as the rules write it)."""
    return instant.astimezone(timezone.utc).isoformat()


def policy_stamp(policy: ExpiryPolicy | None, time_zone: str, earned_at: datetime) -> str | None:
    """``attributes.expiresAt`` for points earned at ``earned_at`` under a tenant's policy (None: never)."""
    if policy is None:
        return None
    expires = policy.expires_at(earned_at, ZoneInfo(time_zone))
    return None if expires is None else stamp(expires)


def credit_expiry(tenant: Any, earned_at: datetime, wallet: str | None = None) -> dict[str, str]:
    """The ``attributes`` a credit written by a mechanic at ``earned_at`` carries for the
    tenant's expiry (``TenantSettings``; the wallet's own policy if it has one): ``expiresAt``,
    or nothing when the points never expire. Every writer of new points stamps through here or
    ``policy_stamp`` (ingestion, adjustments, imports, occasions, referrals): a credit left
    unstamped never expires, and customers spend their expiring points first and keep it."""
    expires = policy_stamp(tenant.expiry_policy_of(wallet), tenant.time_zone, earned_at)
    return {"expiresAt": expires} if expires is not None else {}
