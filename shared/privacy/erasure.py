"""Erasure that reaches every copy: the right to be forgotten, end to end.

``PersonalDataVault.erase`` destroys the customer's data key and strips the
profile. The copies it cannot reach are handled here, in this order:

1. **intent** (before anything is destroyed): a work item in ``system``
   (partition ``erasures``) and one record in the **erasure log** (written
   again when completing if the blob store refused it here), a blob
   ``@erasures/<YYYY-MM-DD>/<tenantId>/<customerId>.json`` holding only
   ``tenantId``, ``customerId``, ``erasedAt`` (no personal data). The log lives
   in Blob Storage (the audit container: immutable on Azure), not in the
   database, so a restore of the database from a backup does not roll it back:
   ``replay(since)`` erases again everyone erased since the backup point;
2. the vault's erasure (key, blind index, profile; audited ``customer.erased``);
3. the ``customer.erased`` webhook event (customer id and instant only), so
   downstream copies can delete theirs;
4. the store's files: ``forget_deleted`` (SQLite: a truncating WAL checkpoint,
   so no earlier page version keeps the wrapped key or the sealed fields);
5. the exports: every export file holding the customer's personal data is
   rewritten without it (``ExportService.scrub``, audited
   ``customer.exports-rewritten`` with the files); the next export run lists
   the erasure in its ``erasures`` subject.

Steps 2-5 are each safe to repeat. They run at once, in the request; a step that
fails leaves the work item pending and the ``erasures`` job (every minute)
completes it, so the bound is the time of the request, or one minute after the
failing dependency is back. Many erasures at once (a tenant's deletion) pass
``defer`` and are completed together by ``run_pending``: one export scan and one
checkpoint per page of erasures, not per customer.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator

from shared.audit.log import HasActor
from shared.blobs.port import BlobExists, BlobNotFound, BlobSink
from shared.clock import Clock, iso, parse_iso
from shared.errors import DocumentExists, NotFound, PreconditionFailed
from shared.store.layout import CUSTOMERS, PII_KEYS, SYSTEM, customer_pk
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry.logs import fields

if TYPE_CHECKING:
    from shared.exports.service import ExportService
    from shared.privacy.personal import PersonalDataVault
    from shared.webhooks.service import WebhookService

log = logging.getLogger("accrue.erasure")

WORK_PK = "erasures"
LOG_PREFIX = "@erasures/"  # "@" cannot start a tenant id: no clash with the audit archive's paths
LOG_FORMAT = "accrue-erasure"
EVENT_TYPE = "customer.erased"
PENDING_PAGE = 100


def log_path(tenant_id: str, customer_id: str, erased_at: str) -> str:
    return f"{LOG_PREFIX}{erased_at[:10]}/{tenant_id}/{customer_id}.json"


class Erasures:
    def __init__(self, store: DocumentStore, clock: Clock, vault: "PersonalDataVault",
                 webhooks: "WebhookService", exports: "ExportService",
                 log_sink: BlobSink | Callable[[], BlobSink]) -> None:
        self._store = store
        self._clock = clock
        self._vault = vault
        self._webhooks = webhooks
        self._exports = exports
        self._log_factory = log_sink if callable(log_sink) and not hasattr(log_sink, "put") else (lambda: log_sink)
        self._log_sink: BlobSink | None = None
        # Other places holding something derived from a customer's personal data register
        # here (tenant id, customer id): called when the erasure reaches the copies, repeatable
        # (the referral code's keyed email and phone digests, shared/referrals).
        self.also: list[Callable[[str, str], None]] = []

    @property
    def log_sink(self) -> BlobSink:
        if self._log_sink is None:
            self._log_sink = self._log_factory()  # type: ignore[operator]
        return self._log_sink

    # --- erasing ----------------------------------------------------------------------

    def erase(self, tenant_id: str, customer_id: str, who: HasActor | None, reason: str | None, *,
              defer: bool = False) -> dict[str, Any]:
        """Erase the customer everywhere (module docstring); idempotent. NotFound (nothing
        written) for a customer that does not exist. ``defer``: destroy the key now and
        leave the copies to ``run_pending`` (many erasures at once: a tenant's deletion)."""
        doc = self._store.read(CUSTOMERS, customer_pk(tenant_id, customer_id), customer_id)
        if doc is None:
            raise NotFound(f"customer {customer_id!r} does not exist; nothing was erased")
        work = self._intent(tenant_id, customer_id, doc.get("erasedAt"), reason)
        result = self._vault.erase(tenant_id, customer_id, who, reason, erased_at=work["erasedAt"])
        # The invariant everything below relies on: the customer's data key is gone.
        if self._store.read(PII_KEYS, customer_pk(tenant_id, customer_id), "dek") is not None:
            raise AssertionError(f"erasure of {customer_id!r} left its wrapped data key in the store")
        if not defer and (work.get("status") != "done" or not result["alreadyErased"]):
            try:
                self._complete([work])
            except Exception as exc:  # noqa: BLE001 - the key is gone; the job completes the copies
                log.error("erasure of a customer: reaching the copies failed (%s: %s); the erasures job retries "
                          "every minute", type(exc).__name__, exc,
                          extra=fields(tenant=tenant_id, error=type(exc).__name__))
        return result

    def _intent(self, tenant_id: str, customer_id: str, erased_at: str | None, reason: str | None) -> dict[str, Any]:
        work_id = f"{tenant_id}:{customer_id}"
        work = self._store.read(SYSTEM, WORK_PK, work_id)
        if work is None:
            work = {"id": work_id, "pk": WORK_PK, "docType": "erasureWork", "tenantId": tenant_id,
                    "customerId": customer_id, "erasedAt": erased_at or iso(self._clock.now()),
                    "status": "pending", "reason": (reason or "")[:200] or None}
            try:
                work = self._store.create(SYSTEM, work)
            except DocumentExists:  # a concurrent request for the same customer: share its instant
                work = self._store.read(SYSTEM, WORK_PK, work_id) or work
        try:
            self._write_log(tenant_id, customer_id, work["erasedAt"])
        except Exception as exc:  # noqa: BLE001 - the key is destroyed anyway; completing writes the log
            log.error("erasure of a customer: the erasure log could not be written (%s: %s); the erasures job "
                      "writes it", type(exc).__name__, exc, extra=fields(tenant=tenant_id, error=type(exc).__name__))
        return work

    def _write_log(self, tenant_id: str, customer_id: str, erased_at: str) -> None:
        record = {"format": LOG_FORMAT, "version": 1, "tenantId": tenant_id, "customerId": customer_id,
                  "erasedAt": erased_at}
        try:
            self.log_sink.put(log_path(tenant_id, customer_id, erased_at),
                              json.dumps(record, sort_keys=True).encode(), "application/json",
                              {"tenantId": tenant_id, "erasedAt": erased_at})
        except BlobExists:
            pass  # written by an earlier attempt: the same record

    def _complete(self, works: list[dict[str, Any]]) -> int:
        """Steps 3-5 for erasures whose key is gone, batched per tenant (one export scan and
        one checkpoint for them all); each repeatable. Marked done only once all succeeded."""
        by_tenant: dict[str, list[dict[str, Any]]] = {}
        for work in works:
            by_tenant.setdefault(work["tenantId"], []).append(work)
        for tenant_id, items in by_tenant.items():
            for work in items:
                self._write_log(tenant_id, work["customerId"], work["erasedAt"])  # if the intent could not
                for step in self.also:
                    step(tenant_id, work["customerId"])
                self._webhooks.publish(tenant_id, EVENT_TYPE,
                                       {"customerId": work["customerId"], "erasedAt": work["erasedAt"]},
                                       source_id=f"erasure:{work['customerId']}", occurred_at=work["erasedAt"])
            self._exports.scrub(tenant_id, {work["customerId"] for work in items})
        forget = getattr(self._store, "forget_deleted", None)
        if forget is not None and not forget():
            log.warning("%d erasure(s): the store's WAL is still read by another connection; the erasures "
                        "job retries", len(works), extra=fields(job="erasures", count=len(works)))
            return 0
        done = 0
        for work in works:
            current = self._store.read(SYSTEM, WORK_PK, work["id"])
            if current is None or current.get("status") == "done":
                continue
            try:
                self._store.upsert(SYSTEM, dict(current, status="done", doneAt=iso(self._clock.now())),
                                   if_match=current["_etag"])
                done += 1
            except PreconditionFailed:
                pass  # another process completed it at the same time
        return done

    def run_pending(self, max_pages: int = 100) -> int:
        """The ``erasures`` job: complete erasures deferred, or whose copies could not be
        reached at once; ``PENDING_PAGE`` at a time, one tenant's failure not stopping
        the others. Returns how many were completed."""
        done, after = 0, None
        for _ in range(max_pages):
            bound = (Filter("id", ">", after),) if after else ()
            page = self._store.query(SYSTEM, Query(pk=WORK_PK, filters=(Filter("status", "=", "pending"),) + bound,
                                                   order_by="id", limit=PENDING_PAGE))
            for work in page:
                try:
                    self._vault.erase(work["tenantId"], work["customerId"], None, work.get("reason") or "completion",
                                      erased_at=work["erasedAt"])
                except NotFound:
                    pass  # the profile is gone (a restore from before its registration): the copies remain
            for tenant_id in sorted({w["tenantId"] for w in page}):
                try:
                    done += self._complete([w for w in page if w["tenantId"] == tenant_id])
                except Exception as exc:  # noqa: BLE001 - one tenant's failure must not stop the others
                    log.error("erasures not completed: %s: %s; retried next run", type(exc).__name__, exc,
                              extra=fields(job="erasures", tenant=tenant_id, error=type(exc).__name__))
            if len(page) < PENDING_PAGE:
                break
            after = page[-1]["id"]
        return done

    # --- after a restore --------------------------------------------------------------

    def log_records(self, since: datetime, tenant_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Erasure-log records with ``erasedAt >= since`` (oldest day first)."""
        day = iso(since)[:10]
        for info in self.log_sink.list(LOG_PREFIX):
            parts = info.path[len(LOG_PREFIX):].split("/")
            if len(parts) != 3 or parts[0] < day or (tenant_id is not None and parts[1] != tenant_id):
                continue
            try:
                record = json.loads(self.log_sink.read(info.path))
            except BlobNotFound:
                continue
            if record.get("format") == LOG_FORMAT and parse_iso(record["erasedAt"]) >= since:
                yield record

    def replay(self, since: datetime, tenant_id: str | None = None) -> dict[str, Any]:
        """Re-apply every logged erasure since ``since`` (the backup point of a restore):
        key, profile, blind index, store files, exports, the webhook (same message id
        as the first time, so a receiver sees a duplicate, not a new erasure)."""
        replayed, missing = [], []
        for record in self.log_records(since, tenant_id):
            tenant, customer = record["tenantId"], record["customerId"]
            work_id = f"{tenant}:{customer}"
            work = self._store.read(SYSTEM, WORK_PK, work_id)
            if work is None:
                try:
                    work = self._store.create(SYSTEM, {"id": work_id, "pk": WORK_PK, "docType": "erasureWork",
                                                       "tenantId": tenant, "customerId": customer,
                                                       "erasedAt": record["erasedAt"], "status": "pending",
                                                       "reason": "replayed after a restore"})
                except DocumentExists:
                    work = self._store.read(SYSTEM, WORK_PK, work_id)
            assert work is not None
            try:
                self._vault.erase(tenant, customer, None, "replayed after a restore", erased_at=record["erasedAt"])
                replayed.append(work_id)
            except NotFound:
                missing.append(work_id)  # registered after the backup point: nothing in the store to erase
            self._complete([work])
        return {"since": iso(since), "replayed": replayed, "notInStore": missing}
