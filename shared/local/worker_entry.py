"""The first lines a local worker process runs: it is bound to its parent's life before
anything heavy is imported.

``python -m shared.local.worker_entry workers --role ROLE`` asks the kernel to kill this
process when its parent dies (Linux ``PR_SET_PDEATHSIG``, which survives even a kill -9
of the parent), checks the parent is still the one that started it, and only then runs
``python -m shared.local`` with the same arguments. Importing the platform takes seconds
on a loaded machine; a worker bound only after those imports outlived a parent killed
in that window. Standard library only, on purpose.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PARENT_PID_VARIABLE = "ACCRUE_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Die when ``parent_pid`` dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the worker's stdin pipe still stops it (shared.local.worker_process)
    if os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the line above took effect


def main() -> None:
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if parent is not None:
        die_with_parent(int(parent))
    sys.argv[0] = "shared.local"
    runpy.run_module("shared.local", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
