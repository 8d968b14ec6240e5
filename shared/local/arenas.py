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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Mapping

ARENAS = 2
VARIABLE = "MALLOC_ARENA_MAX"
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def configured() -> int:
    """The cap in force for this process's children: the environment's, else ``ARENAS``."""
    value = os.environ.get(VARIABLE, "")
    return int(value) if value.isdigit() and int(value) > 0 else ARENAS


def limit() -> bool:
    """Cap this process's arenas; whether the C library took it (glibc only)."""
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
    return mallopt(_M_ARENA_MAX, configured()) == 1


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``MALLOC_ARENA_MAX`` set (kept if already there)."""
    env = dict(base)
    env.setdefault(VARIABLE, str(configured()))
    return env
