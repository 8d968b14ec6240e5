"""Worker processes run at a lower CPU priority than the API process (shared.local.priority)."""

from __future__ import annotations

import os
import subprocess
import sys

from shared.local import priority


def test_a_worker_gets_the_configured_niceness_above_ours(monkeypatch):
    monkeypatch.delenv(priority.VARIABLE, raising=False)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert priority.lower(child.pid) == min(19, ours + priority.NICE)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, ours + priority.NICE)
    finally:
        child.kill()
        child.wait()


def test_the_environment_sets_or_turns_off_the_niceness(monkeypatch):
    monkeypatch.setenv(priority.VARIABLE, "0")
    assert priority.configured() == 0
    assert priority.lower(os.getpid()) == os.getpriority(os.PRIO_PROCESS, 0)  # off: nothing changed
    monkeypatch.setenv(priority.VARIABLE, "12")
    assert priority.configured() == 12
    monkeypatch.setenv(priority.VARIABLE, "-3")  # raising priority needs privileges: ignored
    assert priority.configured() == priority.NICE
