"""Operators' telemetry: one entry point that sets up traces, metrics, logs and,
on Azure, the Azure Monitor exporter for a process of the platform.

Each signal has a module of its own (``tracing``, ``metrics``, ``logs``,
``azure_monitor``); ``configure`` calls them in a fixed order, once per process.
It is called by every process that runs platform code: the local API and its
worker processes (``shared.local``) and the Functions worker (``functions``).
Telemetry never changes what the platform does: a failure to set it up is
logged and the process goes on without it.
"""

from __future__ import annotations

import threading

_configured: set[str] = set()
_lock = threading.Lock()


def configure(process: str) -> None:
    """Set up telemetry for this process, named ``process`` (``api``,
    ``ingest``, ``project``, ``functions``). Idempotent: a second call is a no-op."""
    with _lock:
        if process in _configured:
            return
        _configured.add(process)
    from shared.telemetry import azure_monitor, logs, metrics, tracing

    logs.configure(process)
    tracing.configure(process)
    metrics.configure(process)
    azure_monitor.configure(process)
