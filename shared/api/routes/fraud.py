"""A tenant's fraud policy (tenant-admin: read and replace, audited) and an
on-demand reconciliation of the tenant's ledger (tenant-admin). See docs/fraud.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from shared.api.contract import op
from shared.api.contract.fraud import Reconciliation
from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.app.reconcile import reconcile
from shared.fraud.policy import FraudPolicy
from shared.platform import Platform

router = APIRouter(tags=["fraud"])


@router.get("/v1/fraud/policy", summary="The tenant's velocity limits and anomaly check (tenant-admin)",
            **op("fraud.getPolicy", FraudPolicy))
def read_policy(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """The tenant's velocity limits (per customer and per tenant) and anomaly check (capability ``admin``)."""
    return p.fraud.policies.get(who.tenant_id).view()


@router.put("/v1/fraud/policy", summary="Replace the tenant's fraud policy (tenant-admin, audited)",
            **op("fraud.putPolicy", FraudPolicy))
def replace_policy(body: FraudPolicy, p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Replaces the tenant's fraud policy as a whole (capability ``admin``, audited). An order over a limit is
    held for review, not rejected."""
    saved = p.fraud.policies.save(who.tenant_id, body)
    if saved.changed:
        p.audit.record(who.tenant_id, "fraud.policy.changed", who, target=f"tenant:{who.tenant_id}",
                       before=saved.before, after=saved.after)
    return saved.after


@router.get("/v1/reconciliation", summary="Recompute the tenant's balances from the ledger and report drift "
                                          "(tenant-admin; reads only)",
            **op("fraud.reconcile", Reconciliation))
def run_reconciliation(p: Annotated[Platform, Depends(platform)],
                       who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Recomputes every customer's balances from the ledger and reports drift; reads only, patches nothing
    (capability ``admin``)."""
    return reconcile(p.store, who.tenant_id).view()
