"""The local platform's worker processes, beside the process that serves HTTP:
``ingest`` (the order consumers) and ``project`` (the change-feed poller and
the scheduler).

Why processes of their own: a Python process runs one thread at a time (the
GIL). With the API, ingestion and projection in one process they shared one
core, and the machine's second core stayed mostly idle. On Azure they are
separate invocations anyway; locally they are separate processes over the same
SQLite files (writers serialised by SQLite's own lock across processes, group
commit within each).

The parent (``WorkerProcess``) starts ``python -m shared.local workers --role
ROLE`` with a pipe on its standard input and supervises it: a worker process
that dies is started again, with a growing pause. What the child
(``run_worker_process``) guarantees:

* it does not outlive its parent: on Linux the kernel kills it when the parent
  dies (``PR_SET_PDEATHSIG``, even after kill -9), and everywhere the end of
  its standard input stops it;
* one worker process per role and number and data folder: it holds
  ``workers-ROLE-N.lock`` for its whole life, and a successor waits for a dying
  predecessor to let go; an ingest process then releases the queue leases its
  predecessor held (its lease tokens carry its name), never another's;
* a line ``tenant <id>`` on its standard input makes it forget its cached
  configuration of that tenant (``shared.app.tenant_changes``), so a change
  made through the API applies to the next order, as it did in one process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from shared.local import arenas, priority
from shared.local.worker_entry import PARENT_PID_VARIABLE, die_with_parent
from shared.private_files import open_private
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.local")

ROLES = ("ingest", "project")
# Worker processes of the local platform, by role and number. More than one ingest
# process is safe (the queue never leases one customer's messages to two consumers,
# and each releases only its own leases), but measured on two cores a second one
# took more from the API than it gave ingestion: single orders 670 -> 520 req/s,
# batches end to end no better.
PROCESSES = (("ingest", 1), ("project", 1))
LOCK_WAIT_SECONDS = 30.0
MAX_RESTART_PAUSE = 30.0


class WorkerProcess:
    """The parent's handle on the worker process: start, announce, supervise, stop."""

    def __init__(self, role: str, number: int = 1, command: list[str] | None = None) -> None:
        assert role in ROLES, role
        self.role, self.number = role, number
        self._command = command or [sys.executable, "-m", "shared.local.worker_entry", "workers", "--role", role,
                                    "--number", str(number)]
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def start(self) -> "WorkerProcess":
        self._spawn()
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def _spawn(self) -> None:
        # glibc reads MALLOC_ARENA_MAX when the child starts (shared.local.arenas).
        env = arenas.child_environment({**os.environ, PARENT_PID_VARIABLE: str(os.getpid())})
        process = subprocess.Popen(self._command, stdin=subprocess.PIPE, env=env)
        # The API answers reads first when both want a core (shared.local.priority).
        priority.lower(process.pid)
        with self._lock:
            self._process = process

    def _supervise(self) -> None:
        pause = 1.0
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                pause = 1.0  # it ran a good while: a fresh failure, not a crash loop
            log.error("the %s-%d worker process exited with status %s; starting it again in %.0f s",
                      self.role, self.number, code, pause,
                      extra=fields(source=f"{self.role}-{self.number}", status=code))
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, MAX_RESTART_PAUSE)
            self._spawn()

    def announce(self, tenant_id: str) -> None:
        """Tell the worker process that the tenant's configuration changed."""
        with self._lock:
            process = self._process
            if process is None or process.stdin is None or process.poll() is not None:
                return  # a restarting worker starts with empty caches anyway
            try:
                process.stdin.write(f"tenant {tenant_id}\n".encode())
                process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --- the child ---------------------------------------------------------------------


def _hold_lock(data_dir: Path, name: str) -> IO[str]:
    handle = open_private(data_dir / f"workers-{name}.lock", "w")
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit(f"another {name} worker process holds {handle.name}")
            time.sleep(0.05)


def run_worker_process(role: str, number: int = 1) -> None:
    """``python -m shared.local workers --role ROLE --number N``: started by the local runner, not by people."""
    from shared import gc_tuning
    from shared.local.runner import configure_logging, start_workers
    from shared.platform import build_platform
    from shared.settings import Settings

    configure_logging(role)
    from shared import telemetry

    telemetry.configure(role)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if parent is None:
        raise SystemExit("the worker process is started by 'python -m shared.local run'")
    die_with_parent(int(parent))  # again: done first by shared.local.worker_entry, before the imports
    settings = Settings.from_env()
    name = f"{role}-{number}"
    lock = _hold_lock(settings.data_dir, name)
    from shared import telemetry

    telemetry.configure(role)
    platform = build_platform(settings)

    def listen() -> None:
        for line in sys.stdin.buffer:
            kind, _, value = line.decode(errors="replace").strip().partition(" ")
            if kind == "tenant" and value:
                platform.tenant_changes.forget(value)
        if not stop.is_set():
            os._exit(0)  # the parent is gone: stop at once, as a crash would (nothing acknowledged is lost)

    threading.Thread(target=listen, name="parent-pipe", daemon=True).start()
    workers = start_workers(platform, role, name)
    log.info("worker process %s started: %s", name, ", ".join(w.name for w in workers),
             extra=fields(source=name, count=len(workers)))
    gc_tuning.settle()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(timeout=10)
        platform.close()
        lock.close()
