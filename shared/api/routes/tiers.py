"""Tiers: the tenant's tier programme (read: any key; replace/delete: tenant-admin,
audited) and a customer's current tier and tier history (read). See docs/tiers.md."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from shared.api.contract import op
from shared.api.contract.tiers import CustomerTier, TierHistoryPage, TierProgramView
from shared.api.deps import platform
from shared.api.pagination import BadCursor, Cursor, keyset, position
from shared.api.security import requires
from shared.app.auth import Principal
from shared.clock import iso
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.errors import NotFound
from shared.platform import Platform
from shared.store.layout import TENANTS
from shared.tiers.history import view
from shared.tiers.model import TierProgram
from shared.tiers.schedule import next_evaluation
from shared.tiers.service import EVALUATION_ID

router = APIRouter(tags=["tiers"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="the tenant's own customer id")]


@router.get("/v1/tiers", summary="The tenant's tier programme and its evaluation schedule",
            **op("tiers.getProgram", TierProgramView, errors=(404,)))
def read_program(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """The tenant's tier programme and its evaluation schedule (capability ``read``). 404 until a tenant-admin
    defines one."""
    stored = p.tiers.current_program(who.tenant_id)
    if stored is None:
        raise NotFound("the tenant has no tier programme: a tenant-admin defines one with PUT /v1/tiers")
    state = p.store.read(TENANTS, who.tenant_id, EVALUATION_ID) or {}
    zone = ZoneInfo(p.tenants.get(who.tenant_id).time_zone)
    return {**stored.view(), "schedule": {
        "timeZone": zone.key, "lastEvaluationAt": state.get("lastEvaluationAt"),
        "lastRunAt": state.get("lastRunAt"), "lastReport": state.get("lastReport"),
        "nextEvaluationAt": iso(next_evaluation(stored.program, p.clock.now(), zone))}}


@router.put("/v1/tiers", summary="Define or replace the tier programme (tenant-admin)",
            **op("tiers.putProgram", TierProgramView))
def save_program(body: TierProgram, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Defines or replaces the tier programme; customers move at the next evaluation (capability ``admin``,
    audited)."""
    before, after = p.tiers.save_program(who.tenant_id, body)
    if before is None or before.version != after.version:  # a repeat of the stored programme changes nothing
        p.audit.record(who.tenant_id, "tiers.program.saved", who, target=f"tierprogram:{who.tenant_id}",
                       before=before.view() if before else None, after=after.view())
    return after.view()


@router.delete("/v1/tiers", status_code=204, summary="Remove the tier programme (tenant-admin)",
               **op("tiers.deleteProgram", None, errors=(404,)))
def delete_program(p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("admin"))]) -> Response:
    """Removes the tier programme; customers keep their history (capability ``admin``, audited)."""
    before = p.tiers.delete_program(who.tenant_id)
    p.audit.record(who.tenant_id, "tiers.program.deleted", who, target=f"tierprogram:{who.tenant_id}",
                   before=before.view())
    return Response(status_code=204)


@router.get("/v1/customers/{customerId}/tier", summary="A customer's tier, qualifying values and grace",
            **op("tiers.customerTier", CustomerTier, errors=(404,)))
def customer_tier(customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """A customer's tier, since when, its multiplier, the qualifying values of the window and any grace period
    (capability ``read``)."""
    return p.tiers.customer_tier(who.tenant_id, customerId)


@router.get("/v1/customers/{customerId}/tier/history", summary="A customer's tier changes, newest first",
            **op("tiers.history", TierHistoryPage, errors=(404,)))
def tier_history(request: Request, customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    """A customer's tier changes, newest first (capability ``read``), paged: follow ``next``."""
    before = position(request, who.tenant_id, cursor, int)
    if before is not None and not (isinstance(before[0], int) and 1 <= before[0] < 10**9):
        raise BadCursor("malformed position")
    p.customers.get(who.tenant_id, customerId)  # 404 for an unknown customer
    records = p.tiers.history.list(who.tenant_id, customerId, before_seq=before[0] if before else None,
                                   limit=limit + 1)
    return keyset(request, who.tenant_id, records, limit, lambda record: [record["changeSeq"]], view)
