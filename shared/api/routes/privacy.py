"""Customers' personal data: lookup by email (blind index), erasure and the access export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import op
from shared.api.contract.records import CustomerRef, DataExport, ErasureOutcome
from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.errors import NotFound
from shared.platform import Platform
from shared.privacy.access import access_export
from shared.privacy.personal import EMAIL_PATTERN

router = APIRouter(prefix="/v1/customers", tags=["privacy"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="the tenant's own customer id")]


class EmailLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(pattern=EMAIL_PATTERN, max_length=254)


class Erasure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="why (a ticket number; no personal data)")


@router.post("/lookup", summary="Find a customer by email (blind index; the email is in the body, never the URL)",
             **op("privacy.lookup", CustomerRef, errors=(404,)))
def lookup(body: EmailLookup, p: Annotated[Platform, Depends(platform)],
           who: Annotated[Principal, Depends(requires("personal-data"))]) -> dict:
    """Finds the customer with this email through a keyed blind index, decrypting nothing (capability
    ``personal-data``). The email travels in the body, never in a URL. 404 when no customer of the
    tenant has it."""
    customer_id = p.vault.find_by_email(who.tenant_id, body.email)
    if customer_id is None:
        raise NotFound("no customer of this tenant has this email")
    return {"customerId": customer_id}


@router.post("/{customerId}/erasure", summary="Erase a customer's personal data (tenant-admin; idempotent)",
             **op("privacy.erase", ErasureOutcome, errors=(404,)))
def erase(customerId: CustomerId, body: Erasure, p: Annotated[Platform, Depends(platform)],
          who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Destroys the customer's data key so their personal fields can never be read again; the ledger keeps its
    (pseudonymous) entries (capability ``admin``, audited, idempotent)."""
    return p.erasures.erase(who.tenant_id, customerId, who, body.reason)


@router.get("/{customerId}/data-export", summary="Everything held about one customer (tenant-admin)",
            **op("privacy.dataExport", DataExport, errors=(404,)))
def data_export(customerId: CustomerId, response: Response, p: Annotated[Platform, Depends(platform)],
                who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Everything held about one customer, decrypted, for an access request (capability ``admin``, audited;
    Cache-Control: no-store)."""
    export = access_export(p, who.tenant_id, customerId)
    p.audit.record(who.tenant_id, "customer.data-exported", who, target=f"customer:{customerId}")
    response.headers["Cache-Control"] = "no-store"
    return export
