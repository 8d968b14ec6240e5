"""The outbox marker: what lets an idle delivery timer cost one point read.

The delivery timer fires every 10 s in every region (8,640 runs a day). Without
work to do, a round would still list the active endpoints (a cross-partition
query) and query each one's due deliveries. Instead, one small document
(``system`` container, partition ``webhooks``, id ``outbox``) says when the
earliest delivery may be due (``dueAt``), and a round starts by reading it: not
due yet, nothing else is read.

Who moves it:

* whoever creates a delivery task (``WebhookService.publish``, ``project``,
  ``replay``) calls ``note_due(now)`` *after* the create: a point read, and a
  write only if the marker said "nothing due by then" (or a sweep is settling
  it). So under load, when the marker already says "due", enqueueing costs
  one extra read and no write to a shared document;
* the delivery worker, after a round that found nothing to send, ``settle``-s it to the earliest
  ``nextAttemptAt`` of any pending delivery (retries and leases included) and
  of any disable still to announce, capped at ``MAX_IDLE`` from now.

Why no delivery is missed: ``settle`` first marks the document ``sweeping``
(ETag-guarded), then computes the earliest due time, then writes it under the
ETag of its own ``sweeping`` write. A ``note_due`` that reads the marker after
that first write sees ``sweeping`` and writes, which makes the final write
fail (the marker stays due); one that read it before had its delivery created
before the computation started, so the computation sees it. A worker that
dies mid-round never settles: the marker stays due and the next round looks.
``MAX_IDLE`` is the safety net for what this argument assumes (a delivery
created by another instance visible to the computation's query at once; a
crash between a create and its ``note_due``): at worst such a delivery waits
``MAX_IDLE``.

No marker yet (a new deployment) reads as due: the first round looks, then
settles it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from shared.clock import Clock, iso
from shared.errors import DocumentExists, NotFound, PreconditionFailed
from shared.store.layout import SYSTEM
from shared.store.port import DocumentStore

log = logging.getLogger("accrue.webhooks")

MARKER_PK = "webhooks"
MARKER_ID = "outbox"
MAX_IDLE = timedelta(minutes=5)
NOTE_TRIES = 5


@dataclass(frozen=True)
class Check:
    idle: bool
    marker: dict[str, Any] | None


class OutboxMarker:
    def __init__(self, store: DocumentStore, clock: Clock, max_idle: timedelta = MAX_IDLE) -> None:
        self._store = store
        self._clock = clock
        self.max_idle = max_idle

    def read(self) -> dict[str, Any] | None:
        return self._store.read(SYSTEM, MARKER_PK, MARKER_ID)

    def check(self) -> Check:
        """One point read: idle when the marker says nothing is due before now."""
        marker = self.read()
        now = iso(self._clock.now())
        idle = (marker is not None and not marker.get("sweeping")
                and (marker.get("dueAt") is None or marker["dueAt"] > now))
        return Check(idle, marker)

    def note_due(self, at: str | None = None) -> None:
        """A delivery may be due at ``at`` (default now): make the marker say so."""
        at = at or iso(self._clock.now())
        for _ in range(NOTE_TRIES):
            marker = self.read()
            if marker is None:
                try:
                    self._store.create(SYSTEM, self._doc(at, sweeping=False))
                    return
                except DocumentExists:
                    continue
            due = marker.get("dueAt")
            if not marker.get("sweeping") and due is not None and due <= at:
                return  # already says "due by then": nothing to write
            try:
                self._store.upsert(SYSTEM, dict(marker, dueAt=min(due, at) if due else at, sweeping=False),
                                   if_match=marker["_etag"])
                return
            except (PreconditionFailed, NotFound):
                continue  # another writer moved it: look again
        # Heavy contention: a blind "due now" is always safe (it can only make a round look).
        self._store.upsert(SYSTEM, self._doc(iso(self._clock.now()), sweeping=False))

    def settle(self, earliest_due: Callable[[], str | None]) -> str | None:
        """After a round: set the marker to the earliest due time ``earliest_due()``
        computes (capped at ``max_idle``), unless a delivery was noted meanwhile.
        Returns what it set, or None if it left the marker due."""
        marker = self.read()
        try:
            if marker is None:
                sweeping = self._store.create(SYSTEM, self._doc(iso(self._clock.now()), sweeping=True))
            else:
                sweeping = self._store.upsert(SYSTEM, dict(marker, sweeping=True), if_match=marker["_etag"])
        except (DocumentExists, PreconditionFailed, NotFound):
            return None  # noted meanwhile: stays due, the next round looks
        cap = iso(self._clock.now() + self.max_idle)
        due = earliest_due()
        due = cap if due is None else min(due, cap)
        try:
            self._store.upsert(SYSTEM, dict(sweeping, dueAt=due, sweeping=False), if_match=sweeping["_etag"])
        except (PreconditionFailed, NotFound):
            return None
        return due

    def _doc(self, due: str, *, sweeping: bool) -> dict[str, Any]:
        return {"id": MARKER_ID, "pk": MARKER_PK, "docType": "webhookOutbox", "dueAt": due, "sweeping": sweeping}
