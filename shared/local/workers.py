"""The local stand-ins for the Functions host's triggers.

* ``QueueConsumer``: the Event Hub trigger. Claims batches from the local
  queue, hands them to ``IngestHandler.handle`` and acknowledges them only
  after it returned; a failure gives the batch back with backoff, and a
  message that fails every attempt moves to the queue's poison table.
* ``FeedPoller``: the Cosmos change-feed trigger. Reads the store's change log
  after its checkpoint, hands the documents to ``Projector.apply``, then moves
  the checkpoint (after, never before: at-least-once, and the projector is
  idempotent).
* ``Scheduler``: the timer triggers, from ``shared.jobs.JOBS``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from shared.bus.local_queue import Delivery, LocalQueue
from shared.jobs import JOBS, Job, run_job
from shared.platform import Platform
from shared.store.layout import LEDGER
from shared.telemetry import metrics
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.local")

BATCH = 500
IDLE_SLEEP = 0.005
MAX_IDLE_SLEEP = 0.05


class Worker(threading.Thread):
    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        idle = IDLE_SLEEP
        while not self._stop_event.is_set():
            try:
                busy = self.step()
            except Exception:  # noqa: BLE001 - a worker must outlive any one failure
                log.exception("%s: step failed", self.name, extra=fields(source=self.name))
                busy = False
                idle = 1.0
            if busy:
                idle = IDLE_SLEEP
            else:
                self._stop_event.wait(idle)
                idle = min(idle * 2, MAX_IDLE_SLEEP)

    def step(self) -> bool:
        raise NotImplementedError


class QueueConsumer(Worker):
    """Acknowledges a handled batch with its next claim (one queue commit for both,
    a few ms later when idle). A crash before that redelivers the batch, which
    ingestion answers from its idempotency markers."""

    def __init__(self, platform: Platform, queue: LocalQueue, name: str = "queue-consumer") -> None:
        super().__init__(name)
        self._platform = platform
        self._queue = queue
        self._handled: list[Delivery] = []

    def step(self) -> bool:
        deliveries = self._queue.claim(BATCH, acknowledge=self._handled)
        self._handled = []
        if not deliveries:
            return False
        try:
            self._platform.ingest.handle([d.body for d in deliveries], [d.traceparent for d in deliveries])
        except Exception as exc:  # noqa: BLE001 - give every message back, with its error
            log.warning("ingest batch of %d failed, will retry: %s", len(deliveries), exc,
                        extra=fields(source=self.name, count=len(deliveries), error=type(exc).__name__))
            metrics.batch_deferred("ingest")
            for delivery in deliveries:
                self._queue.fail(delivery, f"{type(exc).__name__}: {exc}", retry_in=min(2 ** delivery.attempts, 60))
            return True
        self._handled = deliveries
        return True

    def run(self) -> None:
        super().run()
        if self._handled:  # stopping: acknowledge what was handled
            try:
                self._queue.ack(self._handled)
            except Exception:  # noqa: BLE001 - unacknowledged messages are redelivered, harmlessly
                log.warning("could not acknowledge %d handled message(s) at stop", len(self._handled),
                            extra=fields(source=self.name, count=len(self._handled)))


class FeedPoller(Worker):
    """Saves its checkpoint at most every ``SAVE_EVERY`` seconds while busy (each
    save is a commit), at once when it runs out of changes, and once a second
    when idle (``dataAsOf``). A restart re-projects at most the changes since the
    last save, which the projector's idempotence absorbs."""

    SAVE_EVERY = 0.05

    def __init__(self, platform: Platform) -> None:
        super().__init__("feed-poller")
        self._platform = platform
        self._lsn = platform.checkpoint.load()["lsn"]
        self._saved_lsn = self._lsn
        self._saved_at = 0.0

    def step(self) -> bool:
        store = self._platform.store
        changes = store.changes(LEDGER, self._lsn, 1000)  # type: ignore[attr-defined]
        now = time.monotonic()
        if changes:
            self._platform.projector.apply([c.doc for c in changes])
            self._lsn = changes[-1].lsn
            if now - self._saved_at >= self.SAVE_EVERY:
                self._save(now, caught_up=len(changes) < 1000)
            return True
        if self._saved_lsn != self._lsn or now - self._saved_at >= 1.0:
            self._save(now, caught_up=True)
        return False

    def _save(self, now: float, caught_up: bool) -> None:
        self._platform.checkpoint.save(self._lsn, caught_up=caught_up)
        self._saved_lsn, self._saved_at = self._lsn, now


class Scheduler(Worker):
    def __init__(self, platform: Platform, jobs: tuple[Job, ...] = JOBS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("scheduler")
        self._platform = platform
        self._jobs = jobs
        self._clock = clock
        start = clock()
        self._due = {job.name: start + min(job.every_seconds, 60.0) for job in jobs}

    def step(self) -> bool:
        now = self._clock()
        ran = False
        for job in self._jobs:
            if now >= self._due[job.name]:
                self._due[job.name] = now + job.every_seconds
                # Minute-scale jobs (webhooks, reservations) would flood the console at INFO.
                log.log(logging.INFO if job.every_seconds >= 3600 else logging.DEBUG, "running job %s", job.name,
                        extra=fields(job=job.name))
                run_job(job, self._platform)
                ran = True
        return ran
