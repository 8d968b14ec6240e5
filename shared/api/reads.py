"""Serving the hot reads (balance, history page) without FastAPI's thread pool and encoder.

What it guarantees:

* ``run_read(store, fn, ...)`` runs a store read on the event loop when it is a
  bounded point or range read of the embedded store (``inline=True`` and the
  store says ``inline_reads``: tens of µs from a local file, less than a thread
  hop), and otherwise on ``READ_THREADS`` dedicated threads, never on the
  40-thread default pool the synchronous routes (batch intake) share. So a burst
  of batches cannot queue the reads behind them, and the reads never make more
  than ``READ_THREADS`` threads, SQLite connections and malloc users of their own
  (the API process's memory, issue 22 target 4).
* ``json_answer(doc)`` is the answer as JSON bytes made by orjson at once. The
  routes that use it return plain dicts of JSON values read from the store (str,
  int, bool, None, lists, dicts), for which FastAPI's ``jsonable_encoder`` walk
  produced the same JSON at ~100× the CPU: it was 560 µs of a 1 ms history page
  (docs/performance.md, target 3).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import orjson
from fastapi import Response

from shared.store.port import DocumentStore, inline_reads

T = TypeVar("T")

# Threads of their own for reads that may take long (filtered scans, a network store).
# Few: on two cores more threads add only GIL contention, and each holds a connection.
READ_THREADS = 4

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="api-read")
    return _pool


async def run_read(store: DocumentStore, fn: Callable[..., T], *args: Any, inline: bool = True) -> T:
    """``fn(*args)``: inline when ``inline`` and the store's reads are local, else on the read threads."""
    if inline and inline_reads(store):
        return fn(*args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args))


def json_answer(doc: dict[str, Any], status_code: int = 200) -> Response:
    """``doc`` as a JSON answer, serialised by orjson (see the module docstring)."""
    return Response(content=orjson.dumps(doc), status_code=status_code, media_type="application/json")
