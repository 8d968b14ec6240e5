"""Spending configuration: the rewards catalogue, the tenant's spend policy and
conversion programmes (tenant-admin writes, readers read), and the partner
endpoints (platform-admin). Every change is audited. See docs/spend.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from shared.api.deps import platform
from shared.api.pagination import Cursor, Order, in_memory, keyset, position
from shared.api.security import requires
from shared.app.auth import Principal
from shared.domain.ids import ID_PATTERN
from shared.platform import Platform
from shared.spend.catalogue import NewReward, RewardPatch
from shared.spend.conversions import Programme
from shared.spend.partners import PartnerConfig
from shared.spend.policy import SpendPolicy

router = APIRouter(tags=["rewards"])

RewardId = Annotated[str, Path(pattern=ID_PATTERN, description="the tenant's own reward id")]
ProgrammeId = Annotated[str, Path(pattern=ID_PATTERN)]
PartnerId = Annotated[str, Path(pattern=ID_PATTERN)]


@router.post("/v1/rewards", status_code=201, summary="Add a reward to the catalogue (tenant-admin)")
def create_reward(body: NewReward, response: Response, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    view = p.spend.catalogue.create(who.tenant_id, body)
    p.audit.record(who.tenant_id, "reward.created", who, target=f"reward:{body.reward_id}", after=view)
    response.headers["Location"] = f"/v1/rewards/{body.reward_id}"
    return view


@router.get("/v1/rewards", summary="The rewards catalogue, by id")
def list_rewards(request: Request, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    after = position(request, cursor)
    items = p.spend.catalogue.list(who.tenant_id, str(after[0]) if after else None, limit + 1)
    return keyset(request, items, limit, lambda item: [item["rewardId"]])


@router.get("/v1/rewards/{rewardId}", summary="Read a reward (with claimed and remaining stock)")
def get_reward(rewardId: RewardId, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    return p.spend.catalogue.get(who.tenant_id, rewardId)


@router.patch("/v1/rewards/{rewardId}", summary="Change a reward (tenant-admin); null clears a field")
def update_reward(rewardId: RewardId, body: RewardPatch, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    before, after = p.spend.catalogue.update(who.tenant_id, rewardId, body)
    p.audit.record(who.tenant_id, "reward.updated", who, target=f"reward:{rewardId}", before=before, after=after)
    return after


@router.get("/v1/spend/policy", summary="Reservation TTL and review threshold of the tenant")
def get_policy(p: Annotated[Platform, Depends(platform)], who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    return p.spend.policies.get(who.tenant_id).model_dump(mode="json", by_alias=True)


@router.put("/v1/spend/policy", summary="Set the reservation TTL and review threshold (tenant-admin)")
def put_policy(body: SpendPolicy, p: Annotated[Platform, Depends(platform)],
               who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    before = p.spend.policies.get(who.tenant_id).model_dump(mode="json", by_alias=True)
    after = p.spend.policies.save(who.tenant_id, body)
    p.audit.record(who.tenant_id, "spend.policy.changed", who, target="spend:policy", before=before, after=after)
    return after


@router.put("/v1/conversion-programmes/{programmeId}", summary="Create or change a conversion programme (tenant-admin)")
def put_programme(programmeId: ProgrammeId, body: Programme, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    before, after = p.spend.conversions.save_programme(who.tenant_id, programmeId, body)
    p.audit.record(who.tenant_id, "conversion.programme.saved", who, target=f"conversion:{programmeId}",
                   before=before, after=after)
    return after


@router.get("/v1/conversion-programmes", summary="The tenant's conversion programmes")
def list_programmes(request: Request, p: Annotated[Platform, Depends(platform)],
                    who: Annotated[Principal, Depends(requires("read"))], cursor: Cursor = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    return in_memory(request, p.spend.conversions.programmes(who.tenant_id), limit, cursor, Order(("programmeId",)))


@router.get("/v1/conversion-programmes/{programmeId}", summary="Read a conversion programme")
def get_programme(programmeId: ProgrammeId, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("read"))]) -> dict:
    return p.spend.conversions.programme(who.tenant_id, programmeId)


@router.put("/v1/platform/partners/{partnerId}", summary="Register or change a partner's endpoint (platform-admin)")
def put_partner(partnerId: PartnerId, body: PartnerConfig, p: Annotated[Platform, Depends(platform)],
                who: Annotated[Principal, Depends(requires("platform"))]) -> dict:
    before = p.spend.partners.get(partnerId) if p.spend.partners.exists(partnerId) else None
    after = p.spend.partners.save(partnerId, body, who.key_id)
    p.audit.record("_platform", "partner.saved", who, target=f"partner:{partnerId}", before=before, after=after)
    return after


@router.get("/v1/platform/partners", summary="Registered partners (platform-admin)")
def list_partners(request: Request, p: Annotated[Platform, Depends(platform)],
                  who: Annotated[Principal, Depends(requires("platform"))], cursor: Cursor = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    return in_memory(request, p.spend.partners.list(), limit, cursor, Order(("partnerId",)))
