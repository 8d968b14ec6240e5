"""The local platform as a user runs it: ``python -m shared.local run`` in a
subprocess, spoken to over real HTTP on loopback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY_LINE = re.compile(r"^\s+(merchant|tenant-admin|platform-admin)\s+tenant=\S+\s+(acr_\S+)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPlatform:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}  # e.g. ACCRUE_TRACE_FILE (tests/e2e/test_traces.py)
        # The processes' log (stderr) in a file of its own, apart from stdout (tests/e2e/test_structured_logs.py);
        # by default it is merged into the output.
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.keys: dict[str, str] = {}
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "LocalPlatform":
        env = {**os.environ, "ACCRUE_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1",
               "ACCRUE_LOG_LEVEL": "WARNING", **self.extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.local", "run", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=self.log_path.open("w") if self.log_path is not None else subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError("the local platform exited:\n" + "".join(self.output)
                                     + (self.log_path.read_text() if self.log_path is not None else ""))
            self.output.append(line)
            match = KEY_LINE.match(line.rstrip("\n"))
            if match:
                self.keys[match.group(1)] = match.group(2)
            if "Accrue listening on" in line:
                break
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the local platform did not answer /health:\n" + "".join(self.output))

    def kill(self) -> None:
        """kill -9: no shutdown hook runs, as in a crash."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@pytest.fixture
def local_platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    running = LocalPlatform(tmp_path / "data").start()
    yield running
    running.stop()
