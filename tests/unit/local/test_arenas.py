"""The local platform's processes share a few glibc malloc arenas (shared.local.arenas)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from shared.local import arenas


def test_children_get_the_cap_and_an_operators_own_value_wins(monkeypatch):
    monkeypatch.delenv(arenas.VARIABLE, raising=False)
    assert arenas.child_environment({"A": "1"}) == {
        "A": "1", arenas.VARIABLE: str(arenas.ARENAS), "ARROW_DEFAULT_MEMORY_POOL": "system",
        "MALLOC_TRIM_THRESHOLD_": str(arenas.TRIM_BYTES), "MALLOC_MMAP_THRESHOLD_": str(arenas.MMAP_BYTES)}
    own = {arenas.ARROW_POOL_VARIABLE: "jemalloc"}
    assert arenas.child_environment(own)[arenas.ARROW_POOL_VARIABLE] == "jemalloc"
    assert arenas.child_environment({"MALLOC_MMAP_THRESHOLD_": "65536"})["MALLOC_MMAP_THRESHOLD_"] == "65536"
    assert arenas.child_environment({arenas.VARIABLE: "4"})[arenas.VARIABLE] == "4"
    monkeypatch.setenv(arenas.VARIABLE, "3")
    assert arenas.configured() == 3
    monkeypatch.setenv(arenas.VARIABLE, "nonsense")
    assert arenas.configured() == arenas.ARENAS


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_the_cap_holds_for_threads_started_after_limit():
    # Sixteen threads each allocating while the others do: uncapped, glibc makes an
    # arena for most of them (malloc_stats prints one "Arena N:" block per arena).
    program = (
        "import ctypes, threading, sys\n"
        "from shared.local import arenas\n"
        "assert arenas.limit()\n"
        "go = threading.Barrier(16)\n"
        "def work():\n"
        "    go.wait()\n"
        "    keep = [ctypes.create_string_buffer(200_000) for _ in range(20)]\n"
        "threads = [threading.Thread(target=work) for _ in range(16)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "ctypes.CDLL(None).malloc_stats()\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": "."}, check=True)  # no MALLOC_ARENA_MAX: limit() caps
    assert 1 <= done.stderr.count("Arena ") <= arenas.ARENAS, done.stderr


def test_arrow_allocates_from_malloc_in_the_platforms_processes():
    # pyarrow picks its default pool when imported: limit() must come first, as in run().
    program = ("from shared.local import arenas\n"
               "arenas.limit()\n"
               "import pyarrow\n"
               "print(pyarrow.default_memory_pool().backend_name)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": "."}, check=True)
    assert done.stdout.strip() == "system"
    child = subprocess.run([sys.executable, "-c", "import pyarrow; print(pyarrow.default_memory_pool().backend_name)"],
                           capture_output=True, text=True, timeout=60, check=True,
                           env=arenas.child_environment({"PYTHONPATH": "."}))
    assert child.stdout.strip() == "system"
