"""Fixtures of the metrics tests: the platform's instruments bound to an in-memory
reader for the test (``meter``), and ``Readings`` to read its values back by name
and attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from shared.telemetry import metrics


@dataclass
class Readings:
    reader: InMemoryMetricReader

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [point for resource in data.resource_metrics for scope in resource.scope_metrics
                for metric in scope.metrics if metric.name == name for point in metric.data.data_points]

    def value(self, name: str, **attributes: str) -> float:
        """A counter's or a gauge's value for exactly these attributes (0 when never recorded);
        a histogram's count."""
        for point in self.points(name):
            if dict(point.attributes or {}) == attributes:
                return point.count if isinstance(point, HistogramDataPoint) else point.value
        return 0

    def histogram(self, name: str, **attributes: str) -> HistogramDataPoint:
        [point] = [p for p in self.points(name) if dict(p.attributes or {}) == attributes]
        return point

    def series(self, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        return {tuple(sorted((point.attributes or {}).items())):
                (point.count if isinstance(point, HistogramDataPoint) else point.value) for point in self.points(name)}


@pytest.fixture
def meter() -> Iterator[Readings]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.bind(provider)
    yield Readings(reader)
    metrics.bind(None)
    metrics.watch(None)
    provider.shutdown()


@pytest.fixture(autouse=True)
def _tracing_off_afterwards() -> Iterator[None]:
    # A global OpenTelemetry tracer provider cannot be uninstalled: recording is switched
    # off after each test so later tests run as the product does with telemetry off.
    yield
    from shared.telemetry import tracing

    tracing.set_enabled(False)
