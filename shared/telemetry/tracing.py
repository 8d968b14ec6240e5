"""Telemetry: tracing (skeleton; filled in by the issue-15 work)."""

from __future__ import annotations


def configure(process: str) -> None:
    """Set up tracing for the process named ``process``."""
