"""The manual review queue over HTTP (tenant-admin, capability ``admin``): list,
inspect, approve, reject. Held earns (kind ``earn``) and redemptions under review
(kind ``redemption``) alike; the queue is shared.reviews, the decisions are new
ledger entries. See docs/fraud.md."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.api.deps import platform
from shared.api.pagination import SCAN_LIMIT, Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_PATTERN
from shared.platform import Platform
from shared.reviews.queue import MAX_NOTE

router = APIRouter(tags=["reviews"])

ReviewId = Annotated[str, Path(pattern=r"^rv-[0-9a-f]{24}$", description="the review's id (rv-...)")]


class ReviewNote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, min_length=1, max_length=MAX_NOTE,
                             description="why: kept on the review and in the audit log")


@router.get("/v1/reviews", summary="Reviews of the tenant, oldest first (tenant-admin)")
def list_reviews(request: Request, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
                 status: Annotated[Literal["open", "approved", "rejected", "withdrawn"] | None, Query()] = "open",
                 kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9-]{0,31}$")] = None,
                 customerId: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,  # noqa: N803
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    found = p.reviews.list(who.tenant_id, status=status, kind=kind, customer_id=customerId, limit=SCAN_LIMIT)
    return in_memory(request, found, limit, cursor, Order(("createdAt", "reviewId")))


@router.get("/v1/reviews/{reviewId}", summary="One review: why it was held and the customer's recent history")
def inspect_review(reviewId: ReviewId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                   who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    return p.reviews.inspect(who.tenant_id, reviewId)


@router.post("/v1/reviews/{reviewId}/approve",
             summary="Approve: a held earn is credited, a redemption confirmed (new ledger entries)")
def approve_review(reviewId: ReviewId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                   who: Annotated[Principal, Depends(requires("admin"))],
                   body: Annotated[ReviewNote | None, Body()] = None) -> dict:
    return p.reviews.approve(who.tenant_id, reviewId, who, body.note if body else None)


@router.post("/v1/reviews/{reviewId}/reject",
             summary="Reject: a held earn is voided, a redemption released (new ledger entries)")
def reject_review(reviewId: ReviewId, p: Annotated[Platform, Depends(platform)],  # noqa: N803
                  who: Annotated[Principal, Depends(requires("admin"))],
                  body: Annotated[ReviewNote | None, Body()] = None) -> dict:
    return p.reviews.reject(who.tenant_id, reviewId, who, body.note if body else None)
