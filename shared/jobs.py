"""Timer jobs: what runs on a schedule. The Azure timer triggers and the local
scheduler both read this one list, so a job runs the same code in both.

Jobs whose work grows with the tenants (reconciliation, the warehouse export)
do not do it in their timer run: they *fan out*, enqueueing one work item per
tenant and day (``shared.workitems``), and the ``work-items`` job drains them
in bounded slices, each resumable from its stored cursor. So no timer run
grows with the number of tenants, and a run the host stops (timeout, scale-in,
deploy) loses at most one slice. docs/jobs.md lists the jobs, their bounds and
what an operator sees.

This module imports nothing heavy at load (the job bodies import what they
use): the Functions host indexes the timers without building the product.

Both run a job through ``run_job``, which records the run: ``jobrun:<name>`` in
the system container (last start, end, outcome, what the job reported; read by
``accrue status``) and the job metrics (runs by outcome, duration, progress).
Recording never changes the job's outcome: a failure to record is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import date, timedelta
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from shared.telemetry.logs import fields

if TYPE_CHECKING:
    from shared.platform import Platform
    from shared.workitems import Handler, WorkItems

log = logging.getLogger("accrue.jobs")

# One work-items run: at most this many items, no new slice after this many seconds
# (the Functions timeout is 10 minutes; a slice is far shorter than the remainder).
WORK_ITEMS_PER_RUN = 200
WORK_BUDGET_SECONDS = 45.0
# Warehouse export files one slice writes (a file is one subject of one tenant).
EXPORT_FILES_PER_SLICE = 1
# Customers one maturation slice visits (each: one partition read, a group-committed append).
MATURATION_CUSTOMERS_PER_SLICE = 200
# Micro-batch files one slice writes: a micro-batch is small, so most finish in one slice.
MICROBATCH_FILES_PER_SLICE = 16
# Tenants documents one fan-out slice reads (and enqueues an item each for).
TENANTS_PER_FAN_OUT_SLICE = 500


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
    from shared.clock import iso  # noqa: PLC0415 - import-light module (see the docstring)
    from shared.store.layout import SYSTEM  # noqa: PLC0415
    from shared.telemetry import metrics  # noqa: PLC0415
    from shared.telemetry.status import JOBRUN_PK, jobrun_id  # noqa: PLC0415

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
            log.warning("could not record the run of job %s", job.name, exc_info=True, extra=fields())


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
    from shared.app.relay import OrderRelay  # noqa: PLC0415 - import-light module (see docstring)

    # Claimed orders whose publish was not confirmed (a crash or a bus outage between the
    # claim and the publish): published again, which credits nothing twice (shared/app/relay.py).
    return OrderRelay(platform.store, platform.event_bus, platform.clock).run_once()


# --- fan-out: one work item per tenant and day ---------------------------------------


def work_items(platform: Platform) -> WorkItems:
    """The work-item queue over the platform's store, with this module's handlers."""
    from shared.workitems import WorkItems  # noqa: PLC0415

    return WorkItems(platform.store, platform.clock, handlers(platform))


def handlers(platform: Platform) -> Mapping[str, Handler]:
    from shared.app.reconcile import reconcile_slice, report_of  # noqa: PLC0415
    from shared.exports.service import rows_per_subject  # noqa: PLC0415
    from shared.workitems import Step  # noqa: PLC0415

    def fan_out(params: Mapping[str, Any], cursor: Any) -> Step:
        # A page of tenants a slice, one item each: even the enqueueing is bounded and resumable.
        after = (cursor or {}).get("after", "")
        page = _tenant_page(platform, after, TENANTS_PER_FAN_OUT_SLICE)
        queue = work_items(platform)
        added = (cursor or {}).get("added", 0)
        for tenant_id in page["tenants"]:
            added += queue.enqueue(params["kind"], tenant_id, params["generation"],
                                   {"tenantId": tenant_id, "generation": params["generation"]})
        cursor = {"after": page["last"] or after, "added": added}
        if not page["more"]:
            log.info("%s: %d work item(s) enqueued for %s", params["kind"], added, params["generation"], extra=fields())
            return Step(cursor, done=True, result={"enqueued": added})
        return Step(cursor)

    def reconcile_tenant(params: Mapping[str, Any], cursor: Any) -> Step:
        tenant_id = params["tenantId"]
        cursor, done = reconcile_slice(platform.store, tenant_id, cursor)
        if not done:
            return Step(cursor)
        report = report_of(cursor)
        from shared.telemetry import metrics  # noqa: PLC0415

        metrics.reconciliation_drift(len(report.drifts))
        log.info("tenant %s: %s", tenant_id, report.summary().splitlines()[0], extra=fields(tenant=tenant_id))
        for drift in report.drifts:
            log.error("ledger drift: %s", drift.line(), extra=fields())
        return Step(cursor, done=True, result={"ok": report.ok, "customers": report.customers,
                                                "entries": report.entries, "stale": report.stale,
                                                "drifts": len(report.drifts)})

    def export_tenant(params: Mapping[str, Any], cursor: Any) -> Step:
        # The export's own pending run is the real cursor (files written so far, ETag-guarded);
        # this one only counts the slices for the operator.
        # Keyed by the day: a worker that died after the run's last slice, before the item was
        # marked done, gets the finished run back instead of starting another.
        manifest = platform.exports.run_slice(params["tenantId"], max_files=EXPORT_FILES_PER_SLICE,
                                              run_key=f"nightly:{params.get('generation')}")
        slices = (cursor or {}).get("slices", 0) + 1
        if manifest is None:
            return Step({"slices": slices})
        # The feed has passed midnight: yesterday's micro-batches become one file per subject.
        day = (date.fromisoformat(str(params.get("generation"))) - timedelta(days=1)).isoformat()
        compacted = platform.exports.compact(params["tenantId"], day)
        return Step({"slices": slices}, done=True,
                    result={"runId": manifest["runId"], "rows": rows_per_subject(manifest),
                            "compacted": None if compacted is None else rows_per_subject(compacted)})

    def microbatch_tenant(params: Mapping[str, Any], cursor: Any) -> Step:
        # Near-real-time feed (issue 18): the tenant's incremental run when its period is due.
        tenant_id = params["tenantId"]
        if cursor is None and not platform.exports.microbatch_due(tenant_id):
            return Step({"skipped": True}, done=True, result={"skipped": True})
        manifest = platform.exports.microbatch(tenant_id, max_files=MICROBATCH_FILES_PER_SLICE)
        if manifest is None:
            return Step({"slices": (cursor or {}).get("slices", 0) + 1})
        return Step({"done": True}, done=True,
                    result={"runId": manifest["runId"], "rows": rows_per_subject(manifest)})

    def digest_tenant(params: Mapping[str, Any], cursor: Any) -> Step:
        # Chunks of the tenant's chain heads to the audit archive; the last slice records the root.
        cursor, done, result = platform.chains.digest_slice(params["tenantId"], params["generation"], cursor)
        return Step(cursor, done=done, result=result and {k: result[k] for k in ("written", "customers", "root")
                                                          if k in result})

    def mature_tenant(params: Mapping[str, Any], cursor: Any) -> Step:
        # Pending points whose return window passed (shared/pending/maturation.py): a slice is
        # at most MATURATION_CUSTOMERS_PER_SLICE customers of one calendar hour.
        tenant_id = params["tenantId"]
        cursor = cursor if cursor is not None else platform.maturation.start(tenant_id)
        cursor, done = platform.maturation.slice(tenant_id, cursor, MATURATION_CUSTOMERS_PER_SLICE)
        if not done:
            return Step(cursor)
        if cursor["matured"] or cursor["failed"]:
            log.info("maturation: %d pending earn(s) matured (%d points), %d customer(s) failed",
                     cursor["matured"], cursor["points"], cursor["failed"], extra=fields(tenant=tenant_id))
        return Step(cursor, done=True, result={"matured": cursor["matured"], "points": cursor["points"],
                                                "customers": cursor["customers"], "failed": cursor["failed"]})

    def import_slice(params: Mapping[str, Any], cursor: Any) -> Step:
        # One bounded slice of an import (shared/imports/service.py): its cursor is the
        # file offset and the counts, so a slice redone after a crash counts once.
        return platform.imports.run_slice(dict(params), cursor)

    def occasions_fan_out(params: Mapping[str, Any], cursor: Any) -> Step:
        # Tenants with occasion settings, a page a slice: one item per tenant and *local* date,
        # so each tenant's day is done once, soon after its own midnight.
        from shared.occasions.service import due_tenants  # noqa: PLC0415

        after = (cursor or {}).get("after", "")
        tenants, last, more = due_tenants(platform.store, after, TENANTS_PER_FAN_OUT_SLICE)
        queue = work_items(platform)
        added = (cursor or {}).get("added", 0)
        for tenant_id in tenants:
            # Today, and any local date since the last one enqueued that no run saw (at most a week).
            days = platform.occasions.days_due(tenant_id)
            for day in (d.isoformat() for d in days):
                added += queue.enqueue("occasions", tenant_id, day, {"tenantId": tenant_id, "day": day})
            platform.occasions.enqueued(tenant_id, days[-1])
        cursor = {"after": last or after, "added": added}
        return Step(cursor, done=not more, result={"enqueued": added} if not more else None)

    def occasions_tenant(params: Mapping[str, Any], cursor: Any) -> Step:
        from datetime import date  # noqa: PLC0415

        cursor, done = platform.occasions.run_slice(params["tenantId"], date.fromisoformat(params["day"]), cursor)
        return Step(cursor, done=done, result={"awarded": cursor["awarded"]} if done else None)

    return {"fan-out": fan_out, "reconcile": reconcile_tenant, "export": export_tenant,
            "export-microbatch": microbatch_tenant, "ledger-digest": digest_tenant, "mature": mature_tenant,
            "import": import_slice, "occasions-fan-out": occasions_fan_out, "occasions": occasions_tenant}


def _generation(platform: Platform) -> str:
    return platform.clock.now().strftime("%Y-%m-%d")


def _tenant_page(platform: Platform, after: str, limit: int) -> dict[str, Any]:
    """Tenant ids after ``after``, at most ``limit`` documents of the tenants container read."""
    from shared.store.layout import TENANTS  # noqa: PLC0415
    from shared.store.port import Filter, Query  # noqa: PLC0415

    docs = platform.store.query(TENANTS, Query(pk=None, filters=(Filter("id", ">", after),), order_by="id",
                                               limit=limit))
    # The container holds other documents of a tenant's partition too; a tenant is id == pk.
    return {"tenants": [d["id"] for d in docs if d["id"] == d["pk"]], "last": docs[-1]["id"] if docs else None,
            "more": len(docs) == limit}


def _fan_out(platform: Platform, kind: str, generation: str | None = None) -> object:
    # One create: the fan-out item enqueues the tenants' items itself, a page a slice.
    generation = generation or _generation(platform)
    added = work_items(platform).enqueue("fan-out", kind, generation, {"kind": kind, "generation": generation})
    log.info("%s: fan-out for %s %s", kind, generation, "enqueued" if added else "already enqueued", extra=fields())
    return {"kind": kind, "generation": generation, "enqueued": added}


def _mature(platform: Platform) -> object:
    # Hourly, one work item per tenant and UTC hour (the generation): pending points whose
    # return window passed become available (shared/pending/maturation.py).
    generation = platform.clock.now().strftime("%Y-%m-%dT%H")
    added = work_items(platform).enqueue("fan-out", "mature", generation, {"kind": "mature", "generation": generation})
    return {"kind": "mature", "generation": generation, "enqueued": added}


def _reconcile(platform: Platform) -> object:
    return _fan_out(platform, "reconcile")


def _export(platform: Platform) -> object:
    return _fan_out(platform, "export")


def _export_microbatch(platform: Platform) -> object:
    # Every minute, an item per tenant (keyed by the minute); a tenant whose period has not
    # passed is skipped at once, so each tenant's period (microBatchMinutes) is honoured.
    return _fan_out(platform, "export-microbatch", platform.clock.now().strftime("%Y-%m-%dT%H%M"))


def _run_work_items(platform: Platform) -> object:
    report = work_items(platform).run(max_items=WORK_ITEMS_PER_RUN, budget_seconds=WORK_BUDGET_SECONDS)
    if report.claimed:
        log.info("work items: %d claimed, %d slice(s), %d finished, %d to resume, %d failed, %d parked",
                 report.claimed, report.slices, len(report.finished), len(report.resumable), len(report.failed),
                 len(report.parked), extra=fields())
    return report


def _occasions(platform: Platform) -> object:
    # Hourly (issue 20): one fan-out item per UTC hour; it enqueues one item per tenant and
    # local date, so a tenant's birthdays and anniversaries run once, after its own midnight.
    hour = platform.clock.now().strftime("%Y-%m-%dT%H")
    added = work_items(platform).enqueue("occasions-fan-out", "all", hour, {})
    return {"generation": hour, "enqueued": added}


def _deliver_webhooks(platform: Platform) -> object:
    return platform.webhook_worker.run_once()


def _release_reservations(platform: Platform) -> object:
    # Idempotent: a reservation already settled is skipped (shared/spend/redemptions.py).
    report = platform.spend.redemptions.release_expired()
    log.info("reservations: %(scanned)d expired scanned, %(released)d released", report, extra=fields())
    return report


def _evaluate_tiers(platform: Platform) -> object:
    # Hourly, so each tenant's evaluation runs soon after its local midnight; a tenant
    # whose scheduled date has already been evaluated is skipped (shared/tiers/service.py).
    reports = platform.tiers.run_due()
    for report in reports:
        log.info("tiers: %s", report.to_json(), extra=fields())
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
             sum(len(paths) for paths in written.values()), len(written), extra=fields())
    return written


def _ledger_digest(platform: Platform) -> object:
    # Daily, per tenant: the Merkle root over every customer's chain head, to the audit log and
    # its archive (shared/app/ledger_chain.py), as one work item per tenant in bounded slices.
    return _fan_out(platform, "ledger-digest")


def _recover_transfers(platform: Platform) -> object:
    # Transfers stopped between their steps (a crash after the debit, after the credit, before
    # completion) are driven to their end; every step is idempotent (shared/transfers/saga.py).
    report = platform.transfers.recover()
    if report["recovered"] or report["failed"]:
        log.info("transfers: %(scanned)d stalled, %(recovered)d recovered, %(failed)d failed", report,
                 extra=fields())
    return report


def _complete_erasures(platform: Platform) -> object:
    # Erasures whose follow-up (store files, exports, webhook) failed or was cut short
    # (shared/privacy/erasure.py): the bound of an erasure is one run after the failure.
    done = platform.erasures.run_pending()
    if done:
        log.info("erasures: %d completed", done, extra=fields())
    return done


def _sweep_expired(platform: Platform) -> object:
    # Time to live (issue 16, shared/store/layout.py TTL_RULES): the embedded store hides
    # expired documents at once and deletes them here, in bounded rounds. Cosmos DB deletes
    # expired items itself, so on Azure the store has no sweep and this does nothing.
    sweep = getattr(platform.store, "sweep_expired", None)
    if sweep is None:
        return 0
    deleted = 0
    for _ in range(100):
        swept = sweep()
        deleted += swept
        if swept == 0:
            break
    if deleted:
        log.info("ttl sweep: %d expired document(s) deleted", deleted, extra=fields())
    return deleted


def _settle_vouchers(platform: Platform) -> object:
    # Vouchers (issue 20, shared/vouchers): expire vouchers past their date and finish the
    # refunds a cancel or expiry left pending; bounded per run (a page of each), idempotent.
    report = platform.vouchers.run_due()
    if report["expired"] or report["refunded"]:
        log.info("vouchers: %d expired, %d refunded", report["expired"], report["refunded"], extra=fields())
    return report


JOBS: tuple[Job, ...] = (
    # Orders (issue 12): a stranded claim is published within RELAY_GRACE (30 s) plus one period.
    Job("order-relay", "*/15 * * * * *", 5.0, _relay_orders),
    # Fan-out (issue 16): reconciliation and exports enqueue one work item per tenant and day;
    # work-items drains them in bounded, resumable slices every minute.
    Job("reconcile", "0 30 2 * * *", 24 * 3600.0, _reconcile),
    Job("work-items", "15 * * * * *", 60.0, _run_work_items),
    # Data out (issue 5): webhook deliveries every 10 s (a round is bounded by its budget),
    # the warehouse export nightly.
    Job("webhooks", "*/10 * * * * *", 2.0, _deliver_webhooks),
    # Exports (issue 18): the micro-batch feed every minute (each tenant at its own period, default
    # 5 min); the nightly run catches up and compacts yesterday's micro-batches.
    Job("exports", "0 0 3 * * *", 24 * 3600.0, _export),
    Job("export-microbatch", "0 * * * * *", 60.0, _export_microbatch),
    # Spending (issue 6): release redemption reservations not confirmed in time, every minute.
    Job("reservations", "0 * * * * *", 60.0, _release_reservations),
    # Tiers (issue 6): downgrades at each tenant's periodic evaluation date, in its time zone.
    Job("tiers", "0 5 * * * *", 3600.0, _evaluate_tiers),
    # Expiry (issue 6): EXPIRE entries for what is left of expired lots, per tenant time zone.
    Job("expiry", "0 15 * * * *", 3600.0, _expire_points),
    # Pending points (issue 19): earns past their return window mature, hourly, fanned out per tenant.
    Job("maturation", "0 20 * * * *", 3600.0, _mature),
    # Audit (issue 4): new audit records to the immutable archive, nightly.
    Job("audit-archive", "0 45 3 * * *", 24 * 3600.0, _archive_audit),
    # Privacy (issue 12): erasures not completed at once, every minute.
    Job("erasures", "30 * * * * *", 60.0, _complete_erasures),
    Job("ttl-sweep", "0 50 * * * *", 3600.0, _sweep_expired),
    # Ledger hash chain (issue 19): the daily tenant digest (Merkle root of the chain heads).
    Job("ledger-digest", "0 20 2 * * *", 24 * 3600.0, _ledger_digest),
    # Transfers (issue 19): saga recovery of transfers stopped between their steps, every minute.
    Job("transfers", "45 * * * * *", 60.0, _recover_transfers),
    # Vouchers (issue 20): expiry and pending refunds of unused vouchers, every 10 minutes.
    Job("vouchers", "0 */10 * * * *", 600.0, _settle_vouchers),
    # Birthday and anniversary rewards (issue 20): per tenant local date, through work items.
    Job("occasions", "0 10 * * * *", 3600.0, _occasions),
)

BY_NAME: dict[str, Job] = {job.name: job for job in JOBS}
