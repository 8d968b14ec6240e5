"""Referrals: the tenant's programme (tenant-admin), a customer's referral code, and
a referee's referral. A referee is made by registering a customer with
``referralCode`` (shared/api/routes/customers.py). See docs/referrals.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from shared.api.contract import op
from shared.api.contract.referrals import Referral, ReferralCode, ReferralProgrammeView
from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.errors import NotFound
from shared.platform import Platform
from shared.referrals import ReferralProgramme

router = APIRouter(tags=["referrals"])

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="the tenant's own customer id")]


@router.get("/v1/referrals/programme", summary="The tenant's referral programme",
            **op("referrals.getProgramme", ReferralProgrammeView, errors=(404,)))
def get_programme(p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """The tenant's referral programme (capability ``read``); 404 when it runs none."""
    programme = p.referrals.programme(who.tenant_id)
    if programme is None:
        raise NotFound("the tenant runs no referral programme")
    return programme.model_dump(mode="json", by_alias=True)


@router.put("/v1/referrals/programme", summary="Set the tenant's referral programme (tenant-admin)",
            **op("referrals.setProgramme", ReferralProgrammeView))
def set_programme(body: ReferralProgramme, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Sets each party's points, what qualifies an order, the cap per referrer per period, the velocity screen
    and the return window (capability ``admin``, audited)."""
    saved = p.referrals.save_programme(who.tenant_id, body)
    if saved.changed:  # a repeat of the programme in place changes nothing and records nothing
        p.audit.record(who.tenant_id, "referralprogramme.set", who, target="referral:programme",
                       before=saved.before, after=saved.after)
    return saved.after


@router.post("/v1/customers/{customerId}/referral-code", summary="A customer's referral code",
             **op("referrals.code", ReferralCode, errors=(404,)))
def referral_code(customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("ingest"))]) -> dict:
    """The customer's referral code, made on the first call and the same on every later one (capability
    ``ingest``)."""
    customer = p.customers.get(who.tenant_id, customerId)
    return {"customerId": customerId, "code": p.referrals.code_for(who.tenant_id, customer)}


@router.get("/v1/customers/{customerId}/referral", summary="How a customer was referred, and its state",
            **op("referrals.get", Referral, errors=(404,)))
def get_referral(customerId: CustomerId, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """The referral that brought this customer (capability ``read``); 404 when none did."""
    return p.referrals.get(who.tenant_id, customerId)
