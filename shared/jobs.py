"""Timer jobs: what runs on a schedule. The Azure timer triggers and the local
scheduler both read this one list, so a job runs the same code in both."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from shared.app.reconcile import reconcile
from shared.app.relay import OrderRelay
from shared.platform import Platform
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    # NCRONTAB for the Azure timer trigger (six fields, seconds first).
    schedule: str
    # The local scheduler's interval, in seconds.
    every_seconds: float
    run: Callable[[Platform], object]


def _relay_orders(platform: Platform) -> object:
    # Claimed orders whose publish was not confirmed (a crash or a bus outage between the
    # claim and the publish): published again, which credits nothing twice (shared/app/relay.py).
    return OrderRelay(platform.store, platform.event_bus, platform.clock).run_once()


def _reconcile(platform: Platform) -> object:
    report = reconcile(platform.store)
    log.info(report.summary().splitlines()[0], extra=fields(job="reconcile", count=len(report.drifts)))
    for drift in report.drifts:
        log.error("ledger drift: %s", drift.line(), extra=fields(job="reconcile", outcome="drift"))
    return report


def _deliver_webhooks(platform: Platform) -> object:
    return platform.webhook_worker.run_once()


def _export(platform: Platform) -> object:
    return platform.exports.run_all()


def _release_reservations(platform: Platform) -> object:
    # Idempotent: a reservation already settled is skipped (shared/spend/redemptions.py).
    report = platform.spend.redemptions.release_expired()
    log.info("reservations: %(scanned)d expired scanned, %(released)d released", report,
             extra=fields(job="release-reservations"))
    return report


def _evaluate_tiers(platform: Platform) -> object:
    # Hourly, so each tenant's evaluation runs soon after its local midnight; a tenant
    # whose scheduled date has already been evaluated is skipped (shared/tiers/service.py).
    reports = platform.tiers.run_due()
    for report in reports:
        log.info("tiers: %s", report.to_json(), extra=fields(job="tiers"))
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
             sum(len(paths) for paths in written.values()), len(written), extra=fields(job="audit-archive"))
    return written


def _complete_erasures(platform: Platform) -> object:
    # Erasures whose follow-up (store files, exports, webhook) failed or was cut short
    # (shared/privacy/erasure.py): the bound of an erasure is one run after the failure.
    done = platform.erasures.run_pending()
    if done:
        log.info("erasures: %d completed", done, extra=fields(job="erasures", count=done))
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
