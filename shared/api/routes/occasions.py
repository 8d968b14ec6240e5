"""Birthday and anniversary rewards: the tenant's settings (tenant-admin). The daily
job is shared/occasions; see docs/occasions.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from shared.api.contract import op
from shared.api.contract.imports import OccasionSettingsView
from shared.api.deps import platform
from shared.api.security import requires
from shared.app.auth import Principal
from shared.occasions.service import OccasionSettings
from shared.platform import Platform

router = APIRouter(prefix="/v1/occasions", tags=["occasions"])


@router.get("/settings", summary="Points on birthdays and join anniversaries",
            **op("occasions.getSettings", OccasionSettingsView))
def get_settings(p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """The points a customer earns on their birthday and on the anniversary of their join date, once a year,
    in the tenant's time zone (capability ``admin``)."""
    return p.occasions.settings(who.tenant_id).model_dump(by_alias=True)


@router.put("/settings", summary="Set the points on birthdays and join anniversaries",
            **op("occasions.putSettings", OccasionSettingsView))
def put_settings(body: OccasionSettings, p: Annotated[Platform, Depends(platform)],
                 who: Annotated[Principal, Depends(requires("admin"))]) -> dict:
    """Sets the birthday and anniversary points (0 turns an occasion off; capability ``admin``, audited).
    Takes effect from the next daily run; an award already given this year is not given again."""
    saved = p.occasions.save_settings(who.tenant_id, body)
    if saved.changed:
        p.audit.record(who.tenant_id, "occasions.settings.changed", who, target="occasions:settings",
                       before=saved.before.model_dump(by_alias=True), after=saved.after.model_dump(by_alias=True))
    return saved.after.model_dump(by_alias=True)
