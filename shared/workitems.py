"""Work items: the bounded, resumable units a timer job fans out to.

A nightly job that walks every tenant in one timer run stops finishing once
tenants grow (the Functions timeout is 10 minutes). So such a job only
*enqueues*: one work item per tenant (and day), a small document in the
``system`` container (partition ``workitems``, id ``work:<kind>:<key>@<gen>``).
The ``work-items`` timer then drains them: each run claims a bounded number of
due items and works each in *slices*, a slice being a bounded piece of work
that ends with a JSON cursor saying where the next one starts.

What it guarantees:

* **Enqueue is idempotent.** The id carries the generation (the day): a timer
  that fires twice, or a run on two instances, creates the item once.
* **One worker per item.** An item is claimed with an ETag-guarded write that
  sets a lease (``dueAt`` = now + ``lease``); every slice's cursor is written
  under the same ETag and renews the lease, so a worker that lost its lease
  (it stalled past it and another took the item) stops at its next write.
* **Resumable.** The cursor is stored after every slice. A run that ends its
  time budget puts the item back as due at once (the next run goes on from the
  cursor); a worker that dies mid-slice leaves the item ``running`` until its
  lease ends, when the next run takes it over from the last stored cursor.
  A slice must therefore be safe to redo from its starting cursor (the
  handlers keep what they count in the cursor itself, written in the same
  write, so a redone slice counts once; files are written to fixed paths).
* **Bounded retries, visible parking.** A slice that raises, or a lease that
  ran out (the worker died), counts as a failed attempt: retried after a
  back-off, and after ``max_attempts`` failures in a row (a slice that
  succeeds resets the count) the item is ``parked`` with its last
  error, logged at ERROR and listed by ``list(status="parked")`` (CLI:
  ``python -m shared.local jobs``) until an operator ``retry``-s it.
* **Bounded runs.** ``run`` starts no item and no slice after its budget is
  spent, and claims at most ``max_items``; a slice's own bound (the handler's)
  keeps one slice far below the lease.

Handlers are plain functions ``(params, cursor) -> Step``; the first call of an
item gets ``cursor=None``.

Progress is counted on the ``accrue.jobs.progress`` metric (OpenTelemetry API: a
no-op until the process configures a meter provider), by ``kind`` and
``outcome`` (``slice``, ``finished``, ``failed``, ``parked``), so an alert can
watch for parked items.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Mapping

from opentelemetry import metrics

from shared.clock import Clock, iso
from shared.errors import DocumentExists, NotFound, PreconditionFailed
from shared.store.layout import SYSTEM
from shared.store.port import DocumentStore, Filter, Query
from shared.telemetry.logs import fields
from shared.telemetry.names import JOB_PROGRESS

log = logging.getLogger("accrue.workitems")
_progress = metrics.get_meter("accrue.workitems").create_counter(
    JOB_PROGRESS, unit="{event}", description="Work-item slices run, items finished, failed and parked")

WORK_PK = "workitems"
DOC_TYPE = "workItem"
QUEUED, RUNNING, DONE, PARKED = "queued", "running", "done", "parked"
DEFAULT_LEASE = timedelta(minutes=3)
DEFAULT_MAX_ATTEMPTS = 5
# Delay before the next attempt after failure n (seconds); the last value repeats.
BACKOFF: tuple[float, ...] = (30, 300, 1800, 3600)


@dataclass(frozen=True)
class Step:
    """What one slice did: the cursor the next slice starts from, whether the item is
    finished, and (when finished) a short JSON result kept on the item."""

    cursor: Any
    done: bool = False
    result: dict[str, Any] | None = None


Handler = Callable[[Mapping[str, Any], Any], Step]


@dataclass
class RunReport:
    claimed: int = 0
    slices: int = 0
    finished: list[str] = field(default_factory=list)
    resumable: list[str] = field(default_factory=list)  # budget ended: next run goes on from the cursor
    failed: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)


def item_id(kind: str, key: str, generation: str) -> str:
    return f"work:{kind}:{key}@{generation}"


class WorkItems:
    def __init__(self, store: DocumentStore, clock: Clock, handlers: Mapping[str, Handler], *,
                 lease: timedelta = DEFAULT_LEASE, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 owner: str | None = None) -> None:
        assert max_attempts >= 1 and lease > timedelta(0)
        self._store = store
        self._clock = clock
        self._handlers = dict(handlers)
        self.lease = lease
        self.max_attempts = max_attempts
        self.owner = owner or "worker-" + secrets.token_hex(4)

    # --- enqueue ---------------------------------------------------------------------

    def enqueue(self, kind: str, key: str, generation: str, params: Mapping[str, Any] | None = None) -> bool:
        """Add the item unless it exists (for this generation); True if it was added."""
        if kind not in self._handlers:
            raise ValueError(f"no handler for work item kind {kind!r}")
        now = iso(self._clock.now())
        doc = {"id": item_id(kind, key, generation), "pk": WORK_PK, "docType": DOC_TYPE, "kind": kind, "key": key,
               "generation": generation, "params": dict(params or {}), "status": QUEUED, "dueAt": now,
               "cursor": None, "attempts": 0, "slices": 0, "owner": None, "lastError": None, "result": None,
               "createdAt": now, "updatedAt": now, "finishedAt": None}
        json.dumps(doc)  # params must be JSON: they are stored
        try:
            self._store.create(SYSTEM, doc)
        except DocumentExists:
            return False
        return True

    # --- run -------------------------------------------------------------------------

    def run(self, *, max_items: int = 20, budget_seconds: float = 240.0,
            monotonic: Callable[[], float] = time.monotonic) -> RunReport:
        """Work the due items, oldest due first, until ``max_items`` were claimed or the
        budget is spent; each item in slices, its cursor stored after every slice."""
        report = RunReport()
        started = monotonic()

        def in_budget() -> bool:
            return monotonic() - started < budget_seconds

        while report.claimed < max_items and in_budget():
            candidates = self.due(limit=max_items - report.claimed)
            if not candidates:
                break
            progressed = False
            for candidate in candidates:
                if report.claimed >= max_items or not in_budget():
                    break
                item = self._claim(candidate)
                if item is None:
                    continue  # another worker has it
                report.claimed += 1
                progressed = True
                self._work(item, report, in_budget)
            if not progressed:
                break
        return report

    def due(self, limit: int = 100) -> list[dict[str, Any]]:
        """Items ready to be worked: queued and due, or running with an expired lease."""
        now = iso(self._clock.now())
        return self._store.query(SYSTEM, Query(pk=WORK_PK, filters=(
            Filter("docType", "=", DOC_TYPE), Filter("status", "in", [QUEUED, RUNNING]),
            Filter("dueAt", "<=", now)), order_by="dueAt", limit=max(1, min(limit, 1000))))

    def _claim(self, item: dict[str, Any]) -> dict[str, Any] | None:
        now = self._clock.now()
        claimed = dict(item, status=RUNNING, owner=self.owner, dueAt=iso(now + self.lease), updatedAt=iso(now))
        if item["status"] == RUNNING:
            # Its worker died (or stalled) mid-slice: that counts as a failed attempt, so an item
            # that kills its worker every time is parked instead of looping for ever.
            claimed["attempts"] = item["attempts"] + 1
            claimed["lastError"] = f"lease of {item.get('owner')} ran out mid-slice"
            log.warning("work item %s: taking over from %s, whose lease ran out; resuming from its cursor",
                        item["id"], item.get("owner"), extra=fields())
            if claimed["attempts"] >= self.max_attempts:
                self._park(claimed)
                return None
        try:
            return self._store.upsert(SYSTEM, claimed, if_match=item["_etag"])
        except (PreconditionFailed, NotFound):
            return None

    def _work(self, item: dict[str, Any], report: RunReport, in_budget: Callable[[], bool]) -> None:
        handler = self._handlers.get(item["kind"])
        while True:
            try:
                if handler is None:
                    raise LookupError(f"no handler for work item kind {item['kind']!r}")
                step = handler(item["params"], item["cursor"])
                json.dumps(step.cursor)  # the cursor is stored: it must be JSON
            except Exception as exc:  # noqa: BLE001 - recorded on the item, retried or parked
                self._failed(item, exc, report)
                return
            report.slices += 1
            _progress.add(1, {"kind": item["kind"], "outcome": "slice"})
            now = self._clock.now()
            # A slice that succeeded resets the failure count: attempts counts failures in a row, so
            # a long item that outlives a few deploys is not parked, one stuck on a slice is.
            update = dict(item, cursor=step.cursor, slices=item["slices"] + 1, attempts=0, updatedAt=iso(now))
            if step.done:
                update.update(status=DONE, dueAt=None, owner=None, result=step.result, finishedAt=iso(now))
            elif not in_budget():
                update.update(status=QUEUED, dueAt=iso(now), owner=None)  # due at once: the next run goes on
            else:
                update.update(dueAt=iso(now + self.lease))  # the lease, renewed
            try:
                item = self._store.upsert(SYSTEM, update, if_match=item["_etag"])
            except (PreconditionFailed, NotFound):
                log.warning("work item %s: lease lost to another worker; it goes on from the stored cursor",
                            item["id"], extra=fields())
                return
            if step.done:
                report.finished.append(item["id"])
                _progress.add(1, {"kind": item["kind"], "outcome": "finished"})
                return
            if item["status"] == QUEUED:
                report.resumable.append(item["id"])
                return

    def _failed(self, item: dict[str, Any], exc: Exception, report: RunReport) -> None:
        attempts = item["attempts"] + 1
        now = self._clock.now()
        error = f"{type(exc).__name__}: {exc}"[:500]
        update = dict(item, attempts=attempts, lastError=error, owner=None, updatedAt=iso(now))
        if attempts >= self.max_attempts:
            if self._park(update):
                report.parked.append(item["id"])
            return
        delay = BACKOFF[min(attempts, len(BACKOFF)) - 1]
        update.update(status=QUEUED, dueAt=iso(now + timedelta(seconds=delay)))
        log.warning("work item %s failed (attempt %d of %d): %s; retried from its cursor in %ds",
                    item["id"], attempts, self.max_attempts, error, delay, extra=fields())
        _progress.add(1, {"kind": item["kind"], "outcome": "failed"})
        try:
            self._store.upsert(SYSTEM, update, if_match=item["_etag"])
            report.failed.append(item["id"])
        except (PreconditionFailed, NotFound):
            pass  # lease lost meanwhile: the other worker's state stands

    def _park(self, item: dict[str, Any]) -> bool:
        parked = dict(item, status=PARKED, dueAt=None, owner=None)
        try:
            self._store.upsert(SYSTEM, parked, if_match=item["_etag"])
        except (PreconditionFailed, NotFound):
            return False
        _progress.add(1, {"kind": item["kind"], "outcome": "parked"})
        log.error("work item %s parked after %d failed attempts (last: %s); fix the cause, then "
                  "`python -m shared.local jobs retry %s`", item["id"], item["attempts"], item["lastError"],
                  item["id"], extra=fields())
        return True

    # --- operators -------------------------------------------------------------------

    def list(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        filters: tuple[Filter, ...] = (Filter("docType", "=", DOC_TYPE),)
        if status is not None:
            filters += (Filter("status", "=", status),)
        docs = self._store.query(SYSTEM, Query(pk=WORK_PK, filters=filters, order_by="createdAt", descending=True,
                                               limit=limit))
        return [{k: v for k, v in d.items() if k not in ("pk", "_etag", "_ts")} for d in docs]

    def retry(self, id: str) -> dict[str, Any]:
        """A parked (or failed) item queued again, attempts reset, resuming from its cursor."""
        doc = self._store.read(SYSTEM, WORK_PK, id)
        if doc is None:
            raise NotFound(f"no work item {id!r}")
        if doc["status"] in (DONE, RUNNING):
            return doc
        return self._store.upsert(SYSTEM, dict(doc, status=QUEUED, attempts=0, dueAt=iso(self._clock.now()),
                                               updatedAt=iso(self._clock.now())), if_match=doc["_etag"])
