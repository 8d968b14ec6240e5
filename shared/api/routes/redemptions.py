"""Redemptions and conversions of a customer's points (merchants and tenant-admins:
capability ``ingest``, the one that already lets a key move points by sending
orders), and the tenant-admin's review decisions on large ones. See docs/spend.md.

Status codes: 201 a new redemption (reserved, completed, confirmed...), 202 one
waiting for review, 200 a replay of an earlier request (``duplicate: true``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_PATTERN
from shared.platform import Platform
from shared.spend.conversions import ConvertRequest
from shared.spend.redemptions import IN_REVIEW, RedeemRequest, SpendResult

router = APIRouter(tags=["redemptions"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="the tenant's own customer id")]
RedemptionId = Annotated[str, Path(pattern=r"^rd-[0-9a-f]{24}$")]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, min_length=1, max_length=500)
    partnerAccount: str | None = Field(default=None, min_length=1, max_length=64,
                                       pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
                                       description="a conversion's partner account (never stored)")


def _respond(result: SpendResult, response: Response) -> dict:
    if not result.created:
        response.status_code = 200
    elif result.body.get("status") == IN_REVIEW:
        response.status_code = 202
    return result.body


@router.post("/v1/customers/{customerId}/redemptions", status_code=201,
             summary="Redeem a reward or an amount of points (direct, or reserve then confirm/cancel)")
def redeem(customerId: CustomerId, body: RedeemRequest, response: Response, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    p.customers.get(who.tenant_id, customerId)
    return _respond(p.spend.redemptions.redeem(who.tenant_id, customerId, body, who.key_id), response)


@router.get("/v1/customers/{customerId}/redemptions", summary="A customer's redemptions, newest first")
def list_redemptions(customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                     who: Annotated[Principal, Depends(requires("read"))],
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    p.customers.get(who.tenant_id, customerId)
    return {"items": p.spend.redemptions.list(who.tenant_id, customerId, limit)}


@router.get("/v1/customers/{customerId}/redemptions/{redemptionId}", summary="A redemption and its state")
def get_redemption(customerId: CustomerId, redemptionId: RedemptionId, p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    return p.spend.redemptions.get(who.tenant_id, customerId, redemptionId)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/confirm", status_code=201,
             summary="Confirm a reservation (before it expires)")
def confirm(customerId: CustomerId, redemptionId: RedemptionId, response: Response,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    return _respond(p.spend.redemptions.confirm(who.tenant_id, customerId, redemptionId), response)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/cancel", status_code=201,
             summary="Cancel a reservation: its points come back")
def cancel(customerId: CustomerId, redemptionId: RedemptionId, response: Response,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    return _respond(p.spend.redemptions.cancel(who.tenant_id, customerId, redemptionId), response)


@router.post("/v1/customers/{customerId}/conversions", status_code=201,
             summary="Convert points into a partner's currency through a conversion programme")
def convert(customerId: CustomerId, body: ConvertRequest, response: Response,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    p.customers.get(who.tenant_id, customerId)
    return _respond(p.spend.conversions.convert(who.tenant_id, customerId, body, who.key_id), response)


@router.get("/v1/redemption-reviews", summary="Redemptions waiting for a decision, oldest first (tenant-admin)")
def in_review(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))],
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    return {"items": p.spend.redemptions.in_review(who.tenant_id, limit)}


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/approve", status_code=201,
             summary="Approve a redemption in review: confirmed (or fulfilled by its partner) (tenant-admin)")
def approve(customerId: CustomerId, redemptionId: RedemptionId, body: Decision, response: Response,
            p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    result = p.spend.redemptions.approve(who.tenant_id, customerId, redemptionId, body.partnerAccount)
    if result.created:
        p.audit.record(who.tenant_id, "redemption.approved", who, target=f"redemption:{customerId}:{redemptionId}",
                       after={"status": result.body.get("status"), "points": result.body.get("points")},
                       reason=body.reason)
    return _respond(result, response)


@router.post("/v1/customers/{customerId}/redemptions/{redemptionId}/reject", status_code=201,
             summary="Reject a redemption in review: its points come back (tenant-admin)")
def reject(customerId: CustomerId, redemptionId: RedemptionId, body: Decision, response: Response,
           p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    result = p.spend.redemptions.reject(who.tenant_id, customerId, redemptionId, body.reason)
    if result.created:
        p.audit.record(who.tenant_id, "redemption.rejected", who, target=f"redemption:{customerId}:{redemptionId}",
                       after={"status": result.body.get("status"), "points": result.body.get("points")},
                       reason=body.reason)
    return _respond(result, response)
