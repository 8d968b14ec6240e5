"""The manual review queue over HTTP (tenant-admin, capability ``admin``): list,
inspect, approve, reject. Held earns (kind ``earn``) and redemptions under review
(kind ``redemption``) alike; the queue is shared.reviews, the decisions are new
ledger entries. See docs/fraud.md."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import op
from shared.api.contract.reviews import Review, ReviewInspection, ReviewList
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.platform import Platform
from shared.reviews.queue import MAX_NOTE

router = APIRouter(tags=["reviews"])

ReviewId = Annotated[str, Path(pattern=r"^rv-[0-9a-f]{24}$", max_length=27, description="the review's id (rv-...)")]


class ReviewNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, min_length=1, max_length=MAX_NOTE,
                             description="why: kept on the review and in the audit log")


@router.get("/v1/reviews", summary="Reviews of the tenant, oldest first (tenant-admin)",
            **op("reviews.list", ReviewList))
def list_reviews(request: Request, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
                 status: Annotated[Literal["open", "approved", "rejected", "withdrawn"] | None, Query()] = "open",
                 kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9-]{0,31}$", max_length=32)] = None,
                 customerId: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)] = None,  # noqa: N803
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The tenant's reviews, oldest first, by status (open by default), kind and customer (capability
    ``admin``)."""
    found = p.reviews.list(who.tenant_id, status=status, kind=kind, customer_id=customerId, limit=None)
    return in_memory(request, who.tenant_id, found, limit, cursor, Order(("createdAt", "reviewId")))


@router.get("/v1/reviews/{reviewId}", summary="One review: why it was held and the customer's recent history",
            **op("reviews.get", ReviewInspection, errors=(404,)))
def inspect_review(reviewId: ReviewId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                   who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """One review: why it was held, and the customer's balances and recent history (capability ``admin``)."""
    return p.reviews.inspect(who.tenant_id, reviewId)


@router.post("/v1/reviews/{reviewId}/approve",
             summary="Approve: a held earn is credited, a redemption confirmed (new ledger entries)",
             **op("reviews.approve", Review, errors=(404, 409, 502)))
def approve_review(reviewId: ReviewId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                   who: Annotated[Principal, Depends(requires("admin"))],
                   body: Annotated[ReviewNote | None, Body()] = None) -> dict:
    """Approves: a held earn is credited, a redemption confirmed, as new ledger entries (capability ``admin``,
    audited). A decision is final: 409 on a decided review."""
    return p.reviews.approve(who.tenant_id, reviewId, who, body.note if body else None)


@router.post("/v1/reviews/{reviewId}/reject",
             summary="Reject: a held earn is voided, a redemption released (new ledger entries)",
             **op("reviews.reject", Review, errors=(404, 409)))
def reject_review(reviewId: ReviewId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                  who: Annotated[Principal, Depends(requires("admin"))],
                  body: Annotated[ReviewNote | None, Body()] = None) -> dict:
    """Rejects: a held earn is voided, a redemption released, as new ledger entries (capability ``admin``,
    audited). A decision is final: 409 on a decided review."""
    return p.reviews.reject(who.tenant_id, reviewId, who, body.note if body else None)
