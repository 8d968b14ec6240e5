"""Cosmos DB change-feed trigger (extension v4): ledger changes into read models.

Hands the changed ledger documents to ``platform.projector.apply`` (the handler
the local ``FeedPoller`` calls) under the failure policy of
``functions._resilience``; documents that fail alone go to the poison store
(source ``projection``). The projector is order-insensitive, so failed
documents are isolated one by one with no ordering key.

The lease container ``leases`` is created by Bicep, never by the trigger (an
identity-based connection may not create containers). With no lease yet (first
deployment, or leases reset) the trigger reads the ledger's change feed from
the beginning: the projector is idempotent, so a full replay only costs time,
while starting "from now" would silently skip entries written before.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions import bindings
from functions._platform import get_platform
from functions._resilience import HostRetry, InProcessRetry, process_batch
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.functions.projections")

SOURCE = "projection"
HOST_RETRY = HostRetry()
RETRY = InProcessRetry()
MAX_ITEMS_PER_INVOCATION = 500

bp = func.Blueprint()


@bp.function_name(bindings.PROJECTION_FUNCTION)
@bp.retry(strategy=HOST_RETRY.strategy, max_retry_count=HOST_RETRY.max_retry_count,
          minimum_interval=HOST_RETRY.minimum_interval, maximum_interval=HOST_RETRY.maximum_interval)
@bp.cosmos_db_trigger(
    arg_name="changes",
    connection=bindings.COSMOS_CONNECTION,
    database_name=bindings.setting_ref(bindings.COSMOS_DATABASE_SETTING),
    container_name=bindings.LEDGER_CONTAINER,
    lease_container_name=bindings.LEASE_CONTAINER,
    create_lease_container_if_not_exists=False,
    start_from_beginning=True,
    max_items_per_invocation=MAX_ITEMS_PER_INVOCATION,
)
def project_ledger(changes: func.DocumentList) -> None:
    platform = get_platform()
    docs = [change.to_dict() for change in changes]
    result = process_batch(
        docs,
        platform.projector.apply,
        lambda doc, reason: platform.poison.put(SOURCE, doc, reason, tenant_id=doc.get("tenantId")),
        source=SOURCE,
        retry=RETRY,
        log=log,
    )
    log.info("projection: %d changes, %d attempt(s), %d poisoned",
             result.size, result.attempts, len(result.poisoned), extra=fields(source=SOURCE, count=result.size))
