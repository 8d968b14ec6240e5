"""Response models of the review queue (shared/api/routes/reviews.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import next_link

_REVIEW = {"reviewId": "rv-0f3a9c1d0b8e7a65c4d2e1f0", "tenantId": "sandbox", "kind": "earn",
           "customerId": "alice-42", "entryId": "e-000000000007",
           "reasons": [{"code": "velocity.customer.points_per_day", "message": "over 5000 points in a day"}],
           "details": {"orderId": "ord-1042", "points": 6200}, "status": "open",
           "createdAt": "2026-11-23T16:11:33.802659Z"}


class Review(BaseModel):
    """A review: what was held and why, and its decision once made."""

    model_config = ConfigDict(json_schema_extra={"examples": [_REVIEW]})

    reviewId: str
    tenantId: str
    kind: str = Field(description="earn (a held order) or redemption")
    customerId: str
    entryId: str
    reasons: list[Any]
    details: dict[str, Any] | None = None
    status: str = Field(description="open, approved, rejected or withdrawn")
    createdAt: str
    decidedAt: str | None = None
    decidedBy: dict[str, Any] | None = None
    note: str | None = None
    result: dict[str, Any] | None = Field(default=None, description="what the decision wrote (new ledger entries)")


class ReviewList(BaseModel):
    """Reviews, oldest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_REVIEW], "next": None}]})

    items: list[Review]
    next: str | None = next_link()


class ReviewCustomer(BaseModel):
    """The customer's balances and most recent ledger entries, to decide with."""

    customerId: str
    available: int
    pending: int
    reserved: int
    lifetimeEarned: int
    ordersCredited: int | None = None
    recentEntries: list[dict[str, Any]]


class ReviewInspection(Review):
    """The review and the customer's balances and recent history."""

    model_config = ConfigDict(json_schema_extra={"examples": [dict(_REVIEW, customer={
        "customerId": "alice-42", "available": 383, "pending": 6200, "reserved": 0, "lifetimeEarned": 383,
        "ordersCredited": 3, "recentEntries": [{"id": "e-000000000007", "seq": 7, "entryType": "EARN",
                                                "status": "PENDING", "signedAmount": 6200}]})]})

    customer: ReviewCustomer
