"""A tenant's transfer limits (``TenantSettings.transferLimits``; docs/transfers.md).

All in points, per sending customer. ``perDay`` counts the points the sender
transferred out since the start of the current day in the tenant's time zone,
read from the sender's own ledger inside the append's plan, so two concurrent
transfers of one sender cannot both slip under it (they race on the sender's
sequence number and the loser is re-planned with the winner counted).
``enabled: false`` turns transfers off for the tenant."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

MAX_TRANSFER = 10**12


class TransferLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: StrictBool = True
    min_points: StrictInt = Field(default=1, alias="minPoints", ge=1, le=MAX_TRANSFER,
                                  description="the smallest transfer")
    max_points: StrictInt | None = Field(default=None, alias="maxPoints", ge=1, le=MAX_TRANSFER,
                                         description="the largest single transfer (none: no limit)")
    per_day: StrictInt | None = Field(default=None, alias="perDay", ge=1, le=10**15,
                                      description="points one customer may transfer out per day, in the "
                                                  "tenant's time zone (none: no limit)")

    @model_validator(mode="after")
    def _ordered(self) -> "TransferLimits":
        if self.max_points is not None and self.max_points < self.min_points:
            raise ValueError("maxPoints must be at least minPoints")
        if self.per_day is not None and self.per_day < self.min_points:
            raise ValueError("perDay must be at least minPoints")
        return self
