"""The local runner's worker processes: they die with their parent, come back when
they die alone, take one lock per role, and hear of tenant changes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared.local.worker_process import WorkerProcess
from shared.platform import Platform

ROOT = Path(__file__).resolve().parents[3]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its new parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_process_dies_with_its_parent_even_on_kill_minus_nine(tmp_path: Path) -> None:
    parent_script = textwrap.dedent("""
        import sys, time
        from shared.local.worker_process import WorkerProcess
        worker = WorkerProcess("project").start()
        time.sleep(0.5)
        print(worker._process.pid, flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "ACCRUE_DATA_DIR": str(tmp_path / "data"), "ACCRUE_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}
    (tmp_path / "data").mkdir()
    parent = subprocess.Popen([sys.executable, "-c", parent_script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        assert _alive(worker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait_until(lambda: not _alive(worker_pid), 10), "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_worker_process_that_dies_is_started_again(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    command = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"]
    worker = WorkerProcess("ingest", command=command).start()
    try:
        # Started, died, and (after the one-second pause) started again.
        assert _wait_until(lambda: starts.exists() and len(starts.read_text()) >= 2, 10)
    finally:
        worker.stop()
    count = len(starts.read_text())
    time.sleep(1.5)
    assert len(starts.read_text()) == count, "a stopped supervisor must not start the worker again"


def test_announcements_are_lines_on_the_worker_standard_input(tmp_path: Path) -> None:
    heard = tmp_path / "heard"
    command = [sys.executable, "-c", f"import sys\nfor line in sys.stdin: open({str(heard)!r}, 'a').write(line)"]
    worker = WorkerProcess("project", command=command).start()
    try:
        worker.announce("acme")
        worker.announce("globex")
        assert _wait_until(lambda: heard.exists() and heard.read_text() == "tenant acme\ntenant globex\n", 10)
    finally:
        worker.stop()
    worker.announce("late")  # a stopped worker: nothing to tell, and no error


def test_a_tenant_change_is_announced_and_forgetting_it_empties_every_cache(platform: Platform, tenant) -> None:
    announced: list[str] = []
    platform.tenant_changes.peer = announced.append
    settings = platform.tenants.get("acme")
    platform.tenants.save(settings)
    platform.tiers.cache.invalidate("acme")  # what saving a programme calls
    platform.webhooks.cache.invalidate("acme")  # what registering an endpoint calls
    platform._invalidate_rules("acme")  # noqa: SLF001 - what activating a rule set calls
    assert announced == ["acme"] * 4

    platform.tenants.get("acme")  # cached again, as are the programme and the endpoints
    platform.tiers.program("acme")
    platform.webhooks._active_endpoints("acme")  # noqa: SLF001 - what every ledger change reads
    caches = (platform.tenants.cache, platform.tiers.cache, platform.webhooks.cache)
    assert all("acme" in cache._entries for cache in caches)  # noqa: SLF001
    platform.tenant_changes.forget("acme")  # as a worker does when it hears the line
    assert not any("acme" in cache._entries for cache in caches)  # noqa: SLF001
    assert announced == ["acme"] * 4, "forgetting must not announce (no echo between processes)"
