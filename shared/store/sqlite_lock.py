"""Taking SQLite's write lock without SQLite's sleeping busy handler.

The local platform runs two processes over the same SQLite files (the HTTP API
and the workers). When one asks for the write lock while the other holds it,
SQLite's built-in busy handler sleeps 1, 2, 5, 10, 15, 20, 25, ... ms between
tries, so a lock held for 3 ms could cost the other side 25 ms of sleep, and
the two processes spent much of their time asleep with the lock free.
``begin_immediate`` asks again after 0.1 ms, doubling to at most 2 ms, until
``timeout`` (then the error propagates, as before). Only the lock request runs
without SQLite's handler: every other statement keeps the connection's
``busy_timeout``.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from typing import Iterator

FIRST_PAUSE = 0.0001
LONGEST_PAUSE = 0.002


def begin_immediate(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """``BEGIN IMMEDIATE`` on ``conn`` (whose ``busy_timeout`` is ``busy_timeout_ms``)."""
    execute_when_free(conn, "BEGIN IMMEDIATE", busy_timeout_ms)


@contextmanager
def write_transaction(conn: sqlite3.Connection, busy_timeout_ms: int) -> Iterator[sqlite3.Connection]:
    """``begin_immediate``, then COMMIT when the block ends, or ROLLBACK if an
    exception leaves it (the exception propagates): every write transaction of the
    embedded store and the local queue."""
    begin_immediate(conn, busy_timeout_ms)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def use_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """``PRAGMA journal_mode=WAL``. On a new file, two connections switching it at
    once get SQLITE_BUSY straight away (SQLite's busy handler is not consulted
    there), so this asks again like ``begin_immediate``."""
    execute_when_free(conn, "PRAGMA journal_mode=WAL", busy_timeout_ms)


def execute_when_free(conn: sqlite3.Connection, sql: str, busy_timeout_ms: int) -> None:
    """Run ``sql``, asking again while the database is busy, for at most ``busy_timeout_ms``."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = FIRST_PAUSE
    conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                conn.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)
