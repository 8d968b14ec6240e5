"""Warmup trigger: builds the platform and the API before the instance takes traffic.

On the plans that send it (Premium, Flex Consumption; ``host.json`` needs
nothing), the host invokes the function named ``warmup`` on a new instance
before it routes requests there, so the first request finds the platform and
the API built instead of paying for them (bench/RESULTS-coldstart.md). On the
Consumption plan it is never invoked and costs nothing but its line in the
index.

A failed build does not fail the warmup: ``functions._platform`` logged it and
keeps no failure, so the first request tries again (after the backoff) and
answers a ``503`` problem document meanwhile; failing the warmup would not
make the dependency come back sooner.
"""

from __future__ import annotations

import logging

import azure.functions as func
from azure.functions.warmup import WarmUpContext  # not re-exported by azure.functions 1.26

from functions._platform import PlatformUnavailable, lazy_api
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.functions.warmup")

# The host recognises the warmup function by this name.
FUNCTION_NAME = "warmup"

bp = func.Blueprint()


@bp.function_name(FUNCTION_NAME)
@bp.warm_up_trigger(arg_name="warmup")
def warmup(warmup: WarmUpContext) -> None:
    try:
        lazy_api().warm()
    except PlatformUnavailable as exc:
        log.warning("warmup: the platform is not built yet (%s); the first request will try again", exc, extra=fields())
        return
    log.info("warmup: platform and API built", extra=fields())
