"""Typed inputs and outputs of the rule set lifecycle service (pydantic).

HTTP routes are thin: they parse a body into one of these inputs, call a
``RuleSetService`` method and serialise the output (``by_alias=True`` gives
camelCase JSON).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.domain.inputs import DecimalText, WindowDate
from shared.domain.orders import EntityId, Order
from shared.rules.limits import MAX_SOURCE_BYTES

ReasonCode = Literal["new-programme", "campaign", "correction", "rollback", "experiment", "policy", "other"]
ReasonText = Annotated[str, StringConstraints(min_length=3, max_length=500, strip_whitespace=True)]
Source = Annotated[str, StringConstraints(max_length=MAX_SOURCE_BYTES)]
Arm = Literal["A", "B"]
# An experiment's treatment share: "0" to "1", at most four decimals (shared.domain.inputs).
Share = DecimalText(1, 4, "the treatment's share of customers, \"0\" to \"1\", e.g. \"0.25\"")
DraftId = Annotated[str, StringConstraints(max_length=64)]
# What a simulated customer may carry, bounded like a registered profile (shared.app.customers).
TierLabel = Annotated[str, StringConstraints(max_length=64)]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,31}$", max_length=32)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Reason(_Model):
    code: ReasonCode
    text: ReasonText


class Diagnostic(_Model):
    rule: str | None
    line: int
    column: int
    message: str
    hint: str | None = None                         # the suggestion, e.g. "did you mean order.total?"
    source_line: str | None = Field(default=None, alias="sourceLine")
    rendered: str | None = None                     # where, what, the line with a caret under the column, the hint


class ValidationReport(_Model):
    ok: bool
    kind: str | None = None                         # error code when not ok, e.g. "rule-type-error"
    diagnostics: tuple[Diagnostic, ...] = ()
    cost: int | None = None
    budget: int
    cost_per_rule: dict[str, int] = Field(default_factory=dict, alias="costPerRule")
    rendered: str | None = None                     # the compiler-style message, with carets


class DraftInput(_Model):
    rule_set_id: EntityId = Field(alias="ruleSetId")
    source: Source
    based_on_version: int | None = Field(default=None, alias="basedOnVersion", ge=1)


class Draft(_Model):
    draft_id: str = Field(alias="draftId")
    rule_set_id: str = Field(alias="ruleSetId")
    source: str
    based_on_version: int | None = Field(default=None, alias="basedOnVersion")
    updated_at: datetime = Field(alias="updatedAt")
    updated_by: str = Field(alias="updatedBy")


class SaveVersionInput(_Model):
    """Save a draft (by id) or a source text as the next immutable version."""

    rule_set_id: EntityId = Field(alias="ruleSetId")
    source: Source | None = None
    draft_id: DraftId | None = Field(default=None, alias="draftId")
    reason: Reason


class VersionInfo(_Model):
    rule_set_id: str = Field(alias="ruleSetId")
    version: int
    author: str
    created_at: datetime = Field(alias="createdAt")
    reason: Reason
    cost: int
    rules: int


class Version(VersionInfo):
    source: str


class VersionDiff(_Model):
    rule_set_id: str = Field(alias="ruleSetId")
    from_version: int = Field(alias="fromVersion")
    to_version: int = Field(alias="toVersion")
    diff: str


class VersionRef(_Model):
    rule_set_id: EntityId = Field(alias="ruleSetId")
    version: int = Field(ge=1)


class ActivateInput(_Model):
    target: VersionRef
    reason: Reason


class ExperimentInput(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    control: VersionRef                              # arm "A"
    treatment: VersionRef                            # arm "B"
    treatment_share: Share = Field(alias="treatmentShare", ge=0, le=1)
    reason: Reason


class Experiment(_Model):
    experiment_id: str = Field(alias="experimentId")
    name: str
    control: VersionRef
    treatment: VersionRef
    treatment_share: Decimal = Field(alias="treatmentShare")
    status: Literal["running", "promoted", "stopped"]
    started_at: datetime = Field(alias="startedAt")
    ended_at: datetime | None = Field(default=None, alias="endedAt")
    winner: Arm | None = None


class ActiveRuleSet(_Model):
    """What ingestion applies to a tenant now."""

    rule_set_id: str = Field(alias="ruleSetId")
    version: int
    activated_at: datetime = Field(alias="activatedAt")
    activated_by: str = Field(alias="activatedBy")
    reason: Reason
    experiment: Experiment | None = None


class Activation(_Model):
    rule_set_id: str = Field(alias="ruleSetId")
    version: int
    at: datetime
    by: str
    reason: Reason
    previous_version: VersionRef | None = Field(default=None, alias="previousVersion")


class SimulationCustomer(_Model):
    customer_id: EntityId = Field(alias="customerId")
    join_date: WindowDate = Field(alias="joinDate")
    tier: TierLabel | None = None
    tags: tuple[Tag, ...] = Field(default=(), max_length=50)
    lifetime_points: int = Field(default=0, alias="lifetimePoints", ge=0)
    order_count: int = Field(default=0, alias="orderCount", ge=0)


class SimulationCase(_Model):
    order: Order
    customer: SimulationCustomer


class SimulationInput(_Model):
    """Simulate a source text, a draft or a saved version against orders; writes nothing."""

    source: Source | None = None
    draft_id: DraftId | None = Field(default=None, alias="draftId")
    version: VersionRef | None = None
    cases: tuple[SimulationCase, ...] = Field(min_length=1, max_length=500)
    evaluator: Literal["closure", "wasm"] | None = None


class SimulatedLot(_Model):
    points: int
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    rule: str | None = None


class SimulatedOrder(_Model):
    order_id: str = Field(alias="orderId")
    customer_id: str = Field(alias="customerId")
    points: int
    lots: tuple[SimulatedLot, ...]
    tags_to_add: tuple[str, ...] = Field(alias="tagsToAdd")
    trace: tuple[dict[str, Any], ...]


class SimulationReport(_Model):
    total_points: int = Field(alias="totalPoints")
    orders: tuple[SimulatedOrder, ...]
