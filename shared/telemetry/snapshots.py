"""The local platform's multi-process metrics: each process's cumulative
snapshot in a file, and the merge of all files into Prometheus text.

``SnapshotExporter`` is an OpenTelemetry metric exporter (cumulative
temporality) that replaces ``<process>.json`` whole on every export: written to
a temporary file and renamed, so a reader sees the old snapshot or the new one,
never half of one. ``render`` merges the files of a folder: counters, up-down
counters and histograms are summed over processes (the same attributes make
the same series), gauges are kept apart by a ``process`` label (a gauge's
values from two processes do not add up). Names follow Prometheus: dots become
underscores, counters end in ``_total``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from shared.telemetry.logs import fields

log = logging.getLogger("accrue.telemetry")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotExporter(MetricExporter):
    def __init__(self, path: Path, process: str) -> None:
        super().__init__(preferred_temporality={kind: AggregationTemporality.CUMULATIVE
                                                for kind in _INSTRUMENT_KINDS})
        self._path, self._process = path, process

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        snapshot = {"process": self._process, "metrics": list(_flatten(metrics_data))}
        temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(snapshot), encoding="utf-8")
            os.replace(temporary, self._path)
        except OSError:
            log.warning("could not write the metrics snapshot %s", self._path, exc_info=True, extra=fields())
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def _instrument_kinds() -> tuple[type, ...]:
    from opentelemetry.sdk.metrics import (
        Counter,
        ObservableCounter,
        ObservableGauge,
        ObservableUpDownCounter,
        UpDownCounter,
    )
    from opentelemetry.sdk.metrics import (
        Histogram as HistogramInstrument,
    )
    from opentelemetry.sdk.metrics import _Gauge as GaugeInstrument

    return (Counter, UpDownCounter, HistogramInstrument, ObservableCounter, ObservableUpDownCounter,
            ObservableGauge, GaugeInstrument)


_INSTRUMENT_KINDS = _instrument_kinds()


def _flatten(data: MetricsData) -> Iterator[dict[str, Any]]:
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                body = metric.data
                if isinstance(body, Histogram):
                    kind = "histogram"
                    points = [{"attributes": dict(p.attributes or {}), "count": p.count, "sum": p.sum,
                               "bounds": list(p.explicit_bounds), "buckets": list(p.bucket_counts)}
                              for p in body.data_points]
                elif isinstance(body, Sum):
                    kind = "counter" if body.is_monotonic else "updown"
                    points = [{"attributes": dict(p.attributes or {}), "value": p.value} for p in body.data_points]
                elif isinstance(body, Gauge):
                    kind = "gauge"
                    points = [{"attributes": dict(p.attributes or {}), "value": p.value} for p in body.data_points]
                else:
                    continue
                yield {"name": metric.name, "unit": metric.unit, "description": metric.description,
                       "kind": kind, "points": points}


def read_snapshots(folder: Path) -> list[dict[str, Any]]:
    snapshots = []
    for path in sorted(folder.glob("*.json")):
        try:
            snapshots.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # removed or replaced meanwhile: the next scrape reads it
    return snapshots


def merged(folder: Path) -> dict[str, dict[str, Any]]:
    """name -> {kind, description, unit, series: {labels tuple: value or histogram}}."""
    out: dict[str, dict[str, Any]] = {}
    for snapshot in read_snapshots(folder):
        process = str(snapshot.get("process", "?"))
        for metric in snapshot.get("metrics", []):
            entry = out.setdefault(metric["name"], {"kind": metric["kind"], "description": metric["description"],
                                                    "unit": metric["unit"], "series": {}})
            if entry["kind"] != metric["kind"]:
                continue  # a renamed instrument across versions: keep the first kind
            for point in metric["points"]:
                labels = {_label(k): str(v) for k, v in point["attributes"].items()}
                if entry["kind"] == "gauge":
                    labels["process"] = process
                key = tuple(sorted(labels.items()))
                series = entry["series"]
                if entry["kind"] == "histogram":
                    current = series.get(key)
                    if current is None or current["bounds"] != point["bounds"]:
                        series[key] = {"count": point["count"], "sum": point["sum"], "bounds": point["bounds"],
                                       "buckets": list(point["buckets"])}
                    else:
                        current["count"] += point["count"]
                        current["sum"] += point["sum"]
                        current["buckets"] = [a + b for a, b in zip(current["buckets"], point["buckets"])]
                else:
                    series[key] = series.get(key, 0) + point["value"]
    return out


def _label(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key)


def prometheus_name(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


class _FolderCollector:
    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def collect(self) -> Iterator[Metric]:
        for name, entry in sorted(merged(self._folder).items()):
            metric_name, doc = prometheus_name(name), f"{entry['description']} ({entry['unit']})"
            label_names = sorted({k for key in entry["series"] for k, _ in key})
            family: Metric
            if entry["kind"] == "counter":
                family = CounterMetricFamily(metric_name, doc, labels=label_names)
            elif entry["kind"] == "histogram":
                family = HistogramMetricFamily(metric_name, doc, labels=label_names)
            else:
                family = GaugeMetricFamily(metric_name, doc, labels=label_names)
            for key, value in sorted(entry["series"].items()):
                labels = dict(key)
                values = [labels.get(k, "") for k in label_names]
                if entry["kind"] == "histogram":
                    cumulative, buckets = 0, []
                    for bound, count in zip(value["bounds"] + [float("inf")], value["buckets"]):
                        cumulative += count
                        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
                    family.add_metric(values, buckets, value["sum"])  # type: ignore[call-arg]
                else:
                    family.add_metric(values, value)
            yield family


def render(folder: Path) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FolderCollector(folder))  # type: ignore[arg-type]
    return generate_latest(registry)
