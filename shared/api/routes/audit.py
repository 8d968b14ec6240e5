"""The audit log: a tenant-admin reads and verifies its own tenant's chain; a
platform-admin verifies any chain (``_platform`` included). No route edits or
deletes a record."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from shared.api.contract import op
from shared.api.contract.records import AuditPage, ChainCheck
from shared.api.deps import platform
from shared.api.pagination import Cursor, keyset, position
from shared.api.security import requires
from shared.app.auth import Principal
from shared.platform import Platform

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", summary="The tenant's audit records, oldest first (tenant-admin)",
            **op("audit.list", AuditPage))
def list_records(request: Request, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The tenant's audit records, oldest first (capability ``admin``), paged: follow ``next``."""
    after = position(request, who.tenant_id, cursor, int)
    fetched = p.audit.records(who.tenant_id, int(after[0]) if after else 0, limit + 1)
    return keyset(request, who.tenant_id, fetched, limit, lambda record: [record["seq"]])


@router.get("/v1/audit/verify", summary="Check the tenant's hash chain; names the first broken link (tenant-admin)",
            **op("audit.verify", ChainCheck))
def verify(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Recomputes the tenant's hash chain and names the first broken link, if any (capability ``admin``)."""
    return p.audit.verify(who.tenant_id)


@router.get("/v1/platform/audit/{chain}/verify", summary="Check any tenant's chain, or _platform (platform-admin)",
            **op("audit.verifyChain", ChainCheck))
def verify_chain(chain: Annotated[str, Path(pattern=r"^(_platform|[A-Za-z0-9][A-Za-z0-9._\-]{0,63})$", max_length=64)],
                 p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Recomputes any tenant's chain, or the platform's own (``_platform``) (capability ``platform``)."""
    return p.audit.verify(chain)
