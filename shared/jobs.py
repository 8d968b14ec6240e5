"""Timer jobs: what runs on a schedule. The Azure timer triggers and the local
scheduler both read this one list, so a job runs the same code in both.

Both run a job through ``run_job``, which records the run: ``jobrun:<name>`` in
the system container (last start, end, outcome, what the job reported; read by
``accrue status``) and the job metrics (runs by outcome, duration, progress).
Recording never changes the job's outcome: a failure to record is logged."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from shared.app.reconcile import reconcile
from shared.app.relay import OrderRelay
from shared.clock import iso
from shared.platform import Platform
from shared.store.layout import SYSTEM
from shared.telemetry import metrics
from shared.telemetry.status import JOBRUN_PK, jobrun_id

log = logging.getLogger("accrue.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    # NCRONTAB for the Azure timer trigger (six fields, seconds first).
    schedule: str
    # The local scheduler's interval, in seconds.
    every_seconds: float
    run: Callable[[Platform], object]


def run_job(job: Job, platform: Platform) -> object:
    """Run ``job`` and record the run (see the module docstring); its exception propagates."""
    started, wall = time.monotonic(), platform.clock.now()
    outcome, error, result = "failed", None, None
    try:
        result = job.run(platform)
        outcome = "ok"
        return result
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        seconds = time.monotonic() - started
        progress = progress_of(result)
        metrics.job_run(job.name, outcome, seconds, progress)
        try:
            platform.store.upsert(SYSTEM, {
                "id": jobrun_id(job.name), "pk": JOBRUN_PK, "docType": "jobRun", "job": job.name,
                "startedAt": iso(wall), "finishedAt": iso(platform.clock.now()), "outcome": outcome,
                "durationSeconds": round(seconds, 3), "error": error, "progress": progress})
        except Exception:  # noqa: BLE001 - the record is for operators; the job's outcome stands
            log.warning("could not record the run of job %s", job.name, exc_info=True)


def progress_of(result: Any) -> dict[str, int]:
    """The counts a job reported (a dict or a dataclass: its integers, and its lists' lengths)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if not isinstance(result, dict):
        return {}
    counts: dict[str, int] = {}
    for key, value in result.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            counts[str(key)] = value
        elif isinstance(value, (list, tuple)):
            counts[str(key)] = len(value)
    return counts


def _relay_orders(platform: Platform) -> object:
    # Claimed orders whose publish was not confirmed (a crash or a bus outage between the
    # claim and the publish): published again, which credits nothing twice (shared/app/relay.py).
    return OrderRelay(platform.store, platform.event_bus, platform.clock).run_once()


def _reconcile(platform: Platform) -> object:
    report = reconcile(platform.store)
    metrics.reconciliation_drift(len(report.drifts))
    log.info(report.summary().splitlines()[0])
    for drift in report.drifts:
        log.error("ledger drift: %s", drift.line())
    return report


def _deliver_webhooks(platform: Platform) -> object:
    return platform.webhook_worker.run_once()


def _export(platform: Platform) -> object:
    return platform.exports.run_all()


def _release_reservations(platform: Platform) -> object:
    # Idempotent: a reservation already settled is skipped (shared/spend/redemptions.py).
    report = platform.spend.redemptions.release_expired()
    log.info("reservations: %(scanned)d expired scanned, %(released)d released", report)
    return report


def _evaluate_tiers(platform: Platform) -> object:
    # Hourly, so each tenant's evaluation runs soon after its local midnight; a tenant
    # whose scheduled date has already been evaluated is skipped (shared/tiers/service.py).
    reports = platform.tiers.run_due()
    for report in reports:
        log.info("tiers: %s", report.to_json())
    return reports


def _expire_points(platform: Platform) -> object:
    # Hourly, so each tenant's lots expire soon after its local midnight; a tenant already
    # done for its local day is skipped, a run cut short resumes (shared/expiry/service.py).
    return platform.expiry.run()


def _archive_audit(platform: Platform) -> object:
    # Incremental (a checkpoint per tenant), so a run that stops midway resumes; the
    # archive container is under a 7-year immutability policy (bicep/modules/datastorage.bicep).
    written = platform.audit.archive_all()
    log.info("audit archive: %d blob(s) written for %d tenant(s)",
             sum(len(paths) for paths in written.values()), len(written))
    return written


def _complete_erasures(platform: Platform) -> object:
    # Erasures whose follow-up (store files, exports, webhook) failed or was cut short
    # (shared/privacy/erasure.py): the bound of an erasure is one run after the failure.
    done = platform.erasures.run_pending()
    if done:
        log.info("erasures: %d completed", done)
    return done


JOBS: tuple[Job, ...] = (
    # Orders (issue 12): a stranded claim is published within RELAY_GRACE (30 s) plus one period.
    Job("order-relay", "*/15 * * * * *", 5.0, _relay_orders),
    Job("reconcile", "0 30 2 * * *", 24 * 3600.0, _reconcile),
    # Data out (issue 5): webhook deliveries every 10 s (a round is bounded by its budget),
    # the warehouse export nightly.
    Job("webhooks", "*/10 * * * * *", 2.0, _deliver_webhooks),
    Job("exports", "0 0 3 * * *", 24 * 3600.0, _export),
    # Spending (issue 6): release redemption reservations not confirmed in time, every minute.
    Job("reservations", "0 * * * * *", 60.0, _release_reservations),
    # Tiers (issue 6): downgrades at each tenant's periodic evaluation date, in its time zone.
    Job("tiers", "0 5 * * * *", 3600.0, _evaluate_tiers),
    # Expiry (issue 6): EXPIRE entries for what is left of expired lots, per tenant time zone.
    Job("expiry", "0 15 * * * *", 3600.0, _expire_points),
    # Audit (issue 4): new audit records to the immutable archive, nightly.
    Job("audit-archive", "0 45 3 * * *", 24 * 3600.0, _archive_audit),
    # Privacy (issue 12): erasures not completed at once, every minute.
    Job("erasures", "30 * * * * *", 60.0, _complete_erasures),
)
