"""Response models of the orders routes (shared/api/routes/orders.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import DryRunnable

_STATUS_EXAMPLE = {"orderId": "ord-1001", "customerId": "alice-42", "status": "credited", "points": 249,
                   "transactionId": "tx-ac9c64c4", "ruleSetId": "rate:10",
                   "acceptedAt": "2026-11-23T16:11:33.826649Z", "decidedAt": "2026-11-23T16:11:33.858929Z",
                   "statusUrl": "/v1/orders/ord-1001"}


class OrderReason(BaseModel):
    """Why an order was rejected or held: a code, words, and for a hold each limit it went over."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(examples=["fraud-hold"])
    detail: str | None = Field(default=None, examples=["100 points in the last hour exceed the limit of 50"])
    reasons: list[dict[str, Any]] | None = None


class OrderStatus(DryRunnable):
    """The order's status: queued, or its outcome (credited, held or rejected, and why)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_STATUS_EXAMPLE]})

    orderId: str
    customerId: str
    status: Literal["queued", "credited", "held", "rejected"] = Field(
        description="queued until ingestion decides; then credited, held (fraud review) or rejected")
    points: int | None = Field(default=None, description="points earned (credited or held)")
    transactionId: str | None = None
    ruleSetId: str | None = Field(default=None, description="the rule set that computed the points")
    ruleSetVersion: int | None = None
    arm: str | None = Field(default=None, description="the experiment arm, when an A/B experiment ran")
    reason: OrderReason | None = Field(default=None, description="why the order was rejected or held")
    acceptedAt: str | None = None
    decidedAt: str | None = None
    statusUrl: str = Field(description="where to read this status again")


class OrderBatchStatus(DryRunnable):
    """The status of each order of the batch, in the batch's order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"orders": [_STATUS_EXAMPLE]}]})

    orders: list[OrderStatus]


class RefundOutcome(DryRunnable):
    """The refund's outcome: the points clawed back and the balance after (``duplicate`` on a replay)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "refunded", "orderId": "ord-1001", "customerId": "alice-42", "refundId": "rf-1",
        "pointsClawedBack": 141, "pointsExcusedExpired": 0, "refundedTotal": "14.10", "balanceAfter": 242,
        "entryIds": ["e-000000000004"], "transactionId": "tx-22eb64d8", "duplicate": False}]})

    status: Literal["refunded"]
    orderId: str
    customerId: str
    refundId: str
    pointsClawedBack: int
    pointsExcusedExpired: int | None = Field(default=None, description="refunded share of points that had expired")
    pointsCancelledPending: int | None = Field(
        default=None, description="pending points cancelled (a refund inside the return window, docs/pending.md)")
    refundedTotal: str = Field(description="the order's refunded amount so far (a decimal string)")
    balanceAfter: int
    entryIds: list[str] | None = None
    transactionId: str
    duplicate: bool = Field(description="true when this refundId was already applied: nothing new was written")
