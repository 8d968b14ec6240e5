"""API keys of the caller's tenant (tenant-admin): create (secret shown once), list, revoke;
and revoking a platform-admin key (a request two operators approve).

Issue and revoke go through ``shared.governance.keys`` (one audit record each)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import op
from shared.api.contract.access import ApiKey, ApiKeyList, IssuedKey
from shared.api.contract.governance import ApprovalRequest
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal, Role
from shared.audit.log import PLATFORM_CHAIN
from shared.platform import Platform

router = APIRouter(tags=["api-keys"])


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["merchant", "analyst", "tenant-admin", "agent"]
    label: str = Field(default="", max_length=100)


@router.post("/v1/api-keys", status_code=201, summary="Create a key; its secret is in this answer only",
             **op("keys.create", {201: IssuedKey}))
def create_key(body: NewKey, response: Response, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Creates a merchant, analyst, tenant-admin or agent key of the caller's tenant (capability ``admin``, audited).
    The secret is in this answer only."""
    # Audited as apikey.created by the key administration (one record per key).
    issued = p.key_admin.issue(who.tenant_id, Role(body.role), who, label=body.label)
    response.headers["Cache-Control"] = "no-store"
    return {"keyId": issued.key_id, "apiKey": issued.secret_key, "role": body.role, "tenantId": who.tenant_id}


@router.get("/v1/api-keys", summary="List the tenant's keys (never their secrets)",
            **op("keys.list", ApiKeyList))
def list_keys(request: Request, p: Annotated[Platform, Depends(platform)],
              who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The tenant's keys, revoked ones included, never their secrets (capability ``admin``)."""
    return in_memory(request, who.tenant_id, p.keys.list(who.tenant_id), limit, cursor, Order(("createdAt", "keyId")))


@router.delete("/v1/api-keys/{keyId}", summary="Revoke a key",
               **op("keys.revoke", ApiKey, errors=(404,)))
def revoke_key(keyId: Annotated[str, Path(pattern=r"^[a-z2-7]{12}$", max_length=12)],
               p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Revokes a key of the tenant at once, also in every cache (capability ``admin``, audited). Revoking a
    revoked key answers its record again and records nothing."""
    return p.key_admin.revoke(who.tenant_id, keyId, who)


@router.delete("/v1/platform/api-keys/{keyId}", status_code=202,
               summary="Request revoking a platform-admin key: two operators approve (platform-admin)",
               **op("keys.revokePlatform", {202: ApprovalRequest}, errors=(404, 409)))
def revoke_platform_key(keyId: Annotated[str, Path(pattern=r"^[a-z2-7]{12}$", max_length=12)],
                        p: Annotated[Platform, Depends(platform)],
                        who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Files a ``platform-admin.revoke`` request (capability ``platform``, audited in the platform chain); the
    key is revoked when the requester and a second operator approve with their security keys. 404 for no such
    key; the last live platform-admin key is never revoked (409 when approved)."""
    p.keys.get(PLATFORM_CHAIN, keyId)
    return p.approvals.request("platform-admin.revoke", who, tenant_id=None, reason=f"revoke platform-admin key {keyId}",
                               params={"keyId": keyId})
