"""The local platform's worker processes run at a lower CPU priority than the API (issue 22, target 3).

On a machine with few cores the ingest and project workers (CPU-bound batch work)
and the API process (answering reads) compete for the same cores; with equal
priority a balance read waited behind whole scheduler slices of batch work (p99
28-108 ms during intake, 1 ms idle). ``lower(pid)`` raises a worker's nice value
by ``NICE`` (``ACCRUE_WORKER_NICE`` overrides; 0 turns it off), so the kernel
runs the API first when both want a core. The workers still get every cycle the
API leaves idle, so intake throughput drops only as far as the API really uses
the cores. Nothing here changes what any process does, only when it runs.
"""

from __future__ import annotations

import logging
import os

from shared.telemetry.logs import fields

log = logging.getLogger("accrue.local")

NICE = 5
VARIABLE = "ACCRUE_WORKER_NICE"


def configured() -> int:
    """The niceness added to each worker: the environment's (0-19), else ``NICE``."""
    value = os.environ.get(VARIABLE, "").strip()
    if value.isdigit() and 0 <= int(value) <= 19:
        return int(value)
    return NICE


def lower(pid: int) -> int:
    """Set ``pid``'s nice value to ours + ``configured()``; the value set (ours when off or refused)."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(19, ours + configured())
    if wanted == ours:
        return ours
    try:
        os.setpriority(os.PRIO_PROCESS, pid, wanted)
    except (OSError, ProcessLookupError) as exc:  # it already exited, or a platform that refuses
        log.warning("could not lower worker %d's CPU priority: %s", pid, exc, extra=fields(source=f"worker-{pid}"))
        return ours
    return wanted
