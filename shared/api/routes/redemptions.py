"""Redemptions and conversions of a customer's points (merchants and tenant-admins:
capability ``ingest``, the one that already lets a key move points by sending
orders), and the tenant-admin's review decisions on large ones. See docs/spend.md.

Status codes: 201 a new redemption (reserved, completed, confirmed...), 202 one
waiting for review, 200 a replay of an earlier request (``duplicate: true``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.api.deprecation import deprecated
from shared.api.deps import platform
from shared.api.pagination import SCAN_LIMIT, Cursor, Order, in_memory
from shared.api.dryrun import dry_runnable
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_PATTERN
from shared.platform import Platform
from shared.spend.conversions import ConvertRequest
from shared.reviews import review_id
from shared.spend.redemptions import IN_REVIEW, REVIEW_KIND, RedeemRequest, SpendResult

router = APIRouter(tags=["redemptions"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="the tenant's own customer id")]
RedemptionId = Annotated[str, Path(pattern=r"^rd-[0-9a-f]{24}$")]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=500)


def _respond(result: SpendResult, response: Response) -> dict:
    if not result.created:
        response.status_code = 200
    elif result.body.get("status") == IN_REVIEW:
        response.status_code = 202
    return result.body


@router.post("/v1/customers/{customerId}/redemptions", status_code=201,
             summary="Redeem a reward or an amount of points (direct, or reserve then confirm/cancel)")
@dry_runnable
def redeem(customerId: CustomerId, body: RedeemRequest, response: Response, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    p.customers.get(who.tenant_id, customerId)
    return _respond(p.spend.redemptions.redeem(who.tenant_id, customerId, body, who.key_id), response)


@router.get("/v1/customers/{customerId}/redemptions", summary="A customer's redemptions, newest first")
def list_redemptions(request: Request, customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                     who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    p.customers.get(who.tenant_id, customerId)
    return in_memory(request, p.spend.redemptions.list(who.tenant_id, customerId, SCAN_LIMIT), limit, cursor,
                     Order(("createdAt", "redemptionId"), descending=True))


@router.get("/v1/customers/{customerId}/redemptions/{redemptionId}", summary="A redemption and its state")
def get_redemption(customerId: CustomerId, redemptionId: RedemptionId, p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    return p.spend.redemptions.get(who.tenant_id, customerId, redemptionId)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/confirm", status_code=201,
             summary="Confirm a reservation (before it expires)")
@dry_runnable
def confirm(customerId: CustomerId, redemptionId: RedemptionId, response: Response,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    return _respond(p.spend.redemptions.confirm(who.tenant_id, customerId, redemptionId), response)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/cancel", status_code=201,
             summary="Cancel a reservation: its points come back")
@dry_runnable
def cancel(customerId: CustomerId, redemptionId: RedemptionId, response: Response,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    return _respond(p.spend.redemptions.cancel(who.tenant_id, customerId, redemptionId), response)


@router.post("/v1/customers/{customerId}/conversions", status_code=201,
             summary="Convert points into a partner's currency through a conversion programme")
@dry_runnable
def convert(customerId: CustomerId, body: ConvertRequest, response: Response,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    p.customers.get(who.tenant_id, customerId)
    return _respond(p.spend.conversions.convert(who.tenant_id, customerId, body, who.key_id), response)


@router.get("/v1/redemption-reviews", summary="Open reviews of redemptions, oldest first (tenant-admin)")
@deprecated(since=datetime(2026, 12, 1, tzinfo=timezone.utc), sunset=datetime(2027, 6, 30, tzinfo=timezone.utc),
            successor="/v1/reviews?kind=redemption")  # the review queue (shared/reviews) lists every kind
def in_review(request: Request, p: Annotated[Platform, Depends(platform)],
              who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    return in_memory(request, p.reviews.list(who.tenant_id, status="open", kind=REVIEW_KIND, limit=SCAN_LIMIT), limit,
                     cursor, Order(("createdAt", "reviewId")))


def _decide(p: Platform, who: Principal, customer_id: str, rid: str, decision: str, note: str | None) -> dict:
    """A shortcut to the review queue (shared/reviews): the same decision, audit and review status."""
    entry_id = p.spend.redemptions.get(who.tenant_id, customer_id, rid)["entryId"]
    review = review_id(REVIEW_KIND, customer_id, entry_id)
    decided = p.reviews.decide(who.tenant_id, review, decision, who, note)  # type: ignore[arg-type]
    return {**p.spend.redemptions.get(who.tenant_id, customer_id, rid), "reviewId": review,
            "reviewStatus": decided["status"]}


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/approve",
             summary="Approve a redemption in review: confirmed (or fulfilled by its partner) (tenant-admin)")
def approve(customerId: CustomerId, redemptionId: RedemptionId, body: Decision,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    return _decide(p, who, customerId, redemptionId, "approve", body.reason)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/reject",
             summary="Reject a redemption in review: its points come back (tenant-admin)")
def reject(customerId: CustomerId, redemptionId: RedemptionId, body: Decision,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    return _decide(p, who, customerId, redemptionId, "reject", body.reason)
