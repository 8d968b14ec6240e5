"""Checkpoints of the embedded store's WAL, on a thread of their own.

SQLite in WAL mode copies the log back into the database file (a checkpoint)
from inside the COMMIT that takes the log past ``wal_autocheckpoint`` pages: the
writer that happens to commit then pays for copying every page the log holds,
and an fsync, while every other writer of the process waits behind it in the
group commit. An import or an ingest batch dirties megabytes per commit, so on
the default threshold nearly every commit of an import did one, waiting on the
fsync (bench/RESULTS-imports.md: 8% of an import's wall time).

``WalCheckpointer`` does that work beside the writers instead: writers nudge it
after they commit, and a thread with its own connection runs a ``PASSIVE``
checkpoint (it never waits for readers or writers, and copies what it can) at
most every ``INTERVAL`` seconds while commits keep coming. SQLite's C code
runs without the GIL, so on a second core the copy overlaps the writer's next
transaction. Pages rewritten within an interval (the recent table's index pages
of a staged container) are copied once, not once per commit.

What it guarantees:

* **Nothing about durability changes.** A commit is as durable as before (the
  WAL frames are written by the COMMIT; ``synchronous`` is the writer's), and a
  checkpoint is SQLite's own, under SQLite's own locks.
* **The log stays bounded**: writers keep ``wal_autocheckpoint`` at
  ``BACKSTOP_PAGES`` (256 MiB of 16 KiB pages) and checkpoint themselves past it,
  as before. Under continuous writes that is also what restarts the log from its
  beginning (SQLite restarts it only when a write transaction starts with every
  frame copied back, which a checkpoint beside the writers seldom sees), and it
  then copies only the frames written since the last background checkpoint. So
  the ``-wal`` file of a busy store grows to about 256 MiB: measured, a backstop
  of 64 MiB left the writers a third of the copying they did before.
* **One checkpoint at a time in the process**: it holds the store's checkpoint
  lock, as the erasure's ``TRUNCATE`` checkpoint does (another process's
  checkpoint is refused at once by SQLite, and this one simply runs next time).
* **No thread for an idle store.** The thread starts on the first nudge and
  ends after ``IDLE_SECONDS`` without one (a test's store left open does not
  keep it); a forked child starts its own.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable

from shared.telemetry.logs import fields

_log = logging.getLogger("accrue.store")

INTERVAL = 0.25
IDLE_SECONDS = 5.0
BACKSTOP_PAGES = 16384


class WalCheckpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on ``path`` when nudged, at most every
    ``interval`` seconds, on a daemon thread with its own connection."""

    def __init__(self, path: str, lock: threading.Lock, configure: Callable[[sqlite3.Connection], None],
                 interval: float = INTERVAL, idle_seconds: float = IDLE_SECONDS) -> None:
        assert interval > 0 and idle_seconds > interval
        self._path = path
        self._lock = lock  # the store's checkpoint lock: one checkpoint at a time in the process
        self._configure = configure
        self._interval = interval
        self._idle_seconds = idle_seconds
        self._state = threading.Condition()
        self._due = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.runs = 0  # checkpoints run (tests, benchmarks)

    def nudge(self) -> None:
        """Say that commits happened: a checkpoint runs within ``interval`` seconds."""
        with self._state:
            if self._closed:
                return
            self._due = True
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # A forked child inherits the object but not the thread.
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="store-checkpointer", daemon=True)
                self._thread.start()
            else:
                self._state.notify()

    def close(self) -> None:
        """Stop the thread (it finishes a checkpoint it is running) and wait for it."""
        with self._state:
            self._closed = True
            thread, self._thread = self._thread, None
            self._state.notify_all()
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            # Read-write, never create: a store whose file is gone (a test's folder removed
            # under a store left open) gets no new empty file from this thread.
            conn = sqlite3.connect(f"{Path(self._path).resolve().as_uri()}?mode=rw", uri=True,
                                   isolation_level=None, check_same_thread=False)
            self._configure(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            _log.warning("background WAL checkpoints could not start", extra=fields(error=type(exc).__name__))
            with self._state:
                if self._thread is threading.current_thread():
                    self._thread = None
            return
        try:
            while True:
                with self._state:
                    if not self._due and not self._closed:
                        self._state.wait(self._idle_seconds)
                    if self._closed or not self._due:
                        if self._thread is threading.current_thread():
                            self._thread = None  # idle: the next nudge starts a new thread
                        return
                    self._due = False
                self._checkpoint(conn)
                with self._state:
                    # Commits keep nudging meanwhile: wait out the interval, so one checkpoint
                    # copies an interval's pages once instead of one commit's at a time.
                    self._state.wait_for(lambda: self._closed, self._interval)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.runs += 1
            except sqlite3.Error as exc:
                # The writers' backstop keeps the log bounded; the next nudge tries again.
                _log.warning("background WAL checkpoint failed", extra=fields(error=type(exc).__name__))
