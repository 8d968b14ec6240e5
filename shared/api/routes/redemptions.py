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

from shared.api.contract import op
from shared.api.contract.reviews import ReviewList
from shared.api.contract.spend import Redemption, RedemptionList, SpendOutcome
from shared.api.deprecation import deprecated
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.dryrun import dry_runnable
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.platform import Platform
from shared.spend.conversions import ConvertRequest
from shared.reviews import review_id
from shared.spend.redemptions import IN_REVIEW, REVIEW_KIND, RedeemRequest, SpendResult

router = APIRouter(tags=["redemptions"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="the tenant's own customer id")]
RedemptionId = Annotated[str, Path(pattern=r"^rd-[0-9a-f]{24}$", max_length=27)]


class RedemptionDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=500)


def _respond(result: SpendResult, response: Response) -> dict:
    if not result.created:
        response.status_code = 200
    elif result.body.get("status") == IN_REVIEW:
        response.status_code = 202
    return result.body


@router.post("/v1/customers/{customerId}/redemptions", status_code=201,
             summary="Redeem a reward or an amount of points (direct, or reserve then confirm/cancel)",
             **op("redemptions.redeem", {201: SpendOutcome, 202: SpendOutcome, 200: SpendOutcome},
                  errors=(404, 409, 502)))
@dry_runnable
def redeem(customerId: CustomerId, body: RedeemRequest, response: Response, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Redeems a reward or an amount of points, directly or as a reservation to confirm or cancel (capability
    ``ingest``). 201 new, 202 waiting for review, 200 a replay of the same ``idempotencyKey``; 422 names
    the available balance when it is too low."""
    p.customers.get(who.tenant_id, customerId)
    if p.vouchers.is_voucher_reward(who.tenant_id, body.reward_id):
        # A voucher reward: the same redemption, then its voucher (shared/vouchers, docs/vouchers.md).
        return _respond(p.vouchers.exchange(who.tenant_id, customerId, body, who.key_id), response)
    return _respond(p.spend.redemptions.redeem(who.tenant_id, customerId, body, who.key_id), response)


@router.get("/v1/customers/{customerId}/redemptions", summary="A customer's redemptions, newest first",
            **op("redemptions.list", RedemptionList, errors=(404,)))
def list_redemptions(request: Request, customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                     who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    """A customer's redemptions and conversions, newest first (capability ``read``)."""
    p.customers.get(who.tenant_id, customerId)
    return in_memory(request, who.tenant_id, p.spend.redemptions.list(who.tenant_id, customerId, None), limit, cursor,
                     Order(("createdAt", "redemptionId"), descending=True))


@router.get("/v1/customers/{customerId}/redemptions/{redemptionId}", summary="A redemption and its state",
            **op("redemptions.get", Redemption, errors=(404,)))
def get_redemption(customerId: CustomerId, redemptionId: RedemptionId, p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """A redemption and its state (capability ``read``)."""
    return p.spend.redemptions.get(who.tenant_id, customerId, redemptionId)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/confirm", status_code=201,
             summary="Confirm a reservation (before it expires)",
             **op("redemptions.confirm", {201: SpendOutcome, 200: SpendOutcome}, errors=(404, 409, 502)))
@dry_runnable
def confirm(customerId: CustomerId, redemptionId: RedemptionId, response: Response,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Confirms a reservation before it expires; a partner reward is fulfilled by its partner now (capability
    ``ingest``). 200 when it was already confirmed."""
    return _respond(p.spend.redemptions.confirm(who.tenant_id, customerId, redemptionId), response)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/cancel", status_code=201,
             summary="Cancel a reservation: its points come back",
             **op("redemptions.cancel", {201: SpendOutcome, 200: SpendOutcome}, errors=(404, 409)))
@dry_runnable
def cancel(customerId: CustomerId, redemptionId: RedemptionId, response: Response,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Cancels a reservation: its points come back as a RELEASE entry (capability ``ingest``). 200 when it was
    already cancelled."""
    return _respond(p.spend.redemptions.cancel(who.tenant_id, customerId, redemptionId), response)


@router.post("/v1/customers/{customerId}/conversions", status_code=201,
             summary="Convert points into a partner's currency through a conversion programme",
             **op("redemptions.convert", {201: SpendOutcome, 202: SpendOutcome, 200: SpendOutcome},
                  errors=(404, 409, 502)))
@dry_runnable
def convert(customerId: CustomerId, body: ConvertRequest, response: Response,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """Converts points into a partner's currency through a conversion programme; the partner is called now and
    the points come back if it refuses (capability ``ingest``)."""
    p.customers.get(who.tenant_id, customerId)
    return _respond(p.spend.conversions.convert(who.tenant_id, customerId, body, who.key_id), response)


@router.get("/v1/redemption-reviews", summary="Open reviews of redemptions, oldest first (tenant-admin)",
            **op("redemptions.inReview", ReviewList))
@deprecated(since=datetime(2026, 12, 1, tzinfo=timezone.utc), sunset=datetime(2027, 6, 30, tzinfo=timezone.utc),
            successor="/v1/reviews?kind=redemption")  # the review queue (shared/reviews) lists every kind
def in_review(request: Request, p: Annotated[Platform, Depends(platform)],
              who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Open reviews of redemptions, oldest first (capability ``admin``)."""
    return in_memory(request, who.tenant_id, p.reviews.list(who.tenant_id, status="open", kind=REVIEW_KIND, limit=None), limit,
                     cursor, Order(("createdAt", "reviewId")))


def _decide(p: Platform, who: Principal, customer_id: str, rid: str, decision: str, note: str | None) -> dict:
    """A shortcut to the review queue (shared/reviews): the same decision, audit and review status."""
    entry_id = p.spend.redemptions.get(who.tenant_id, customer_id, rid)["entryId"]
    review = review_id(REVIEW_KIND, customer_id, entry_id)
    decided = p.reviews.decide(who.tenant_id, review, decision, who, note)  # type: ignore[arg-type]
    return {**p.spend.redemptions.get(who.tenant_id, customer_id, rid), "reviewId": review,
            "reviewStatus": decided["status"]}


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/approve",
             summary="Approve a redemption in review: confirmed (or fulfilled by its partner) (tenant-admin)",
             **op("redemptions.approve", Redemption, errors=(404, 409, 502)))
def approve(customerId: CustomerId, redemptionId: RedemptionId, body: RedemptionDecision,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Approves a redemption in review: it is confirmed, or fulfilled by its partner (capability ``admin``,
    audited)."""
    return _decide(p, who, customerId, redemptionId, "approve", body.reason)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/reject",
             summary="Reject a redemption in review: its points come back (tenant-admin)",
             **op("redemptions.reject", Redemption, errors=(404, 409)))
def reject(customerId: CustomerId, redemptionId: RedemptionId, body: RedemptionDecision,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Rejects a redemption in review: its points come back (capability ``admin``, audited)."""
    return _decide(p, who, customerId, redemptionId, "reject", body.reason)
