"""Starts the whole local platform on the embedded default: the HTTP API
(uvicorn, the same ASGI app as on Azure) in this process, the order consumers
in an ingest worker process, and the change-feed projector and the timer
scheduler in a project worker process (``shared.local.worker_process``: a
Python process uses one core at a time).
Data lives in ``ACCRUE_DATA_DIR`` (default ``.accrue-data``) and survives
restarts."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from pathlib import Path
from typing import IO

import uvicorn

from shared import gc_tuning, telemetry
from shared.api.app import create_app
from shared.bus.local_queue import LocalQueue
from shared.local import arenas
from shared.local.sandbox import provision_sandbox
from shared.local.worker_process import PROCESSES, WorkerProcess
from shared.local.workers import FeedPoller, QueueConsumer, Scheduler
from shared.platform import Platform, build_platform
from shared.private_files import open_private, private_dir
from shared.settings import Settings
from shared.telemetry import metrics
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.local")


def lock_data_dir(data_dir: Path) -> IO[str]:
    """One local platform per data folder: a second one would share the queue's
    leases and the projector's checkpoint. The lock dies with the process, even
    on kill -9, so a crash never leaves the folder locked."""
    # The folder holds the ledger and the queue (orders, amounts): owner only, like the keyring.
    private_dir(data_dir)
    handle = open_private(data_dir / "accrue.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another Accrue local platform is running on {data_dir}; stop it or set ACCRUE_DATA_DIR")
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def configure_logging(process: str = "api") -> None:
    """JSON log lines on stderr for this process (``shared.telemetry.logs``), at ACCRUE_LOG_LEVEL."""
    from shared.telemetry import logs

    logs.configure(process)


def start_workers(platform: Platform, role: str, name: str) -> list:
    """The threads of one worker process (``shared.local.worker_process``) called
    ``name``: ``ingest`` (order consumers) or ``project`` (the change-feed poller, the scheduler)."""
    workers = []
    if role == "ingest" and isinstance(platform.bus, LocalQueue):
        platform.bus.lease_owner = name
        released = platform.bus.release_leases(owner=name)
        if released:
            log.warning("released %d message(s) leased by a previous run that did not stop cleanly", released,
                        extra=fields(source=name, count=released))
        # Two consumers: one's CPU work overlaps the other's commit (fsync) waits; the
        # queue never leases one customer's messages to both, so order is kept.
        workers += [QueueConsumer(platform, platform.bus, f"queue-consumer-{n}") for n in (1, 2)]
    if role == "project":
        if hasattr(platform.store, "changes"):
            workers.append(FeedPoller(platform))
        workers.append(Scheduler(platform))
    for worker in workers:
        worker.start()
    return workers


# Threads for the synchronous routes (anyio's default is 40). Each thread that touches
# the store keeps a SQLite connection (a page cache of up to CACHE_KIB, 32 MiB) and malloc state;
# on two cores 40 threads only contend for the GIL. The hot reads do not use these
# threads (shared.api.reads), and the batch route holds one only while its commit waits.
SYNC_THREADS = 12
SWITCH_SECONDS = 0.001
# SQLite page cache per connection in the API process (the store's default is 32 MiB,
# for the ingest worker's appends): the API's reads and claims touch few pages each, and
# an unbounded share of a growing file showed as growth in the soak (bench/soak.py).
API_CACHE_KIB = 8 * 1024


async def bound_sync_threads() -> None:
    """Cap the thread pool of synchronous routes at ``SYNC_THREADS`` (the API process's memory, issue 22)."""
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = SYNC_THREADS


def run(host: str = "127.0.0.1", port: int = 7071) -> None:
    # Every file this process and its worker processes (which inherit the umask) create
    # in the data folder is owner only, also ones no adapter narrows explicitly.
    os.umask(0o077)
    # Before uvicorn and the store start their threads: they share a few malloc arenas
    # instead of one each (shared.local.arenas; the API process's RSS, issue 22).
    arenas.limit()
    # A thread holding the GIL (batch intake, the store's committer) is asked to let go
    # after this long instead of 5 ms: the event loop answering a read waits at most
    # about this for its turn (issue 22, target 3).
    sys.setswitchinterval(SWITCH_SECONDS)
    configure_logging()
    telemetry.configure("api")
    settings = Settings.from_env()
    lock = lock_data_dir(settings.data_dir)
    metrics.reset_local(settings.data_dir)  # before any process writes this run's first snapshot
    telemetry.configure("api")
    platform = build_platform(settings)
    if hasattr(platform.store, "set_cache_kib"):  # the embedded store: bound the API's page caches
        platform.store.set_cache_kib(API_CACHE_KIB)
    metrics.watch(platform)  # the state gauges of /metrics (bus backlog, poison, endpoints)
    workers = [WorkerProcess(role, number).start() for role, number in PROCESSES]
    platform.tenant_changes.peer = lambda tenant_id: [worker.announce(tenant_id) for worker in workers]
    provisioned = provision_sandbox(platform)
    if provisioned is not None:
        print("\n=== Accrue sandbox tenant created (these keys are shown ONCE; stored only as hashes) ===")
        for key in provisioned.keys:
            print(f"  {key.role.value:<15} tenant={key.tenant_id:<10} {key.secret_key}")
        print(f"  customers: {', '.join(provisioned.customers)}; {len(provisioned.orders)} sample orders queued; "
              "rule set 'sandbox' active; rewards served by the partner simulator")
        print(f"  platform operator: register your security key at http://localhost:{port}/operator with the "
              "platform-admin key; platform acts need a second operator (docs/fido2.md)")
        print("==========================================================================================\n",
              flush=True)
    else:
        print("Sandbox tenant already exists; its keys were shown at first start. "
              "New key: python -m shared.local issue-key --tenant sandbox --role merchant", flush=True)
    print(f"Accrue listening on http://{host}:{port} (data in {settings.data_dir})", flush=True)
    app = create_app(platform)
    app.router.on_startup.append(bound_sync_threads)
    gc_tuning.settle()
    try:
        # log_config=None: uvicorn's lines go through the root logger's JSON handler too.
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
    finally:
        for worker in workers:
            worker.stop()
        platform.close()
        lock.close()
