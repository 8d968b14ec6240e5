"""The platform's operational status, read from its durable state: what
``accrue status`` prints and what the state gauges of ``/metrics`` report.

Read only and cheap enough to run every few seconds on the local platform:
the queue's two counts, the poison store (bounded read), the projector's
checkpoint and the first change after it, one document per timer job, and the
webhook endpoints. Each part that cannot be read on this deployment (the bus
backlog on Event Hubs, the projection position on Cosmos, whose change feed is
the host's) is ``None``, never a guess: Azure Monitor's own Event Hubs and
Cosmos metrics cover those there.

Timer job runs are recorded by ``shared.jobs.run_job`` as ``jobrun:<name>`` in
the system container (partition ``jobrun``): the last start, end, outcome and
what it reported, so the status shows each job's last run whichever process or
Functions instance ran it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from shared.clock import iso, parse_iso
from shared.store.layout import LEDGER, SYSTEM, WEBHOOK_ENDPOINTS
from shared.store.port import Query

if TYPE_CHECKING:
    from shared.platform import Platform

JOBRUN_PK = "jobrun"
# Bounded reads: a status never scans a whole container.
POISON_READ_LIMIT = 10_000
ENDPOINT_READ_LIMIT = 10_000


def jobrun_id(name: str) -> str:
    return f"jobrun:{name}"


def collect(platform: Platform) -> dict[str, Any]:
    """The whole status, JSON-ready."""
    from shared.jobs import JOBS

    now = time.time()
    backlog, oldest, queue_poison = _queue(platform)
    endpoints = platform.store.query(WEBHOOK_ENDPOINTS, Query(pk=None, limit=ENDPOINT_READ_LIMIT))
    failing = [{"tenantId": e["tenantId"], "endpointId": e["id"], "failingSince": e["failingSince"]}
               for e in endpoints if e.get("status") == "active" and e.get("failingSince")]
    disabled = [{"tenantId": e["tenantId"], "endpointId": e["id"], "reason": e.get("disabledCode")}
                for e in endpoints if e.get("status") == "disabled"]
    jobs = []
    for job in JOBS:
        run = platform.store.read(SYSTEM, JOBRUN_PK, jobrun_id(job.name))
        jobs.append({"name": job.name, "schedule": job.schedule,
                     "lastRun": None if run is None else {k: run.get(k) for k in (
                         "startedAt", "finishedAt", "outcome", "durationSeconds", "error", "progress")}})
    store_poison = len(platform.poison.list_all(limit=POISON_READ_LIMIT))
    return {
        "at": iso(platform.clock.now()),
        "bus": {"kind": platform.settings.bus, "backlog": backlog},
        # The oldest order still on the queue: how far behind ingestion is right now.
        "ingestLagSeconds": None if backlog is None else (0.0 if oldest is None else round(now - oldest, 3)),
        "projectionLagSeconds": _projection_behind(platform, now),
        "poison": {"store": store_poison, "queue": queue_poison,
                   "total": store_poison + (queue_poison or 0)},
        "jobs": jobs,
        "webhooks": {"failing": failing, "disabled": disabled},
    }


def gauges(platform: Platform) -> dict[str, float | None]:
    """The numbers the state gauges report (``shared.telemetry.metrics``)."""
    status = collect(platform)
    return {"backlog": status["bus"]["backlog"], "poison": status["poison"]["total"],
            "failing": len(status["webhooks"]["failing"]), "disabled": len(status["webhooks"]["disabled"]),
            "projection": status["projectionLagSeconds"]}


def _queue(platform: Platform) -> tuple[int | None, float | None, int | None]:
    from shared.bus.local_queue import LocalQueue

    queue = platform.bus
    if not isinstance(queue, LocalQueue):
        return None, None, None
    return queue.depth(), queue.oldest_enqueued_at(), queue.poison_depth()


def _projection_behind(platform: Platform, now: float) -> float | None:
    """Age of the oldest ledger change the projector has not applied (0: caught up)."""
    store = platform.store
    if not hasattr(store, "changes"):
        return None
    lsn = platform.checkpoint.load()["lsn"]
    pending = store.changes(LEDGER, lsn, 1)
    if not pending:
        return 0.0
    created = pending[0].doc.get("createdAt")
    return round(max(0.0, now - parse_iso(created).timestamp()), 3) if created else None


def summary(status: dict[str, Any]) -> str:
    """``accrue status`` for people."""
    def seconds(value: float | None) -> str:
        return "n/a on this bus/store" if value is None else f"{value:.1f} s"

    bus = status["bus"]
    lines = [
        f"status at {status['at']}",
        f"bus ({bus['kind']}): backlog {'n/a (see Event Hubs consumer lag)' if bus['backlog'] is None else bus['backlog']}",
        f"ingest lag (oldest queued order): {seconds(status['ingestLagSeconds'])}",
        f"projection lag (oldest unprojected change): {seconds(status['projectionLagSeconds'])}",
        f"poison: {status['poison']['total']} ({status['poison']['store']} in the store, "
        f"{status['poison']['queue'] or 0} in the queue's table)",
        "timer jobs (last run):",
    ]
    for job in status["jobs"]:
        run = job["lastRun"]
        if run is None:
            lines.append(f"  {job['name']:<14} never run")
        else:
            lines.append(f"  {job['name']:<14} {run['outcome']:<7} started {run['startedAt']}, "
                         f"{run['durationSeconds']:.2f} s" + (f" ({run['error']})" if run.get("error") else ""))
    failing, disabled = status["webhooks"]["failing"], status["webhooks"]["disabled"]
    lines.append(f"webhook endpoints: {len(failing)} failing, {len(disabled)} disabled")
    for endpoint in failing:
        lines.append(f"  failing  {endpoint['tenantId']}/{endpoint['endpointId']} since {endpoint['failingSince']}")
    for endpoint in disabled:
        lines.append(f"  disabled {endpoint['tenantId']}/{endpoint['endpointId']} ({endpoint['reason']})")
    return "\n".join(lines)
