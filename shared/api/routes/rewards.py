"""Spending configuration: the rewards catalogue, the tenant's spend policy and
conversion programmes (tenant-admin writes, readers read), and the partner
endpoints (platform-admin). Every change is audited. See docs/spend.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from shared.api.contract import op
from shared.api.contract.spend import (PartnerList, ProgrammeList, ProgrammeView, Reward, RewardPage,
                                        SpendPolicyView)
from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory, keyset, position
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_MAX_LENGTH, ID_PATTERN
from shared.platform import Platform
from shared.spend.catalogue import NewReward, RewardPatch
from shared.spend.conversions import Programme
from shared.api.contract.governance import ApprovalRequest
from shared.errors import FieldProblem
from shared.spend.partners import FULFILMENTS_PATH, PartnerConfig, UnsafePartnerUrl
from shared.webhooks.ssrf import UnsafeUrl
from shared.spend.policy import SpendPolicy

router = APIRouter(tags=["rewards"])

RewardId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH, description="the tenant's own reward id")]
ProgrammeId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]
PartnerId = Annotated[str, Path(pattern=ID_PATTERN, max_length=ID_MAX_LENGTH)]


@router.post("/v1/rewards", status_code=201, summary="Add a reward to the catalogue (tenant-admin)",
             **op("rewards.create", {201: Reward}, errors=(409,)))
def create_reward(body: NewReward, response: Response, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Adds a reward to the catalogue (capability ``admin``, audited): its cost in points, optional stock,
    validity dates and per-customer limit, or a partner's SKU."""
    view = p.spend.catalogue.create(who.tenant_id, body)
    p.audit.record(who.tenant_id, "reward.created", who, target=f"reward:{body.reward_id}", after=view)
    response.headers["Location"] = f"/v1/rewards/{body.reward_id}"
    return view


@router.get("/v1/rewards", summary="The rewards catalogue, by id",
            **op("rewards.list", RewardPage))
def list_rewards(request: Request, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The catalogue in id order with claimed and remaining stock (capability ``read``), paged: follow
    ``next``."""
    after = position(request, who.tenant_id, cursor, str)
    items = p.spend.catalogue.list(who.tenant_id, str(after[0]) if after else None, limit + 1)
    return keyset(request, who.tenant_id, items, limit, lambda item: [item["rewardId"]])


@router.get("/v1/rewards/{rewardId}", summary="Read a reward (with claimed and remaining stock)",
            **op("rewards.get", Reward, errors=(404,)))
def get_reward(rewardId: RewardId, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """A reward with its claimed and remaining stock (capability ``read``)."""
    return p.spend.catalogue.get(who.tenant_id, rewardId)


@router.patch("/v1/rewards/{rewardId}", summary="Change a reward (tenant-admin); null clears a field",
              **op("rewards.update", Reward, errors=(404, 409)))
def update_reward(rewardId: RewardId, body: RewardPatch, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Changes the given fields of a reward; ``null`` clears an optional one (capability ``admin``, audited)."""
    saved = p.spend.catalogue.update(who.tenant_id, rewardId, body)
    if saved.changed:
        p.audit.record(who.tenant_id, "reward.updated", who, target=f"reward:{rewardId}", before=saved.before,
                       after=saved.after)
    return saved.after


@router.get("/v1/spend/policy", summary="Reservation TTL and review threshold of the tenant",
            **op("rewards.getSpendPolicy", SpendPolicyView))
def get_policy(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """The tenant's reservation TTL and review threshold (capability ``read``)."""
    return p.spend.policies.get(who.tenant_id).model_dump(mode="json", by_alias=True)


@router.put("/v1/spend/policy", summary="Set the reservation TTL and review threshold (tenant-admin)",
            **op("rewards.putSpendPolicy", SpendPolicyView))
def put_policy(body: SpendPolicy, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Sets the reservation TTL and the review threshold (capability ``admin``, audited)."""
    saved = p.spend.policies.save(who.tenant_id, body)
    if saved.changed:
        p.audit.record(who.tenant_id, "spend.policy.changed", who, target="spend:policy", before=saved.before,
                       after=saved.after)
    return saved.after


@router.put("/v1/conversion-programmes/{programmeId}", summary="Create or change a conversion programme (tenant-admin)",
            **op("rewards.putProgramme", ProgrammeView, errors=(404,)))
def put_programme(programmeId: ProgrammeId, body: Programme, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Creates or replaces a conversion programme: points into a registered partner's currency at a rate
    (capability ``admin``, audited)."""
    saved = p.spend.conversions.save_programme(who.tenant_id, programmeId, body)
    if saved.changed:
        p.audit.record(who.tenant_id, "conversion.programme.saved", who, target=f"conversion:{programmeId}",
                       before=saved.before, after=saved.after)
    return saved.after


@router.get("/v1/conversion-programmes", summary="The tenant's conversion programmes",
            **op("rewards.listProgrammes", ProgrammeList))
def list_programmes(request: Request, p: Annotated[Platform, Depends(platform)],
                    who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The tenant's conversion programmes (capability ``read``)."""
    return in_memory(request, who.tenant_id, p.spend.conversions.programmes(who.tenant_id), limit, cursor, Order(("programmeId",)))


@router.get("/v1/conversion-programmes/{programmeId}", summary="Read a conversion programme",
            **op("rewards.getProgramme", ProgrammeView, errors=(404,)))
def get_programme(programmeId: ProgrammeId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    """One conversion programme (capability ``read``)."""
    return p.spend.conversions.programme(who.tenant_id, programmeId)


@router.put("/v1/platform/partners/{partnerId}", status_code=202,
            summary="Request registering or changing a partner's endpoint: two operators approve (platform-admin)",
            **op("rewards.putPartner", {202: ApprovalRequest}))
def put_partner(partnerId: PartnerId, body: PartnerConfig, p: Annotated[Platform, Depends(platform)],
                who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    """Files a ``partner.save`` request with this endpoint and call budget (timeout, attempts, circuit breaker)
    (capability ``platform``, audited); saved when the requester and a second operator approve it with their
    security keys. An unsafe base URL is refused at once (SSRF guard)."""
    try:
        p.spend.partners.check_url(f"{body.base_url}{FULFILMENTS_PATH}")
    except UnsafeUrl as refused:
        raise UnsafePartnerUrl(f"baseUrl refused: {refused.message}", [FieldProblem("baseUrl", refused.message)]) \
            from None
    return p.approvals.request("partner.save", who, tenant_id=None, reason=f"save partner {partnerId}",
                               params={"partnerId": partnerId, "config": body.model_dump(mode="json", by_alias=True)})


@router.get("/v1/platform/partners", summary="Registered partners (platform-admin)",
            **op("rewards.listPartners", PartnerList))
def list_partners(request: Request, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("platform"))], cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Registered partners (capability ``platform``)."""
    return in_memory(request, who.tenant_id, p.spend.partners.list(), limit, cursor, Order(("partnerId",)))
