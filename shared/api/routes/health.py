"""Health: unauthenticated liveness plus a cheap store check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from shared.api.contract import op
from shared.api.contract.access import Health
from shared.api.deps import platform
from shared.platform import Platform
from shared.store.layout import SYSTEM

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and store reachability",
            **op("health.check", Health))
def health(p: Annotated[Platform, Depends(platform)]) -> dict:
    """Answers 200 when the platform is up and its store answers, 503 otherwise. Needs no key."""
    p.store.read(SYSTEM, "health", "health")
    return {"status": "ok", "region": p.settings.region, "store": p.settings.store, "bus": p.settings.bus}
