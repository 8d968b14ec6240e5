"""A customer's upcoming points expiries (read capability).

``GET /v1/customers/{customerId}/expiries`` answers from the ledger itself (the
lot replay of ``shared.ledger.lots``), so it is exact as of the newest entry:
per last valid day in the tenant's time zone, the points that will expire.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from shared.api.contract import op
from shared.api.contract.tiers import UpcomingExpiries
from shared.api.deps import platform
from shared.api.pagination import SCAN_LIMIT, Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.platform import Platform

router = APIRouter(prefix="/v1/customers", tags=["expiry"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="the tenant's own customer id")]


@router.get("/{customerId}/expiries", summary="Upcoming points expiries: points and last valid day, soonest first",
            **op("expiry.upcoming", UpcomingExpiries, errors=(404,)))
def upcoming_expiries(request: Request, customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                      who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The customer's points that will expire, per last valid day in the tenant's time zone, soonest first,
    exact as of the newest ledger entry (capability ``read``)."""
    p.customers.get(who.tenant_id, customerId)  # 404 for an unknown customer
    summary = p.expiry.upcoming(who.tenant_id, customerId, SCAN_LIMIT)
    page = in_memory(request, who.tenant_id, summary["items"], limit, cursor, Order(("expiresOn",)))
    return {**summary, **page, "more": page["next"] is not None}
