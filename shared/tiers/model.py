"""A tenant's tier programme: the tiers, how a customer qualifies, when downgrades
are decided and how long a customer keeps a tier after falling below it.

``TierProgram`` is the API body and the stored form (camelCase aliases). Shape
problems (a missing field, a negative threshold, a multiplier out of bounds) are
pydantic errors; ``check_program`` adds the checks across tiers and raises one
``ValidationFailed`` naming every bad field (``tiers[2].minPoints``), so a bad
table is refused whole and nothing is written.

What a valid programme guarantees (the evaluation relies on it):

* 1..``MAX_TIERS`` tiers, names unique, listed from lowest to highest;
* every tier uses the same qualifying measures (points, spend, or both), and each
  measure's thresholds are strictly increasing: so the tiers a customer
  qualifies for are always the lowest *k*, and "the highest tier reached" is
  well defined whichever measure reached it;
* multipliers are in ``(0, MAX_MULTIPLIER]`` with at most four decimals (the
  rule language's fixed-point precision).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from shared.domain.inputs import DecimalText
from shared.domain.money import MAX_MINOR_UNITS
from shared.errors import FieldProblem, ValidationFailed

MAX_TIERS = 20
MAX_MULTIPLIER = Decimal(10)
MAX_THRESHOLD_POINTS = 10**12
MAX_THRESHOLD_SPEND = Decimal(10**12)
MAX_WINDOW_MONTHS = 36
MAX_GRACE_DAYS = 3 * 366

TierName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$", max_length=32)]
# Spend in the tenant's currency over the window (up to 10^12, at most three decimals,
# the most any currency has); a multiplier up to 10 with the rule language's four decimals.
Spend = DecimalText(13, MAX_MINOR_UNITS, "spend in the tenant's currency, e.g. \"500.00\"", ge=0,
                    le=MAX_THRESHOLD_SPEND)
Multiplier = DecimalText(2, 4, "e.g. \"1.5\"")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TierDefinition(_Model):
    """One tier: its name (what ``customer.tier`` reads), thresholds and benefits."""

    name: TierName
    display_name: str | None = Field(default=None, alias="displayName", min_length=1, max_length=100)
    # Qualifying thresholds over the rolling window; a customer qualifies when any given one is reached.
    min_points: StrictInt | None = Field(default=None, alias="minPoints", ge=0, le=MAX_THRESHOLD_POINTS)
    min_spend: Spend | None = Field(default=None, alias="minSpend")
    # Benefit the rule language reads as ``customer.tier_multiplier``.
    multiplier: Multiplier = Field(default=Decimal(1), gt=0, le=MAX_MULTIPLIER)
    perks: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=20)

    def measures(self) -> tuple[str, ...]:
        return tuple(m for m, v in (("points", self.min_points), ("spend", self.min_spend)) if v is not None)


class MonthlyEvaluation(_Model):
    frequency: Literal["monthly"]
    # Up to 28, so every month has the day.
    day_of_month: int = Field(default=1, alias="dayOfMonth", ge=1, le=28)


class YearlyEvaluation(_Model):
    frequency: Literal["yearly"]
    month: int = Field(default=1, ge=1, le=12)
    day: int = Field(default=1, ge=1, le=28)


Evaluation = Annotated[Union[MonthlyEvaluation, YearlyEvaluation], Field(discriminator="frequency")]


class NoGrace(_Model):
    kind: Literal["none"]


class NextEvaluationGrace(_Model):
    """Kept through the first evaluation that finds the customer below; lost at the next one."""

    kind: Literal["nextEvaluation"]


class DaysGrace(_Model):
    """Kept until ``days`` days after the evaluation that first found the customer below."""

    kind: Literal["days"]
    days: int = Field(ge=1, le=MAX_GRACE_DAYS)


Grace = Annotated[Union[NoGrace, NextEvaluationGrace, DaysGrace], Field(discriminator="kind")]


class TierProgram(_Model):
    window_months: int = Field(default=12, alias="windowMonths", ge=1, le=MAX_WINDOW_MONTHS)
    tiers: list[TierDefinition] = Field(min_length=1, max_length=MAX_TIERS)
    evaluation: Evaluation = Field(default_factory=lambda: MonthlyEvaluation(frequency="monthly"))
    grace: Grace = Field(default_factory=lambda: NextEvaluationGrace(kind="nextEvaluation"))

    def rank(self, name: str | None) -> int:
        """The tier's position (0 = lowest); -1 for no tier or a name not in the programme."""
        for index, tier in enumerate(self.tiers):
            if tier.name == name:
                return index
        return -1

    def tier(self, name: str | None) -> TierDefinition | None:
        index = self.rank(name)
        return self.tiers[index] if index >= 0 else None

    def to_json(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def check_program(program: TierProgram) -> TierProgram:
    """The checks across tiers; every problem is named, none is written."""
    problems: list[FieldProblem] = []
    seen: dict[str, int] = {}
    for index, tier in enumerate(program.tiers):
        if tier.name in seen:
            problems.append(FieldProblem(f"tiers[{index}].name",
                                         f"duplicate tier name {tier.name!r} (also tiers[{seen[tier.name]}])"))
        else:
            seen[tier.name] = index
        if not tier.measures():
            problems.append(FieldProblem(f"tiers[{index}]", "needs a qualifying threshold: minPoints or minSpend"))
    first = program.tiers[0].measures()
    for index, tier in enumerate(program.tiers[1:], start=1):
        if tier.measures() and first and tier.measures() != first:
            problems.append(FieldProblem(
                f"tiers[{index}]", f"every tier must qualify by the same measures as tiers[0] ({' and '.join(first)})"))
    for measure, attr, alias in (("points", "min_points", "minPoints"), ("spend", "min_spend", "minSpend")):
        previous: tuple[int, object] | None = None
        for index, tier in enumerate(program.tiers):
            value = getattr(tier, attr)
            if value is None:
                continue
            if previous is not None and not value > previous[1]:
                problems.append(FieldProblem(
                    f"tiers[{index}].{alias}",
                    f"thresholds must increase strictly from the lowest tier up: {value} is not above "
                    f"tiers[{previous[0]}].{alias} ({previous[1]})"))
            previous = (index, value)
    if problems:
        raise ValidationFailed(f"the tier table is invalid ({len(problems)} problem(s)); nothing was saved", problems)
    return program
