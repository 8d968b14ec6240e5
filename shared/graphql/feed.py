"""Live events for GraphQL subscriptions, from the ledger's change feed (never the write
path): what a subscriber sees was committed, and it arrives whoever committed it (this
process, the ingest worker process, a refund, an expiry job).

One ``FeedHub`` per API process tails the feed (``store.changes``) on a daemon thread from
the position it starts at and fans each change out to the subscribers of its tenant, each
an asyncio queue on the subscriber's loop. Ledger documents become events:

* ``entry`` documents, grouped by ``transactionId`` (one atomic batch, consecutive in the
  feed) -> ``transaction``;
* ``order`` records (credited, held, rejected) -> ``order``;
* ``tierChange`` records -> ``tier``;
* ``redemption`` records and their ``settlement`` -> ``redemption``.

**Reconnection: replay from a cursor.** Every event carries ``cursor``, its feed position.
A client that reconnects passes the last cursor it saw as ``after`` and first receives
every event committed since (read back from the feed), then live events, without gaps
or duplicates (an event at or before the cursor is never sent). A cursor older than
``REPLAY_LIMIT`` feed entries, or a subscriber too slow to keep up (its queue full), gets
an error with ``extensions.code = "refetch-required"``: re-read with queries, subscribe
again without ``after``.

Locally (SQLite) the feed is a table; on Azure, HTTP functions cannot hold a WebSocket and
the Cosmos change feed is read by the Functions trigger: there the events go out through
Azure Web PubSub (not built yet, see docs/graphql.md), and ``available`` is False."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable

from shared.errors import AccrueError
from shared.ledger.entries import ENTRY_DOC, ORDER_DOC
from shared.store.layout import LEDGER
from shared.store.port import Change, DocumentStore
from shared.telemetry.logs import fields
from shared.tiers.history import TIER_CHANGE_DOC

log = logging.getLogger("accrue.graphql.feed")

POLL_SECONDS = 0.02
PAGE = 1000
QUEUE_SIZE = 10_000
REPLAY_LIMIT = 100_000
KINDS = ("transaction", "order", "tier", "redemption")


class RefetchRequired(AccrueError):
    """The subscriber missed events it cannot be given: re-read with queries, then subscribe again."""

    code = "refetch-required"
    status = 409


class SubscriptionsUnavailable(AccrueError):
    code = "subscriptions-unavailable"
    status = 501


@dataclass(frozen=True)
class Event:
    kind: str
    tenant_id: str
    customer_id: str
    lsn: int
    docs: tuple[dict[str, Any], ...]

    @property
    def cursor(self) -> str:
        return str(self.lsn)


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise RefetchRequired("the cursor is malformed: pass an event's cursor unchanged")
    return int(cursor)


def events_of(changes: Iterable[Change]) -> list[Event]:
    """Ledger changes -> events, in feed order (a transaction's entries become one event)."""
    out: list[Event] = []
    pending: list[Change] = []

    def flush() -> None:
        if pending:
            doc = pending[-1].doc
            out.append(Event("transaction", doc["tenantId"], doc["customerId"], pending[-1].lsn,
                             tuple(c.doc for c in pending)))
            pending.clear()

    for change in changes:
        doc = change.doc
        kind = doc.get("docType")
        if kind == ENTRY_DOC:
            if pending and pending[-1].doc.get("transactionId") != doc.get("transactionId"):
                flush()
            pending.append(change)
            continue
        flush()
        mapped = {ORDER_DOC: "order", TIER_CHANGE_DOC: "tier", "redemption": "redemption",
                  "settlement": "redemption"}.get(kind or "")
        if mapped is not None and doc.get("tenantId") and doc.get("customerId"):
            out.append(Event(mapped, doc["tenantId"], doc["customerId"], change.lsn, (doc,)))
    flush()
    return out


def whole_transactions(changes: list[Change]) -> list[Change]:
    """A full page may end inside a transaction: hold its trailing entries back for the next
    page (unless the page holds nothing else), so a transaction is one event, never two."""
    if len(changes) < PAGE or changes[-1].doc.get("docType") != ENTRY_DOC:
        return changes
    last = changes[-1].doc.get("transactionId")
    cut = len(changes)
    while cut > 0 and changes[cut - 1].doc.get("docType") == ENTRY_DOC and \
            changes[cut - 1].doc.get("transactionId") == last:
        cut -= 1
    return changes[:cut] if cut > 0 else changes


@dataclass(eq=False)
class Subscriber:
    tenant_id: str
    kind: str
    customer_id: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False

    def wants(self, event: Event) -> bool:
        return (event.kind == self.kind and event.tenant_id == self.tenant_id
                and (self.customer_id is None or event.customer_id == self.customer_id))

    def offer(self, event: Event) -> None:
        # On the subscriber's loop: a full queue marks the subscriber, which then ends.
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class FeedHub:
    def __init__(self, store: DocumentStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lsn = 0

    @property
    def available(self) -> bool:
        return hasattr(self._store, "changes") and hasattr(self._store, "latest_lsn")

    def _start(self) -> None:
        if self._thread is None:
            self._lsn = self._store.latest_lsn(LEDGER)  # type: ignore[attr-defined]
            self._thread = threading.Thread(target=self._run, name="graphql-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.step()
            except Exception:  # a store hiccup must not end live updates: retry after a pause
                log.exception("reading the change feed for subscriptions failed", extra=fields())
                busy = False
            if not busy:
                self._stop.wait(POLL_SECONDS)

    def step(self) -> bool:
        changes = self._store.changes(LEDGER, self._lsn, PAGE)  # type: ignore[attr-defined]
        if not changes:
            return False
        changes = whole_transactions(changes)
        events = events_of(changes)
        with self._lock:
            # Advance under the lock: ``subscribe`` reads the position and registers atomically.
            self._lsn = changes[-1].lsn
            targets = list(self._subscribers)
        for event in events:
            for subscriber in targets:
                if subscriber.wants(event):
                    subscriber.loop.call_soon_threadsafe(subscriber.offer, event)
        return True

    async def subscribe(self, tenant_id: str, kind: str, customer_id: str | None,
                        after: str | None) -> AsyncIterator[Event]:
        """The events of one tenant and kind (and customer), replayed from ``after`` first."""
        assert kind in KINDS
        if not self.available:
            raise SubscriptionsUnavailable("live subscriptions are served over Azure Web PubSub on this "
                                           "platform, not over this endpoint")
        start = parse_cursor(after)
        subscriber = Subscriber(tenant_id, kind, customer_id, asyncio.get_running_loop())
        with self._lock:
            self._start()
            registered_at = self._lsn
            self._subscribers.add(subscriber)
        try:
            last = start if start is not None else registered_at
            if start is not None:
                async for event in self._replay(subscriber, start, registered_at):
                    last = event.lsn
                    yield event
            while True:
                if subscriber.overflowed:
                    raise RefetchRequired("this subscriber fell too far behind; re-read with queries and subscribe "
                                          "again")
                event = await subscriber.queue.get()
                if event.lsn <= last:
                    continue  # already replayed
                last = event.lsn
                yield event
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)

    async def _replay(self, subscriber: Subscriber, start: int, until: int) -> AsyncIterator[Event]:
        if until - start > REPLAY_LIMIT:
            raise RefetchRequired(f"the cursor is more than {REPLAY_LIMIT} changes old; re-read with queries and "
                                  "subscribe again without after")
        position = start
        while position < until:
            changes = await asyncio.to_thread(self._store.changes, LEDGER, position, PAGE)  # type: ignore[attr-defined]
            changes = whole_transactions([c for c in changes if c.lsn <= until])
            if not changes:
                return
            for event in events_of(changes):
                if subscriber.wants(event):
                    yield event
            position = changes[-1].lsn


def hub_of(platform: Any) -> FeedHub:
    """The process's hub for this platform (created on first use, kept in ``platform.extras``)."""
    hub = platform.extras.get("graphql.feed")
    if hub is None:
        hub = platform.extras.setdefault("graphql.feed", FeedHub(platform.store))
    return hub
