"""Telemetry tests may install a global OpenTelemetry provider (which cannot be
uninstalled): after each, span recording is switched off again so the rest of the
session runs as the product does with telemetry off (no ``traceparent`` on events)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.telemetry import tracing


@pytest.fixture(autouse=True)
def _tracing_off_afterwards() -> Iterator[None]:
    yield
    tracing.set_enabled(False)
