"""``GET /v1/ledger/verify``: check the ledger's hash chains (tenant-admin; reads only).
See docs/ledger-chain.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from shared.api.contract import op
from shared.api.contract.ledger import LedgerVerification
from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.platform import Platform

router = APIRouter(tags=["ledger"])


@router.get("/v1/ledger/verify", summary="Verify the ledger's hash chains (tenant-admin; reads only)",
            **op("ledger.verify", LedgerVerification, errors=(404,)))
def verify(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))],
           customerId: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)] = None) -> dict:
    """Recomputes every entry's hash of one customer (``customerId``) or of every customer of the tenant, and
    checks the newest daily tenant digest (capability ``admin``). Reports what is broken, patches nothing."""
    if customerId is None:
        return p.chains.verify_tenant(who.tenant_id).view()
    p.customers.get(who.tenant_id, customerId)  # 404 for an unknown customer
    chain = p.chains.verify_customer(who.tenant_id, customerId)
    return {"tenantId": who.tenant_id, "ok": chain.ok, "customers": 1, "entries": chain.entries,
            "broken": [] if chain.ok else [chain.view()], "digest": None, "digestProblems": []}
