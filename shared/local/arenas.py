"""Caps glibc's malloc arenas in the local platform's processes (issue 22, target 4).

glibc gives each thread that contends for the heap an arena of its own, up to
8 per core, and an arena's freed memory mostly stays mapped. Under the spine
benchmark the API process (uvicorn, the anyio worker threads, the store's
committer) grew from ~100 MiB to 450-490 MiB, about 270 MiB of it per-thread
arenas. CPython's own small objects come from its pymalloc arenas, not these; the
threads' malloc traffic (SQLite pages, orjson buffers, large objects) shares
``ARENAS`` arenas instead, which costs little contention with the GIL held most
of the time.

``limit()`` applies the cap to this process at once (``mallopt(M_ARENA_MAX)``:
arenas already made stay, later threads share) and ``child_environment()`` puts
``MALLOC_ARENA_MAX`` in a child's environment, where glibc reads it at start.
An operator's own ``MALLOC_ARENA_MAX`` wins. On a C library other than glibc
both do nothing.

The same two ways fix glibc's trim and mmap thresholds (``TRIM_BYTES``,
``MMAP_BYTES``; ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` in a
child's environment). By default glibc raises its mmap threshold to the largest
block ever freed (up to 32 MiB) and then serves such blocks from the arenas, where
a freed one stays mapped; a fixed threshold keeps large buffers (a batch body, a
big JSON answer) in mappings of their own that go back to the kernel when freed,
and a heap top with more than ``TRIM_BYTES`` free is returned at once.

Arrow (the Parquet exports) allocates from its own pool, mimalloc by default, which
keeps freed segments for reuse: in a 4-minute soak the project worker's anonymous
memory stepped up again after a later micro-batch (+70 MiB). ``ARROW_POOL`` ("system":
Arrow's buffers from malloc, under the settings above) is put in the environment of
this process (``limit()``, before pyarrow is imported) and of its children; the same
export ran as fast (1 M entries, 5.2-5.3 s either way) with a lower peak (168 MiB
anonymous against 194-207). An operator's ``ARROW_DEFAULT_MEMORY_POOL`` wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Mapping

ARENAS = 2
VARIABLE = "MALLOC_ARENA_MAX"
_M_ARENA_MAX = -8  # glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
TRIM_BYTES = 1 << 20
MMAP_BYTES = 256 << 10
# glibc's own spelling (trailing underscore); an operator's value wins, as for the arenas.
THRESHOLDS = {"MALLOC_TRIM_THRESHOLD_": (_M_TRIM_THRESHOLD, TRIM_BYTES),
              "MALLOC_MMAP_THRESHOLD_": (_M_MMAP_THRESHOLD, MMAP_BYTES)}
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
ARROW_POOL = "system"


def configured() -> int:
    """The cap in force for this process's children: the environment's, else ``ARENAS``."""
    value = os.environ.get(VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else ARENAS


def limit() -> bool:
    """Cap this process's arenas; whether the C library took it (glibc only). Arrow's
    pool is chosen here too (any C library): pyarrow reads it when first imported."""
    os.environ.setdefault(ARROW_POOL_VARIABLE, ARROW_POOL)
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for variable, (parameter, default) in THRESHOLDS.items():
        if variable not in os.environ:  # else glibc read the operator's value at start
            mallopt(parameter, default)
    return mallopt(_M_ARENA_MAX, configured()) == 1


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``MALLOC_ARENA_MAX``, the thresholds and Arrow's pool set (each kept if already there)."""
    env = dict(base)
    env.setdefault(VARIABLE, str(configured()))
    env.setdefault(ARROW_POOL_VARIABLE, ARROW_POOL)
    for variable, (_, default) in THRESHOLDS.items():
        env.setdefault(variable, str(default))
    return env
