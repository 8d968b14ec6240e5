"""The delivery worker: sends due webhook deliveries, retries, records every attempt.

``DeliveryWorker.run_once`` is the body of the frequent timer job (Azure) and of
the local loop. One round:

1. lists the active endpoints, and for each the due deliveries (at most
   ``per_endpoint_batch``, oldest first), and queues them in a ``FairQueue``
   (``shared.webhooks.fairness``), tenants and endpoints oldest due first;
2. sends them on a bounded thread pool (``pool_size``): each free thread takes
   the next delivery of the tenant with the fewest in flight (ties:
   round-robin), never more than ``per_tenant_concurrency`` of one tenant nor
   ``per_endpoint_concurrency`` of one endpoint at once. An endpoint that gives
   no HTTP answer (timeout, reset) is offered nothing more this round. So a
   tenant's hung endpoints hold at most ``per_tenant_concurrency`` threads, each
   for at most the sender's deadline (<= 15 s), and another tenant's due
   delivery is among the first sent whatever that backlog. When the round's
   budget is spent no new delivery starts; what was not started stays due
   (``RoundReport.deferred``) and, being older, goes first next round. A round
   that runs long (hung endpoints using up their deadlines) looks for newly due
   work every ``refresh_every`` seconds (the timer's period), so a delivery that
   comes due meanwhile does not wait for the round to end;
3. before sending, leases the delivery (ETag-guarded: two workers never send the
   same task at once; a worker that dies frees it when the lease ends) and checks
   the URL again (SSRF guard, fresh resolution, connect to the checked address).

Outcome of an attempt: 2xx succeeded; anything else (3xx included: redirects are
not followed) failed and retried on ``SCHEDULE`` (after the first attempt: 5 s,
5 min, 30 min, 2 h, 5 h, 10 h, 10 h), each delay jittered by +-10 %, or after
``Retry-After`` on 429/503 (capped at 24 h); after the last one the delivery is
``failed``. A 410 disables the endpoint at once; an endpoint failing without a
single success for ``DISABLE_AFTER`` (5 days) is disabled. Either is recorded in
the tenant's audit log and announced by an ``endpoint.disabled`` event to the
tenant's other endpoints (``WebhookService.announce_disabled``; a disable a
stopped worker left unannounced is picked up by the next round). Every attempt is
appended to ``webhookattempts``: status, latency, error, a short response excerpt.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable

from shared.clock import Clock, iso, parse_iso
from shared.errors import AccrueError, DocumentExists, PreconditionFailed
from shared.store.layout import WEBHOOK_ATTEMPTS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS, attempt_pk
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry import metrics, tracing
from shared.telemetry.logs import fields
from shared.webhooks.fairness import FairQueue
from shared.webhooks.http import HttpResult, PinnedSender
from shared.webhooks.service import WebhookService, delivery_pk
from shared.webhooks.signing import signature_header
from shared.webhooks.ssrf import UnsafeUrl, check_url
from shared.webhooks.urls import normalise_url

log = logging.getLogger("accrue.webhooks")

# Delay before attempt n+1 after attempt n failed (n = 1..7); 8 attempts in all.
SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(SCHEDULE) + 1
DISABLE_AFTER = timedelta(days=5)
MAX_RETRY_AFTER = 24 * 3600.0
JITTER = 0.10
# An automatic disable not announced after this long was left by a worker that stopped: the sweep
# announces it (long enough that the worker that disabled it is surely done announcing itself).
ANNOUNCE_SWEEP_AFTER = timedelta(seconds=60)


@dataclass
class RoundReport:
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    given_up: int = 0
    skipped: int = 0
    deferred: int = 0  # due, not started when the budget ended: first in the next round
    endpoints_disabled: list[str] = field(default_factory=list)

    def add(self, other: "RoundReport") -> None:
        self.sent += other.sent
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.given_up += other.given_up
        self.skipped += other.skipped
        self.deferred += other.deferred
        self.endpoints_disabled += other.endpoints_disabled


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, min((moment - now).total_seconds(), MAX_RETRY_AFTER))


class DeliveryWorker:
    def __init__(self, store: DocumentStore, clock: Clock, service: WebhookService, *,
                 sender: PinnedSender | None = None, pool_size: int = 16, per_tenant_concurrency: int = 4,
                 per_endpoint_concurrency: int = 2, per_endpoint_batch: int = 50, round_budget: float = 45.0,
                 refresh_every: float = 10.0,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        if not 1 <= per_endpoint_concurrency <= per_tenant_concurrency < pool_size:
            raise ValueError("need 1 <= per-endpoint <= per-tenant concurrency < pool size: "
                             "one tenant may never hold the whole pool")
        self._store = store
        self._clock = clock
        self._service = service
        self._sender = sender or PinnedSender()
        self.pool_size = pool_size
        self.per_tenant_concurrency = per_tenant_concurrency
        self.per_endpoint_concurrency = per_endpoint_concurrency
        self.per_endpoint_batch = per_endpoint_batch
        self.round_budget = round_budget
        self.refresh_every = refresh_every  # a long round looks for newly due work this often
        self._wall = wall  # the webhook-timestamp is real time: receivers compare it with their clock
        self._monotonic = monotonic  # the round's budget
        self._rng = rng or random.Random()
        self._lease = timedelta(seconds=self._sender.deadline + 30)

    # --- a round ---------------------------------------------------------------------

    def run_once(self) -> RoundReport:
        # Idle (the outbox marker says nothing is due yet): one point read, nothing else.
        if self._service.outbox.check().idle:
            return RoundReport()
        report = self._round()
        # Settled only after a round that found nothing to send (under load the marker stays due
        # and no round pays for the look-ahead), and only after a round that ended normally:
        # one that raised leaves the marker due.
        if report.sent == 0 and report.deferred == 0:
            self._service.outbox.settle(self._earliest_due)
        return report

    def _earliest_due(self) -> str | None:
        """The earliest moment a round has work: a pending delivery's next attempt (a leased
        one's lease end included), or an unannounced disable's sweep time."""
        candidates: list[str] = []
        endpoints = self._store.query(WEBHOOK_ENDPOINTS, Query(pk=None, filters=(Filter("status", "=", "active"),),
                                                               limit=10_000))
        for endpoint in endpoints:
            first = self._store.query(WEBHOOK_DELIVERIES, Query(
                pk=delivery_pk(endpoint["tenantId"], endpoint["id"]), filters=(Filter("status", "=", "pending"),),
                order_by="nextAttemptAt", limit=1))
            candidates += [d["nextAttemptAt"] for d in first]
        for doc in self._service.unannounced_disables(-ANNOUNCE_SWEEP_AFTER):
            candidates.append(iso(parse_iso(doc["disabledAt"]) + ANNOUNCE_SWEEP_AFTER))
        return min(candidates) if candidates else None

    def _round(self) -> RoundReport:
        report = RoundReport()
        started = self._monotonic()
        self._announce_missed_disables()
        queue: FairQueue[tuple[dict[str, Any], dict[str, Any]]] = FairQueue(self.per_tenant_concurrency,
                                                                            self.per_endpoint_concurrency)
        queued: set[str] = set()  # delivery ids of this round: each is attempted once per round at most
        if not self._queue_due(queue, queued):
            return report
        next_look = started + self.refresh_every
        running: dict[Future[tuple[bool, RoundReport]], tuple[str, str]] = {}
        with ThreadPoolExecutor(max_workers=self.pool_size, thread_name_prefix="webhook") as pool:
            while True:
                in_budget = self._monotonic() - started < self.round_budget
                if in_budget and self._monotonic() >= next_look:
                    # A long round (hung endpoints running out their deadlines) looks for newly due
                    # work as often as the timer would have started a round: nobody waits for it to end.
                    self._queue_due(queue, queued)
                    next_look = self._monotonic() + self.refresh_every
                # A free thread takes the fairest next delivery (shared.webhooks.fairness); none
                # is started once the budget is spent, and those running end by their deadline.
                while in_budget and len(running) < self.pool_size:
                    unit = queue.take()
                    if unit is None:
                        break
                    tenant_id, endpoint_id, (endpoint, delivery) = unit
                    running[pool.submit(self._unit, endpoint, delivery)] = (tenant_id, endpoint_id)
                    in_budget = self._monotonic() - started < self.round_budget
                if not running:
                    break
                finished, _ = wait(running, timeout=max(0.01, next_look - self._monotonic()) if in_budget else None,
                                   return_when=FIRST_COMPLETED)
                for future in finished:
                    tenant_id, endpoint_id = running.pop(future)
                    stop, unit_report = future.result()  # _unit never raises
                    report.add(unit_report)
                    queue.done(tenant_id, endpoint_id, stop=stop)
        report.deferred = queue.waiting()
        if report.sent or report.deferred:
            log.info("webhooks: %d sent, %d succeeded, %d failed, %d given up, %d endpoint(s) disabled, "
                     "%d left for the next round", report.sent, report.succeeded, report.failed, report.given_up,
                     len(report.endpoints_disabled), report.deferred, extra=fields(job="webhooks", count=report.sent))
        return report

    def _queue_due(self, queue: FairQueue[tuple[dict[str, Any], dict[str, Any]]], queued: set[str]) -> int:
        """Add the due deliveries not yet queued in this round; how many were added."""
        now = iso(self._clock.now())
        endpoints = self._store.query(WEBHOOK_ENDPOINTS, Query(pk=None, filters=(Filter("status", "=", "active"),),
                                                               limit=10_000))
        work: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
        for endpoint in endpoints:
            due = self._store.query(WEBHOOK_DELIVERIES, Query(
                pk=delivery_pk(endpoint["tenantId"], endpoint["id"]),
                filters=(Filter("status", "=", "pending"), Filter("nextAttemptAt", "<=", now)),
                order_by="nextAttemptAt", limit=self.per_endpoint_batch))
            due = [d for d in due if d["id"] not in queued]
            if due:
                work.append((due[0]["nextAttemptAt"], endpoint, due))
        # Oldest due first (tenants by their oldest, then endpoints): what a round left
        # undone (the budget ended) keeps its old due time and so goes first in the next.
        oldest: dict[str, str] = {}
        for first_due, endpoint, _ in work:
            oldest[endpoint["tenantId"]] = min(first_due, oldest.get(endpoint["tenantId"], first_due))
        work.sort(key=lambda w: (oldest[w[1]["tenantId"]], w[1]["tenantId"], w[0], w[1]["id"]))
        added = 0
        for _, endpoint, due in work:
            queue.add(endpoint["tenantId"], endpoint["id"], [(endpoint, d) for d in due])
            queued.update(d["id"] for d in due)
            added += len(due)
        return added

    def _unit(self, endpoint: dict[str, Any], delivery: dict[str, Any]) -> tuple[bool, RoundReport]:
        """One delivery on a pool thread: its report, and whether its endpoint should get no
        more in this round (no HTTP answer at all: the next ones would only wait as long;
        disabled; or trouble before the attempt could be recorded)."""
        unit_report = RoundReport()
        try:
            result = self._deliver(endpoint, delivery, unit_report)
        except Exception:  # noqa: BLE001 - e.g. the store failed; the lease frees the task for a later round
            log.exception("webhook delivery failed before its attempt was recorded",
                          extra=fields(tenant=endpoint.get("tenantId"), endpoint_id=endpoint["id"],
                                       delivery_id=delivery.get("id")))
            return True, unit_report
        stop = (result is not None and result.status is None) or endpoint["id"] in unit_report.endpoints_disabled
        return stop, unit_report

    def _announce_missed_disables(self) -> None:
        """Endpoints disabled by a worker that stopped before recording and announcing it."""
        for doc in self._service.unannounced_disables(ANNOUNCE_SWEEP_AFTER):
            try:
                self._service.announce_disabled(doc)
            except Exception:  # noqa: BLE001 - tried again next round; deliveries go on meanwhile
                log.exception("webhook endpoint: its disabling could not be announced",
                              extra=fields(tenant=doc.get("tenantId"), endpoint_id=doc["id"]))

    def drain(self, max_rounds: int = 100) -> RoundReport:
        """Rounds until nothing is due (tests and the CLI)."""
        total = RoundReport()
        for _ in range(max_rounds):
            report = self.run_once()
            total.add(report)
            if report.sent == 0:
                break
        return total

    # --- one delivery ----------------------------------------------------------------

    def _deliver(self, endpoint: dict[str, Any], delivery: dict[str, Any], report: RoundReport) -> HttpResult | None:
        now = self._clock.now()
        tenant_id = endpoint["tenantId"]
        try:  # the lease: nobody else sends this task until it ends
            leased = self._store.upsert(WEBHOOK_DELIVERIES, dict(delivery, nextAttemptAt=iso(now + self._lease),
                                                                 updatedAt=iso(now)), if_match=delivery["_etag"])
        except PreconditionFailed:
            report.skipped += 1
            return None
        # The endpoint as it is now (it may have been disabled, rotated or deleted since the round began).
        current = self._store.read(WEBHOOK_ENDPOINTS, tenant_id, endpoint["id"])
        message = self._service.message(tenant_id, delivery["messageId"])
        if current is None or current["status"] != "active" or message is None:
            self._finish(leased, "cancelled", None, "endpoint deleted or disabled" if message else "message missing")
            report.skipped += 1
            return None
        attempt_no = delivery["attempts"] + 1
        with tracing.span("webhook delivery", tracing.CLIENT, parent=message.get("traceContext"), tenant=tenant_id,
                          endpoint_id=endpoint["id"], attempt=attempt_no, event_type=delivery.get("eventType")) as span:
            result = self._attempt(current, delivery, message, now)
            span.set_attribute("accrue.succeeded", result.error is None and result.status is not None
                               and 200 <= result.status < 300)
            if result.status is not None:
                span.set_attribute("http.response.status_code", result.status)
        report.sent += 1
        self._record(current, leased, attempt_no, result, report)
        return result

    def _attempt(self, endpoint: dict[str, Any], delivery: dict[str, Any], message: dict[str, Any],
                 now: datetime) -> HttpResult:
        """One attempt's outcome; never raises: any trouble (the guard, the secret, the
        transport, a bug) is a failed result the caller records and schedules a retry for."""
        try:
            # Normalised again here: a URL stored before registration normalised it is sent too.
            target = check_url(normalise_url(endpoint["url"]), self._service.resolver, self._service.allowance)
        except UnsafeUrl as exc:
            return HttpResult(None, 0, {}, b"", error=f"refused by the SSRF guard: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - a resolver fault is this attempt's failure
            log.warning("webhook endpoint: its URL could not be checked (%s)", type(exc).__name__,
                        extra=fields(tenant=endpoint.get("tenantId"), endpoint_id=endpoint["id"],
                                     error=type(exc).__name__))
            return HttpResult(None, 0, {}, b"", error=f"URL check failed: {type(exc).__name__}: {exc}"[:300])
        try:
            live = self._service.live_secrets(endpoint, now)
        except AccrueError as exc:
            log.error("webhook endpoint: its secret cannot be opened (%s)", exc.code,
                      extra=fields(tenant=endpoint.get("tenantId"), endpoint_id=endpoint["id"], error=exc.code))
            return HttpResult(None, 0, {}, b"", error=f"secret unavailable: {exc.code}")
        except Exception as exc:  # noqa: BLE001 - e.g. a sealed secret that no longer opens (InvalidTag)
            log.error("webhook endpoint: its secret cannot be opened (%s)", type(exc).__name__,
                      extra=fields(tenant=endpoint.get("tenantId"), endpoint_id=endpoint["id"],
                                   error=type(exc).__name__))
            return HttpResult(None, 0, {}, b"", error=f"secret unavailable: {type(exc).__name__}")
        started = time.monotonic()
        try:
            body = message["body"].encode("utf-8")
            timestamp = int(self._wall())
            headers = {"webhook-id": delivery["messageId"], "webhook-timestamp": str(timestamp),
                       "webhook-signature": signature_header(live, delivery["messageId"], timestamp, body)}
            result = self._sender.post(target, body, headers)
        except Exception as exc:  # noqa: BLE001 - whatever the transport raises is a failed attempt, never silence
            log.warning("webhook endpoint: the transport raised %s", type(exc).__name__, exc_info=True,
                        extra=fields(tenant=endpoint.get("tenantId"), endpoint_id=endpoint["id"],
                                     error=type(exc).__name__))
            return HttpResult(None, int((time.monotonic() - started) * 1000), {}, b"",
                              error=f"transport error: {type(exc).__name__}: {exc}"[:300])
        if not isinstance(result, HttpResult):  # a broken transport: stop loudly in the log, record the failure
            log.error("webhook transport returned %r instead of an HttpResult", type(result).__name__,
                      extra=fields(endpoint_id=endpoint["id"], error="bad-transport"))
            return HttpResult(None, 0, {}, b"", error=f"transport error: returned {type(result).__name__}")
        return result

    def _record(self, endpoint: dict[str, Any], delivery: dict[str, Any], attempt_no: int, result: HttpResult,
                report: RoundReport) -> None:
        now = self._clock.now()
        ok = result.status is not None and 200 <= result.status < 300
        error = result.error
        if not ok and error is None:
            error = f"HTTP {result.status}" + (" (redirects are not followed)" if 300 <= result.status < 400 else "")
        attempt = {
            "id": f"{delivery['id']}.a{attempt_no}", "pk": attempt_pk(delivery["tenantId"], iso(now)),
            "docType": "webhookAttempt",
            "tenantId": delivery["tenantId"], "endpointId": delivery["endpointId"],
            "messageId": delivery["messageId"], "deliveryId": delivery["id"], "eventType": delivery["eventType"],
            "attempt": attempt_no, "createdAt": iso(now), "url": endpoint["url"], "status": result.status,
            "succeeded": ok, "latencyMs": result.latency_ms, "error": error,
            "responseExcerpt": result.body[:200].decode("utf-8", errors="replace") if result.body else None,
        }
        try:
            self._store.create(WEBHOOK_ATTEMPTS, attempt)
        except DocumentExists:
            pass  # a lease that ran out and was re-taken: the first record stands
        metrics.webhook_attempt("succeeded" if ok else "error" if result.status is None else
                                "gone" if result.status == 410 else "failed")
        if ok:
            report.succeeded += 1
            if delivery.get("createdAt"):  # queued for this endpoint -> delivered
                metrics.webhook_delivered((now - parse_iso(delivery["createdAt"])).total_seconds())
            self._finish(delivery, "succeeded", result.status, None, attempts=attempt_no)
            if endpoint.get("failingSince"):
                self._endpoint_health(endpoint, failing=False)
            return
        report.failed += 1
        if result.status == 410:
            self._finish(delivery, "failed", result.status, error, attempts=attempt_no)
            self._service.auto_disable(endpoint["tenantId"], endpoint["id"], "gone", "the endpoint answered 410 Gone")
            report.endpoints_disabled.append(endpoint["id"])
            log.warning("webhook endpoint disabled: 410 Gone", extra=fields(
                tenant=endpoint["tenantId"], endpoint_id=endpoint["id"], outcome="disabled", status=410))
            return
        if self._endpoint_health(endpoint, failing=True):
            report.endpoints_disabled.append(endpoint["id"])
        if attempt_no >= MAX_ATTEMPTS:
            report.given_up += 1
            self._finish(delivery, "failed", result.status, error, attempts=attempt_no)
            return
        delay = SCHEDULE[attempt_no - 1] * self._rng.uniform(1 - JITTER, 1 + JITTER)
        if result.status in (429, 503):
            asked = retry_after_seconds(result.headers.get("retry-after"), now)
            if asked is not None:
                delay = max(asked, 1.0)
        self._finish(delivery, "pending", result.status, error, attempts=attempt_no,
                     next_at=now + timedelta(seconds=delay))

    def _finish(self, delivery: dict[str, Any], status: str, http_status: int | None, error: str | None, *,
                attempts: int | None = None, next_at: datetime | None = None) -> None:
        doc = dict(delivery, status=status, lastStatus=http_status, lastError=error, updatedAt=iso(self._clock.now()))
        if attempts is not None:
            doc["attempts"] = attempts
        if next_at is not None:
            doc["nextAttemptAt"] = iso(next_at)
        try:
            self._store.upsert(WEBHOOK_DELIVERIES, doc, if_match=delivery["_etag"])
        except PreconditionFailed:
            log.warning("webhook delivery changed while it was being sent; keeping the other writer's state",
                        extra=fields(tenant=delivery.get("tenantId"), delivery_id=delivery["id"]))

    def _endpoint_health(self, endpoint: dict[str, Any], failing: bool) -> bool:
        """Track how long an endpoint has failed; True if this failure disabled it."""
        now = self._clock.now()
        for _ in range(5):
            doc = self._store.read(WEBHOOK_ENDPOINTS, endpoint["tenantId"], endpoint["id"])
            if doc is None or doc["status"] != "active":
                return False
            if not failing:
                if doc.get("failingSince") is None:
                    return False
                updated = dict(doc, failingSince=None)
            elif doc.get("failingSince") is None:
                updated = dict(doc, failingSince=iso(now))
            elif now - parse_iso(doc["failingSince"]) >= DISABLE_AFTER:
                updated = dict(doc, **self._service.disabled_fields(
                    "failing", f"failing since {doc['failingSince']} (more than 5 days)"))
            else:
                return False
            try:
                saved = self._store.upsert(WEBHOOK_ENDPOINTS, updated, if_match=doc["_etag"])
            except PreconditionFailed:
                continue
            self._service.cache.invalidate(endpoint["tenantId"])
            if updated["status"] == "disabled":
                log.warning("webhook endpoint disabled: %s", updated["disabledReason"],
                            extra=fields(tenant=doc["tenantId"], endpoint_id=doc["id"], outcome="disabled"))
                self._service.announce_or_leave(saved)  # audit log and endpoint.disabled to the others
                return True
            return False
        return False
