"""API keys of the caller's tenant (tenant-admin): create (secret shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.api.contract import op
from shared.api.contract.access import ApiKey, ApiKeyList, IssuedKey
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal, Role
from shared.platform import Platform

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["merchant", "analyst", "tenant-admin"]
    label: str = Field(default="", max_length=100)


@router.post("", status_code=201, summary="Create a key; its secret is in this answer only",
             **op("keys.create", {201: IssuedKey}))
def create_key(body: NewKey, response: Response, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Creates a merchant, analyst or tenant-admin key of the caller's tenant (capability ``admin``, audited).
    The secret is in this answer only."""
    issued = p.keys.issue(who.tenant_id, Role(body.role), created_by=who.key_id, label=body.label)
    p.audit.record(who.tenant_id, "apikey.created", who, target=f"apikey:{issued.key_id}",
                   after={"role": body.role, "label": body.label})
    response.headers["Cache-Control"] = "no-store"
    return {"keyId": issued.key_id, "apiKey": issued.secret_key, "role": body.role, "tenantId": who.tenant_id}


@router.get("", summary="List the tenant's keys (never their secrets)",
            **op("keys.list", ApiKeyList))
def list_keys(request: Request, p: Annotated[Platform, Depends(platform)],
              who: Annotated[Principal, Depends(requires("admin"))], cursor: Cursor = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The tenant's keys, revoked ones included, never their secrets (capability ``admin``)."""
    return in_memory(request, p.keys.list(who.tenant_id), limit, cursor, Order(("createdAt", "keyId")))


@router.delete("/{keyId}", summary="Revoke a key",
               **op("keys.revoke", ApiKey, errors=(404,)))
def revoke_key(keyId: Annotated[str, Path(pattern=r"^[a-z2-7]{12}$")],
               p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Revokes a key of the tenant at once, also in every cache (capability ``admin``, audited). Revoking a
    revoked key answers its record again."""
    before = next((k for k in p.keys.list(who.tenant_id) if k["keyId"] == keyId), None)
    revoked = p.keys.revoke(who.tenant_id, keyId, revoked_by=who.key_id)
    if before is not None and not before.get("revokedAt"):
        p.audit.record(who.tenant_id, "apikey.revoked", who, target=f"apikey:{keyId}",
                       before={"revokedAt": None, "role": before["role"]}, after={"revokedAt": revoked["revokedAt"]})
    return revoked

