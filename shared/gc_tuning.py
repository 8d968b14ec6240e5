"""The cyclic garbage collector's settings for Accrue's long-running processes.

With CPython's defaults (a young collection every 700 net allocations of container
objects, a full one as the older generations fill), the collector kept walking the
whole heap of a loaded platform: FastAPI's routes, the pydantic and JSON schemas,
the rule grammar, the caches. Measured on the order pipeline (accept, ingest,
project in one process, bench/README): about a quarter of an order's CPU went to
garbage collection, and the full collections alone took tens of milliseconds
each. Almost all of an order's garbage is freed by reference counting the moment
it is dropped; the collector is only needed for reference cycles, which the hot
paths do not make.

``settle()``, called once a process has loaded what it serves with:

* ``gc.freeze()``: what exists now (modules, schemas, the platform) moves to a
  permanent generation no collection walks. It lives as long as the process
  anyway.
* a young-generation threshold of ``YOUNG_THRESHOLD`` instead of 700: a young
  collection every few batches instead of dozens per batch. Cycles still get
  collected; they wait a little longer, which costs a few megabytes at most.

Nothing here changes what the code does, only when the collector runs.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
OLDER_THRESHOLDS = (20, 10)


def settle() -> None:
    """Freeze what is loaded and make collections rarer (see the module docstring)."""
    gc.collect()  # what is garbage already is not worth freezing
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
