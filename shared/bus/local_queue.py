"""The durable local queue: the embedded default of the order bus.

A table in its own SQLite file (WAL, ``synchronous=FULL`` by default), separate
from the document store so enqueuing and ledger writes do not share a write
lock. Guarantees:

* ``publish`` commits before returning: a message that got a 202 survives a
  kill -9 of the process.
* ``claim`` leases messages to one consumer for ``lease_seconds``; a consumer
  that dies leaves them to be claimed again when the lease runs out (at-least-
  once delivery; ingestion is idempotent).
* messages of one partition key are claimed in publish order, and never by
  two consumers at once: a key with a message under lease is skipped.
* a message that fails ``max_attempts`` times moves to the ``poison`` table
  with its last error, where it can be listed and replayed.

Group commit: concurrent ``publish`` calls from many request handlers are
gathered by a committer thread into one transaction (one fsync), each caller
waiting for the commit that carries its messages.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from shared.bus.port import BusMessage
from shared.errors import BusUnavailable
from shared.private_files import private_sqlite
from shared.store.sqlite_lock import use_wal, write_transaction
from shared.telemetry import metrics, tracing

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    partition_key TEXT NOT NULL,
    body TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_token TEXT,
    last_error TEXT,
    traceparent TEXT
);
CREATE INDEX IF NOT EXISTS ix_messages_visible ON messages(visible_at, seq);
CREATE TABLE IF NOT EXISTS poison (
    seq INTEGER PRIMARY KEY,
    partition_key TEXT NOT NULL,
    body TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    traceparent TEXT
);
"""

# Columns added after the first release, made on an existing file at open
# (SQLite's ADD COLUMN is cheap: old rows read as NULL, i.e. no trace context).
MIGRATIONS = (("messages", "traceparent", "TEXT"), ("poison", "traceparent", "TEXT"))


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, kind in MIGRATIONS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process migrated first
                    raise


COMMIT_TIMEOUT_SECONDS = 30.0
_IN_CHUNK = 500  # sequence numbers per "IN (...)" (SQLite's variable limit is far above)
BUSY_TIMEOUT_MS = 10_000


def _raise_first(errors: list[BaseException]) -> None:
    if errors:
        raise BusUnavailable(f"the local queue could not store the messages: {errors[0]}")


@dataclass(frozen=True)
class Delivery:
    seq: int
    partition_key: str
    body: dict[str, Any]
    attempts: int
    lease_token: str
    # The W3C traceparent of the publish span, where the producer traced (else None).
    traceparent: str | None = None


@dataclass(frozen=True)
class PoisonMessage:
    seq: int
    partition_key: str
    body: dict[str, Any]
    attempts: int
    last_error: str
    failed_at: float


class LocalQueue:
    def __init__(self, path: str | Path, synchronous: str = "FULL", max_attempts: int = 5) -> None:
        self.path = str(path)
        self.max_attempts = max_attempts
        # Who claims through this object (e.g. "ingest-2"): its lease tokens carry it, so a
        # restarted consumer can release its predecessor's leases and nobody else's.
        self.lease_owner = ""
        self._synchronous = synchronous
        private_sqlite(self.path)  # owner only, -wal/-shm too (shared.private_files)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)
        _migrate(self._conn())
        self._pending: list[tuple[list[BusMessage], Callable[[], object], list[BaseException], str | None]] = []
        self._pending_lock = threading.Condition()
        self._closed = False
        self._committer = threading.Thread(target=self._commit_loop, name="queue-committer", daemon=True)
        self._committer.start()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            use_wal(conn, BUSY_TIMEOUT_MS)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.conn = conn
        return conn

    # --- producer ------------------------------------------------------------------

    def publish(self, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        with tracing.span("publish", tracing.PRODUCER, messages=len(messages),
                          **{"messaging.system": "local-queue"}) as span:
            done = threading.Event()
            errors = self._submit(messages, done.set, tracing.traceparent(span))
            if not done.wait(timeout=COMMIT_TIMEOUT_SECONDS):
                raise BusUnavailable(f"the local queue did not commit within {COMMIT_TIMEOUT_SECONDS:.0f} s")
            _raise_first(errors)

    async def publish_async(self, messages: Sequence[BusMessage]) -> None:
        """``publish`` for a caller on an event loop: awaits the same group commit."""
        if not messages:
            return
        with tracing.span("publish", tracing.PRODUCER, messages=len(messages),
                          **{"messaging.system": "local-queue"}) as span:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            errors = self._submit(messages, lambda: loop.call_soon_threadsafe(
                lambda: done.done() or done.set_result(None)), tracing.traceparent(span))
            try:
                await asyncio.wait_for(done, COMMIT_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                raise BusUnavailable(f"the local queue did not commit within {COMMIT_TIMEOUT_SECONDS:.0f} s") from None
            _raise_first(errors)

    def _submit(self, messages: Sequence[BusMessage], on_done: Callable[[], object],
                traceparent: str | None = None) -> list[BaseException]:
        errors: list[BaseException] = []
        with self._pending_lock:
            if self._closed:
                raise BusUnavailable("the local queue is closed")
            self._pending.append((list(messages), on_done, errors, traceparent))
            self._pending_lock.notify()
        return errors

    def _commit_loop(self) -> None:
        while True:
            with self._pending_lock:
                while not self._pending and not self._closed:
                    self._pending_lock.wait()
                if not self._pending and self._closed:
                    return
                group, self._pending = self._pending, []
            now = time.time()
            rows = [(m.partition_key, orjson.dumps(m.body).decode(), now, now, traceparent)
                    for messages, _, _, traceparent in group for m in messages]
            conn = self._conn()
            try:
                with write_transaction(conn, BUSY_TIMEOUT_MS):
                    conn.executemany(
                        "INSERT INTO messages (partition_key, body, enqueued_at, visible_at, traceparent)"
                        " VALUES (?, ?, ?, ?, ?)", rows
                    )
            except sqlite3.Error as exc:
                for _, _, errors, _ in group:
                    errors.append(exc)
            for _, on_done, _, _ in group:
                on_done()

    # --- consumer ------------------------------------------------------------------

    def claim(self, limit: int, lease_seconds: float = 60.0, acknowledge: Sequence[Delivery] = ()) -> list[Delivery]:
        """Lease up to ``limit`` visible messages, in order, at most one key's run each.

        ``acknowledge``: deliveries handled since the last claim, acknowledged in the
        same transaction (one commit and fsync for both, instead of one each)."""
        conn = self._conn()
        now = time.time()
        token = f"{self.lease_owner}:{uuid.uuid4().hex}" if self.lease_owner else uuid.uuid4().hex
        with write_transaction(conn, BUSY_TIMEOUT_MS):
            self._delete(conn, acknowledge)
            leased_keys = {
                row[0] for row in conn.execute(
                    "SELECT DISTINCT partition_key FROM messages WHERE visible_at > ?",
                    (now,),
                )
            }
            chosen = []
            # Read in order only as far as needed (the queue may hold many thousands).
            visible = conn.execute(
                "SELECT seq, partition_key, body, attempts, traceparent FROM messages WHERE visible_at <= ?"
                " ORDER BY seq",
                (now,),
            )
            for seq, key, body, attempts, traceparent in visible:
                # A key with a message leased or backing off is skipped whole, so one
                # customer's orders are never processed out of order or in parallel.
                if key in leased_keys:
                    continue
                chosen.append((seq, key, body, attempts, traceparent))
                if len(chosen) >= limit:
                    break
            visible.close()  # finished before the rows it read are updated
            for start in range(0, len(chosen), _IN_CHUNK):
                seqs = [seq for seq, *_ in chosen[start:start + _IN_CHUNK]]
                conn.execute(
                    "UPDATE messages SET visible_at = ?, lease_token = ?, attempts = attempts + 1"
                    f" WHERE seq IN ({', '.join('?' for _ in seqs)})",
                    (now + lease_seconds, token, *seqs),
                )
        return [Delivery(seq, key, orjson.loads(body), attempts + 1, token, traceparent)
                for seq, key, body, attempts, traceparent in chosen]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        with write_transaction(self._conn(), BUSY_TIMEOUT_MS) as conn:
            self._delete(conn, deliveries)

    @staticmethod
    def _delete(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> None:
        # Only while still leased by the same claim: a message whose lease ran out
        # and was claimed again belongs to its new lease.
        conn.executemany("DELETE FROM messages WHERE seq = ? AND lease_token = ?",
                         [(d.seq, d.lease_token) for d in deliveries])

    def fail(self, delivery: Delivery, error: str, retry_in: float = 1.0) -> None:
        """Give a message back after a failure, or move it to poison when out of attempts."""
        with write_transaction(self._conn(), BUSY_TIMEOUT_MS) as conn:
            if delivery.attempts >= self.max_attempts:
                conn.execute(
                    "INSERT OR REPLACE INTO poison"
                    " (seq, partition_key, body, enqueued_at, failed_at, attempts, last_error, traceparent)"
                    " SELECT seq, partition_key, body, enqueued_at, ?, attempts, ?, traceparent FROM messages"
                    " WHERE seq = ? AND lease_token = ?",
                    (time.time(), error[:2000], delivery.seq, delivery.lease_token),
                )
                poisoned = conn.execute("DELETE FROM messages WHERE seq = ? AND lease_token = ?",
                                        (delivery.seq, delivery.lease_token)).rowcount
            else:
                conn.execute(
                    "UPDATE messages SET visible_at = ?, lease_token = NULL, last_error = ?"
                    " WHERE seq = ? AND lease_token = ?",
                    (time.time() + retry_in, error[:2000], delivery.seq, delivery.lease_token),
                )
                return
        if poisoned:
            metrics.poisoned("queue")

    def release_leases(self, owner: str | None = None) -> int:
        """Make leased messages visible again: those claimed under ``owner`` (see
        ``lease_owner``), or every one. For a consumer whose predecessor died holding
        leases (waiting for them to expire is pointless); ``owner=None`` only for a
        consumer alone on this file."""
        if owner is None:
            where, params = "lease_token IS NOT NULL", ()
        else:
            prefix = f"{owner}:"
            where, params = "substr(lease_token, 1, ?) = ?", (len(prefix), prefix)
        with write_transaction(self._conn(), BUSY_TIMEOUT_MS) as conn:
            return conn.execute(
                f"UPDATE messages SET visible_at = ?, lease_token = NULL WHERE {where}", (time.time(), *params)
            ).rowcount

    # --- inspection ----------------------------------------------------------------

    def depth(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def oldest_enqueued_at(self) -> float | None:
        """Epoch seconds of the oldest message waiting (None: empty); ``accrue status``."""
        return self._conn().execute("SELECT MIN(enqueued_at) FROM messages").fetchone()[0]

    def poison_depth(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM poison").fetchone()[0]

    def poisoned(self, limit: int = 100) -> list[PoisonMessage]:
        rows = self._conn().execute(
            "SELECT seq, partition_key, body, attempts, last_error, failed_at FROM poison ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [PoisonMessage(s, k, json.loads(b), a, e, f) for s, k, b, a, e, f in rows]

    def replay_poison(self, seqs: Sequence[int] | None = None) -> int:
        """Put poisoned messages back on the queue (all, or the given ones)."""
        where, params = ("", ()) if seqs is None else (
            f" WHERE seq IN ({','.join('?' for _ in seqs)})", tuple(seqs))
        with write_transaction(self._conn(), BUSY_TIMEOUT_MS) as conn:
            rows = conn.execute(f"SELECT seq, partition_key, body, enqueued_at, traceparent FROM poison{where}",
                                params).fetchall()
            now = time.time()
            conn.executemany(
                "INSERT INTO messages (partition_key, body, enqueued_at, visible_at, traceparent)"
                " VALUES (?, ?, ?, ?, ?)",
                [(k, b, e, now, t) for _, k, b, e, t in rows],
            )
            conn.executemany("DELETE FROM poison WHERE seq = ?", [(s,) for s, *_ in rows])
        return len(rows)

    def close(self) -> None:
        with self._pending_lock:
            self._closed = True
            self._pending_lock.notify_all()
        self._committer.join(timeout=5)
