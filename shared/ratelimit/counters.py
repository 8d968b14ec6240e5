"""Window counters: the shared state that makes a rate limit hold across processes.

The port: ``take(tenant_id, key_id, cost, limits, now) -> Decision``, atomic: two
processes racing for the last unit of a quota cannot both get it.

* ``SqliteWindowCounter`` (the local platform): a small SQLite file of its own
  (``ratelimits.db`` in the data folder), one row per tenant and one per key, read
  and written inside one ``BEGIN IMMEDIATE`` transaction, so every process that
  opens the file (API processes, tests) shares the counts. Its own file, with
  ``synchronous=OFF``: a counter lost in a power cut only forgives a minute of
  traffic, and an fsync per request in the ledger's file would cost every write.
* ``StoreWindowCounter`` (Azure, over the Cosmos DB adapter; works on any
  ``DocumentStore``): one document per tenant in the ``system`` container
  (``pk = ratelimit:<tenant>``) holding the window number, the tenant's count and
  each key's count. Read, decide, replace with ``If-Match`` on the ETag (create
  when absent); a lost race re-reads and decides again. One point read (1 RU) and
  one replace (about 10 RU for this ~1 KB document) per admitted request, a
  refused one costs the read only; a few ms of latency in-region. One document per
  tenant serialises that tenant's admissions: Cosmos DB gives a logical partition
  about 10,000 RU/s, i.e. roughly 1,000 admitted requests per second per tenant,
  beyond which the counter should be sharded (N documents, each with quota/N).
* ``LeasedCounter`` in front of either: a process takes units from the shared
  counter in leases (about 1/16 of what is left, at most 1 % of the quota) and
  spends them locally, so most requests cost no shared write at all; near the
  limit a lease is a single request, so the limit stays exact where it matters.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from shared.errors import DocumentExists, PreconditionFailed, StoreUnavailable
from shared.private_files import private_dir, private_sqlite
from shared.ratelimit.policy import Counts, Decision, RateLimits, evaluate, window_of
from shared.store.contention import attempts
from shared.store.layout import SYSTEM
from shared.store.port import DocumentStore
from shared.store.sqlite_lock import use_wal, write_transaction

BUSY_TIMEOUT_MS = 5000
MAX_RACES = 64  # ETag races lost in a row before the store counter gives up (503, retry)


class WindowCounter(Protocol):
    # True: ``take`` is a local file operation cheap enough for the event loop.
    inline: bool

    def take(self, tenant_id: str, key_id: str, cost: int, limits: RateLimits, now: float) -> Decision: ...

    def close(self) -> None: ...


class SqliteWindowCounter:
    inline = True

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)  # the data folder: owner only (shared.private_files)
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection per process; the file lock orders the processes

    def _connection(self) -> sqlite3.Connection:
        """Opened on first use (and again after ``close``: an app's lifespan may end and start again)."""
        if self._conn is None:
            # Created 0600 before SQLite opens it, so its -wal/-shm are too (shared.private_files):
            # the counters name the tenant's keys, and nothing of the data folder is for other users.
            private_sqlite(self._path)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5)
            conn.execute("PRAGMA busy_timeout=5000")
            use_wal(conn, BUSY_TIMEOUT_MS)
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE IF NOT EXISTS counters (tenant TEXT NOT NULL, scope TEXT NOT NULL, "
                         "win INTEGER NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (tenant, scope))")
            self._conn = conn
        return self._conn

    def take(self, tenant_id: str, key_id: str, cost: int, limits: RateLimits, now: float) -> Decision:
        window = window_of(now, limits)
        key_scope = f"key:{key_id}"
        with self._lock, write_transaction(self._connection(), BUSY_TIMEOUT_MS) as conn:
            rows = dict(((scope, (w, used)) for scope, w, used in conn.execute(
                "SELECT scope, win, used FROM counters WHERE tenant = ? AND scope IN ('tenant', ?)",
                (tenant_id, key_scope))))

            def used(scope: str) -> int:
                stored = rows.get(scope)
                return stored[1] if stored is not None and stored[0] == window else 0

            decision = evaluate(Counts(key=used(key_scope), tenant=used("tenant")), cost, limits, now)
            if decision.allowed:
                conn.executemany(
                    "INSERT INTO counters (tenant, scope, win, used) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (tenant, scope) DO UPDATE SET win = excluded.win, used = excluded.used",
                    [(tenant_id, "tenant", window, used("tenant") + cost),
                     (tenant_id, key_scope, window, used(key_scope) + cost)])
        return decision

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class StoreWindowCounter:
    inline = False

    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    def take(self, tenant_id: str, key_id: str, cost: int, limits: RateLimits, now: float) -> Decision:
        pk, window = f"ratelimit:{tenant_id}", window_of(now, limits)
        for _ in attempts(MAX_RACES):
            doc = self._store.read(SYSTEM, pk, "window")
            current = doc is not None and doc.get("window") == window
            keys: dict[str, int] = dict(doc.get("keys", {})) if current else {}
            counts = Counts(key=keys.get(key_id, 0), tenant=doc["tenant"] if current else 0)
            decision = evaluate(counts, cost, limits, now)
            if not decision.allowed:
                return decision
            keys[key_id] = counts.key + cost
            new = {"id": "window", "pk": pk, "docType": "ratelimit", "window": window,
                   "tenant": counts.tenant + cost, "keys": keys}
            try:
                if doc is None:
                    self._store.create(SYSTEM, new)
                else:
                    self._store.upsert(SYSTEM, new, if_match=doc["_etag"])
                return decision
            except (PreconditionFailed, DocumentExists):
                continue  # another instance admitted a request first: decide again on its counts
        raise StoreUnavailable(f"the rate-limit counter of tenant {tenant_id!r} is too contended; retry")

    def close(self) -> None:
        pass


@dataclass
class _Lease:
    window: int
    left: int  # units taken from the shared counter and not yet spent here
    last: Decision  # the shared counter's answer when the lease was taken


class LeasedCounter:
    """A process-local lease in front of a shared counter, so most requests cost no
    shared write (no SQLite transaction locally, no Cosmos replace and its ~10 RU
    on Azure).

    When a (tenant, key) needs units, it takes from the shared counter not just
    its cost but a lease: ``max(cost, min(remaining // LEASE_SHARE, quota // LEASE_CAP))``
    units, counted there at once, then spent here. Near the limit the lease
    shrinks to the cost itself, so the last units are taken one request at a time.
    What this guarantees:

    * never more than the quota is admitted in a window, across every process
      (the shared counter's guarantee: leases are taken through it);
    * in one process, exactly the quota (units it leased are spent by it);
    * across processes, fewer may be admitted: a process's unspent lease is lost
      when the window ends, at most ``quota // LEASE_CAP`` units per process and
      per (tenant, key), i.e. 1 % of the quota;
    * the ``remaining`` a lease-served answer reports is the shared counter's at
      the lease plus the unspent lease: other processes' later takes are not seen
      until this process asks again.
    """

    LEASE_SHARE = 16
    LEASE_CAP = 100

    def __init__(self, shared: WindowCounter) -> None:
        self.shared = shared
        self.inline = shared.inline
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._lock = threading.Lock()

    def take(self, tenant_id: str, key_id: str, cost: int, limits: RateLimits, now: float) -> Decision:
        window = window_of(now, limits)
        with self._lock:
            lease = self._leases.get((tenant_id, key_id))
            if lease is not None and lease.window == window and lease.left >= cost \
                    and lease.last.quota == (limits.per_key if lease.last.policy == "key" else limits.per_tenant):
                lease.left -= cost
                return replace(lease.last, remaining=min(lease.last.quota, lease.last.remaining + lease.left),
                               reset_seconds=evaluate(Counts(0, 0), 1, limits, now).reset_seconds, cost=cost)
            hint = lease.last.remaining if lease is not None and lease.window == window else 0
            self._leases.pop((tenant_id, key_id), None)  # an unspent remainder of an older window is void
        size = max(cost, min(hint // self.LEASE_SHARE, min(limits.per_key, limits.per_tenant) // self.LEASE_CAP))
        decision = self.shared.take(tenant_id, key_id, size, limits, now)
        if not decision.allowed and size > cost:
            decision = self.shared.take(tenant_id, key_id, cost, limits, now)  # no room for a lease: just this one
            size = cost
        if not decision.allowed:
            return replace(decision, cost=cost)
        with self._lock:
            # Another thread of this process may have leased meanwhile: keep its units too.
            other = self._leases.get((tenant_id, key_id))
            left = size - cost + (other.left if other is not None and other.window == window else 0)
            self._leases[(tenant_id, key_id)] = _Lease(window, left, decision)
        return replace(decision, remaining=min(decision.quota, decision.remaining + left), cost=cost)

    def close(self) -> None:
        self.shared.close()
