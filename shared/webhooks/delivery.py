"""The delivery worker: sends due webhook deliveries, retries, records every attempt.

``DeliveryWorker.run_once`` is the body of the frequent timer job (Azure) and of
the local loop. One round:

1. lists the active endpoints, and for each the due deliveries (at most
   ``per_endpoint_batch``, oldest first), and queues them in a ``FairQueue``
   (``shared.webhooks.fairness``), tenants and endpoints oldest due first;
2. sends them on a bounded thread pool (``pool_size``): each free thread takes
   the next *unit* (up to ``per_unit`` of one endpoint's due deliveries, oldest
   first, sent one after the other on a kept-alive connection; an endpoint's
   due work is split so each of its lanes gets a unit) of the tenant with the
   fewest in flight (ties:
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
3. before sending, leases the unit's deliveries (ETag-guarded, in one partition
   batch: two workers never send the same task at once; a worker that dies frees
   it when the lease ends) and, before **each** attempt, checks the URL again
   (SSRF guard, fresh resolution) and sends through the connection pool of the
   address it checked (``shared.webhooks.http``): a kept-alive connection is
   never a way around the guard. Successful attempts of a unit are recorded
   together when it ends (attempt documents in one group commit, deliveries in
   one partition batch); failures one by one, as they happen. At least once:
   a worker that stops before recording sends again, with the same
   ``webhook-id``, when the lease ends.

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
from shared.errors import AccrueError, DocumentExists, PreconditionFailed, StoreError
from shared.store.layout import (WEBHOOK_ATTEMPTS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS, WEBHOOK_MESSAGES,
                                 attempt_pk, message_pk)
from shared.store.port import Create, DocumentStore, Filter, PartitionBatch, Query, Upsert, one_batch, read_many
from shared.telemetry import metrics, tracing
from shared.telemetry.logs import fields
from shared.webhooks.fairness import FairQueue
from shared.webhooks.http import HttpResult, PinnedSender
from shared.webhooks.service import WebhookService, delivery_pk
from shared.webhooks.events import subscribes
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
    # ASCII digits only: str.isdigit() also takes superscripts ("\u00b2"), which float() refuses.
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, min((moment - now).total_seconds(), MAX_RETRY_AFTER))


# What a thread of the pool takes: an endpoint and up to ``per_unit`` of its due deliveries, oldest first.
Unit = tuple[dict[str, Any], list[dict[str, Any]]]


class DeliveryWorker:
    def __init__(self, store: DocumentStore, clock: Clock, service: WebhookService, *,
                 sender: PinnedSender | None = None, pool_size: int = 16, per_tenant_concurrency: int = 4,
                 per_endpoint_concurrency: int = 2, per_endpoint_batch: int = 50, per_unit: int = 25,
                 round_budget: float = 45.0,
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
        # Deliveries of one endpoint a thread sends in a row, on one kept-alive connection: leased
        # in one partition batch, their messages read together, their successes recorded together.
        if not 1 <= per_unit <= 90:  # a lease batch within a partition batch (MAX_BATCH_OPERATIONS)
            raise ValueError("per_unit must be 1..90")
        self.per_unit = per_unit
        self.round_budget = round_budget
        self.refresh_every = refresh_every  # a long round looks for newly due work this often
        self._wall = wall  # the webhook-timestamp is real time: receivers compare it with their clock
        self._monotonic = monotonic  # the round's budget
        self._rng = rng or random.Random()
        self._lease_for = timedelta(seconds=self._sender.deadline + 30)

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
        sweep = getattr(self._sender, "sweep", None)  # idle connections past their keep-alive
        if sweep is not None:
            sweep()
        queue: FairQueue[Unit] = FairQueue(self.per_tenant_concurrency, self.per_endpoint_concurrency)
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
                    tenant_id, endpoint_id, (endpoint, deliveries) = unit
                    running[pool.submit(self._unit, endpoint, deliveries)] = (tenant_id, endpoint_id)
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
        report.deferred = queue.waiting(measure=lambda unit: len(unit[1]))
        if report.sent or report.deferred:
            log.info("webhooks: %d sent, %d succeeded, %d failed, %d given up, %d endpoint(s) disabled, "
                     "%d left for the next round", report.sent, report.succeeded, report.failed, report.given_up,
                     len(report.endpoints_disabled), report.deferred, extra=fields(job="webhooks", count=report.sent))
        return report

    def _queue_due(self, queue: FairQueue[Unit], queued: set[str]) -> int:
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
            # Units small enough that every lane of the endpoint has one (as with one delivery per
            # thread, up to per_endpoint_concurrency are in flight at once), at most per_unit long.
            size = max(1, min(self.per_unit, -(-len(due) // self.per_endpoint_concurrency)))
            queue.add(endpoint["tenantId"], endpoint["id"],
                      [(endpoint, due[i:i + size]) for i in range(0, len(due), size)])
            queued.update(d["id"] for d in due)
            added += len(due)
        return added

    def _unit(self, endpoint: dict[str, Any], deliveries: list[dict[str, Any]]) -> tuple[bool, RoundReport]:
        """Deliveries of one endpoint on a pool thread, in order: its report, and whether its
        endpoint should get no more in this round (no HTTP answer at all: the next ones would
        only wait as long; disabled; or trouble before an attempt could be recorded)."""
        unit_report = RoundReport()
        try:
            stop = self._deliver_unit(endpoint, deliveries, unit_report)
        except Exception:  # noqa: BLE001 - e.g. the store failed; the lease frees the tasks for a later round
            log.exception("webhook delivery failed before its attempt was recorded",
                          extra=fields(tenant=endpoint.get("tenantId"), endpoint_id=endpoint["id"],
                                       delivery_id=deliveries[0].get("id")))
            return True, unit_report
        return stop, unit_report

    def _announce_missed_disables(self) -> None:
        """Endpoints disabled by a worker that stopped before recording and announcing it."""
        for doc in self._service.unannounced_disables(ANNOUNCE_SWEEP_AFTER):
            try:
                self._service.announce_disabled(doc)
            except Exception:  # noqa: BLE001 - tried again next round; deliveries go on meanwhile
                log.exception("webhook endpoint: its disabling could not be announced",
                              extra=fields(tenant=doc.get("tenantId"), endpoint_id=doc["id"]))

    def close(self) -> None:
        """Close the sender's kept-alive connections (a transport without pools has nothing to close)."""
        closing = getattr(self._sender, "close", None)
        if callable(closing):
            closing()

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

    def _deliver_unit(self, endpoint: dict[str, Any], deliveries: list[dict[str, Any]],
                      report: RoundReport) -> bool:
        """Send ``deliveries`` (one endpoint's, oldest first) one after the other; True: stop the
        endpoint for this round. Each is leased before it is sent and every attempt is recorded;
        successes are recorded together when the unit ends (at-least-once: a worker that dies
        before that sends them again, same ``webhook-id``, once their lease ends)."""
        now = self._clock.now()
        tenant_id = endpoint["tenantId"]
        leased = self._lease(deliveries, now, report)
        if not leased:
            return False
        # An attempt starts only if it ends within the lease: a unit of slow answers must not
        # outlive its lease, or another worker would send the same deliveries meanwhile.
        last_start = now + self._lease_for - timedelta(seconds=self._sender.deadline)
        current: dict[str, Any] | None = endpoint
        messages = read_many(self._store, WEBHOOK_MESSAGES,
                             [(message_pk(tenant_id, d["messageId"]), d["messageId"]) for d in leased])
        succeeded: list[tuple[dict[str, Any], int, HttpResult]] = []
        try:
            for index, (lease, message) in enumerate(zip(leased, messages)):
                if self._clock.now() > last_start:
                    self._unlease(leased[index:], deliveries)  # due again now, for whoever leases them next
                    return False
                # The endpoint as it is now, before each attempt: a disable, delete or new URL the
                # API has confirmed stops the rest of the unit (a point read per delivery).
                current = self._store.read(WEBHOOK_ENDPOINTS, tenant_id, endpoint["id"])
                if current is None or current["status"] != "active" or message is None:
                    self._finish(lease, "cancelled", None,
                                 "endpoint deleted or disabled" if message else "message missing")
                    report.skipped += 1
                    continue
                if not subscribes(current, message["eventType"]):
                    # Unsubscribed since the event was queued: a retry must not send it (an outside review).
                    self._finish(lease, "cancelled", None, "endpoint no longer subscribes to the event type")
                    report.skipped += 1
                    continue
                attempt_no = lease["attempts"] + 1
                with tracing.span("webhook delivery", tracing.CLIENT, parent=message.get("traceContext"),
                                  tenant=tenant_id, endpoint_id=endpoint["id"], attempt=attempt_no,
                                  event_type=lease.get("eventType")) as span:
                    result = self._attempt(current, lease, message, self._clock.now())
                    ok = result.status is not None and 200 <= result.status < 300
                    span.set_attribute("accrue.succeeded", result.error is None and ok)
                    if result.status is not None:
                        span.set_attribute("http.response.status_code", result.status)
                report.sent += 1
                if ok:
                    succeeded.append((lease, attempt_no, result))
                    continue
                self._record(current, lease, attempt_no, result, report)
                if result.status is None or current["id"] in report.endpoints_disabled:
                    # No answer, or disabled: the rest stay due for the next round, not for the lease's end.
                    self._unlease(leased[index + 1:], deliveries)
                    return True
            return False
        finally:
            self._record_successes(current if current is not None else endpoint, succeeded, report)

    def _lease(self, deliveries: list[dict[str, Any]], now: datetime, report: RoundReport) -> list[dict[str, Any]]:
        """Lease the deliveries (ETag-guarded: nobody else sends them until the lease ends), in
        one partition batch (one endpoint's deliveries share a partition); if another worker
        changed one meanwhile, one by one, leaving out (``skipped``) those it holds."""
        changes = [dict(d, nextAttemptAt=iso(now + self._lease_for), updatedAt=iso(now)) for d in deliveries]
        pk = deliveries[0]["pk"]
        assert all(d["pk"] == pk for d in deliveries), "a unit is one endpoint's deliveries"
        try:
            return one_batch(self._store, WEBHOOK_DELIVERIES, pk,
                             [Upsert(c, if_match=d["_etag"]) for c, d in zip(changes, deliveries)])
        except StoreError:
            pass  # one was taken (or changed) meanwhile: lease one by one
        leased = []
        for change, delivery in zip(changes, deliveries):
            try:
                leased.append(self._store.upsert(WEBHOOK_DELIVERIES, change, if_match=delivery["_etag"]))
            except PreconditionFailed:
                report.skipped += 1
        return leased

    def _unlease(self, leases: list[dict[str, Any]], originals: list[dict[str, Any]]) -> None:
        """Give leased, unsent deliveries their due time back (best effort: if this fails, the
        lease's end frees them)."""
        due = {d["id"]: d["nextAttemptAt"] for d in originals}
        for lease in leases:
            try:
                self._store.upsert(WEBHOOK_DELIVERIES, dict(lease, nextAttemptAt=due[lease["id"]]),
                                   if_match=lease["_etag"])
            except StoreError:  # PreconditionFailed among them
                pass

    def _attempt_doc(self, endpoint: dict[str, Any], delivery: dict[str, Any], attempt_no: int,
                     result: HttpResult, now: datetime, ok: bool, error: str | None) -> dict[str, Any]:
        return {
            "id": f"{delivery['id']}.a{attempt_no}", "pk": attempt_pk(delivery["tenantId"], iso(now)),
            "docType": "webhookAttempt",
            "tenantId": delivery["tenantId"], "endpointId": delivery["endpointId"],
            "messageId": delivery["messageId"], "deliveryId": delivery["id"], "eventType": delivery["eventType"],
            "attempt": attempt_no, "createdAt": iso(now), "url": endpoint["url"], "status": result.status,
            "succeeded": ok, "latencyMs": result.latency_ms, "error": error,
            "responseExcerpt": result.body[:200].decode("utf-8", errors="replace") if result.body else None,
        }

    def _record_successes(self, endpoint: dict[str, Any], succeeded: list[tuple[dict[str, Any], int, HttpResult]],
                          report: RoundReport) -> None:
        """Record successful attempts: their attempt documents in one group commit, the
        deliveries ``succeeded`` in one partition batch (each still under its lease's ETag;
        if any changed meanwhile, one by one, so the others are recorded all the same)."""
        if not succeeded:
            return
        now = self._clock.now()
        attempts: dict[str, list[dict[str, Any]]] = {}
        finished = []
        for lease, attempt_no, result in succeeded:
            doc = self._attempt_doc(endpoint, lease, attempt_no, result, now, True, result.error)
            attempts.setdefault(doc["pk"], []).append(doc)
            finished.append((lease, dict(lease, status="succeeded", lastStatus=result.status, lastError=None,
                                         updatedAt=iso(now), attempts=attempt_no)))
        batches = [PartitionBatch(pk, [Create(d) for d in docs]) for pk, docs in attempts.items()]
        self._store.batches(WEBHOOK_ATTEMPTS, batches)
        for batch in batches:
            if batch.error is not None:  # a lease that ran out and was re-taken: the first record stands
                for op in batch.operations:
                    try:
                        self._store.create(WEBHOOK_ATTEMPTS, op.doc)  # type: ignore[union-attr]
                    except DocumentExists:
                        pass
        try:
            one_batch(self._store, WEBHOOK_DELIVERIES, succeeded[0][0]["pk"],
                      [Upsert(doc, if_match=lease["_etag"]) for lease, doc in finished])
        except StoreError:
            for (lease, attempt_no, result) in succeeded:
                self._finish(lease, "succeeded", result.status, None, attempts=attempt_no)
        for lease, _, _ in succeeded:
            metrics.webhook_attempt("succeeded")
            report.succeeded += 1
            if lease.get("createdAt"):  # queued for this endpoint -> delivered
                metrics.webhook_delivered((now - parse_iso(lease["createdAt"])).total_seconds())
        if endpoint.get("failingSince"):
            self._endpoint_health(endpoint, failing=False)

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
        attempt = self._attempt_doc(endpoint, delivery, attempt_no, result, now, ok, error)
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
