"""Platform operators and their security keys (platform-admin): list, and the registration
ceremony. A verified registration registers nothing by itself: it files an approval
request (``operator.register`` for a newcomer, ``credential.add`` for another key or a
lost key's replacement) that two operators approve with their own keys. The one
exception is the bootstrap operator's first key (docs/fido2.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.api.contract import op
from shared.api.contract.governance import OperatorList, PlatformOperator, Registered, RegistrationOptions
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory
from shared.api.security import requires
from shared.app.auth import Principal
from shared.governance.dual_control import CREDENTIAL_ADD, OPERATOR_REGISTER
from shared.governance.operators import operator_view, stored_credential
from shared.platform import Platform

router = APIRouter(prefix="/v1/platform/operators", tags=["governance"])


class RegistrationStart(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    operator_id: str | None = Field(default=None, alias="operatorId", pattern=r"^op-[0-9a-f]{16}$", max_length=19,
                                    description="an existing operator's new key (another one, or a lost key's "
                                                "replacement); omit for a newcomer")
    name: str | None = Field(default=None, min_length=1, max_length=100, description="a newcomer's display name")

    @model_validator(mode="after")
    def _one(self) -> "RegistrationStart":
        if (self.operator_id is None) == (self.name is None):
            raise ValueError("give either operatorId (a new key of an operator) or name (a newcomer)")
        return self


class RegistrationFinish(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    challenge_id: str = Field(alias="challengeId", pattern=r"^chal-[0-9a-f]{16}$", max_length=21)
    credential: dict[str, Any] = Field(description="the PublicKeyCredential of navigator.credentials.create "
                                                   "(JSON form)")
    reason: str = Field(default="register a security key", min_length=1, max_length=1000)


@router.get("", summary="The region's operators and their security keys (platform-admin)",
            **op("operators.list", OperatorList))
def list_operators(request: Request, p: Annotated[Platform, Depends(platform)],
                   who: Annotated[Principal, Depends(requires("platform"))], cursor: Cursor = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Operators, oldest first, with their registered security keys (capability ``platform``)."""
    return in_memory(request, who.tenant_id, [operator_view(d) for d in p.operators.list()], limit, cursor,
                     Order(("createdAt", "operatorId")))


@router.get("/me", summary="The operator of the calling key (platform-admin)",
            **op("operators.me", PlatformOperator, errors=(404,)))
def me(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """The operator the calling platform-admin key is bound to (capability ``platform``)."""
    return operator_view(p.operators.get(p.operators.of_key(who.key_id)))


@router.post("/registration-options", summary="Start registering a security key (platform-admin)",
             **op("operators.registrationOptions", RegistrationOptions, errors=(404,)))
def registration_options(body: RegistrationStart, p: Annotated[Platform, Depends(platform)],
                         who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Options for ``navigator.credentials.create`` (user verification required; five minutes, once)
    (capability ``platform``)."""
    sponsor = p.operators.of_key(who.key_id)
    return p.operators.registration_options(operator_id=body.operator_id, name=body.name, sponsor=sponsor)


@router.post("/registrations", summary="Finish a registration: files the approval request (platform-admin)",
             **op("operators.register", Registered, errors=(409,)))
def register(body: RegistrationFinish, p: Annotated[Platform, Depends(platform)],
             who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Verifies the new credential and files ``operator.register`` (a newcomer) or ``credential.add`` for two
    operators to approve; the bootstrap operator's first key only is registered at once (capability
    ``platform``, audited)."""
    sponsor = p.operators.of_key(who.key_id)
    pending, credential = p.operators.verify_registration(body.challenge_id, body.credential, sponsor)
    subject = pending["operatorId"]
    if not pending["newcomer"] and subject == sponsor:
        operator = p.operators.get(subject)
        if operator.get("bootstrap") and not operator["credentials"]:
            return {"operator": operator_view(p.operators.register_bootstrap_key(subject, credential, who))}
    action = OPERATOR_REGISTER if pending["newcomer"] else CREDENTIAL_ADD
    params = {"operatorId": subject, "credential": stored_credential(credential)}
    if pending["newcomer"]:
        params["name"] = pending["name"]
    return {"request": p.approvals.request(action, who, tenant_id=None, reason=body.reason, params=params)}
