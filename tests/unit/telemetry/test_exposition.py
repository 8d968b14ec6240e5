"""The local /metrics: each process's snapshot file merged into one Prometheus
exposition (counters and histograms summed over processes, gauges per process),
served on loopback only, refused elsewhere with a problem, absent without a
local aggregation (Azure)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client.parser import text_string_to_metric_families

from shared.api.app import create_app
from shared.telemetry import metrics
from shared.telemetry.metrics import LocalAggregation


def _process(folder: Path, name: str) -> tuple[LocalAggregation, MeterProvider]:
    """A process's aggregation with its own provider (as each local process has)."""
    aggregation = LocalAggregation(folder, name, export_seconds=3600)
    provider = MeterProvider(metric_readers=[aggregation.reader])
    aggregation.provider = provider
    return aggregation, provider


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[LocalAggregation, LocalAggregation]]:
    api, api_provider = _process(tmp_path / "metrics", "api")
    ingest, ingest_provider = _process(tmp_path / "metrics", "ingest")
    yield api, ingest
    metrics.bind(None)
    metrics.use_local(None)
    api_provider.shutdown()
    ingest_provider.shutdown()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_two_processes_are_merged_counters_and_histograms_summed_gauges_apart(processes) -> None:
    api, ingest = processes
    metrics.bind(ingest.provider)  # "the ingest process" records
    metrics.order_outcomes([{"status": "credited"}] * 3 + [{"status": "held"}], [1000.0] * 4, 1002.0)  # 2 s lag
    metrics.partner_circuit("acme-air", "open")
    ingest.reader.force_flush()
    metrics.bind(api.provider)  # "the API process" records
    metrics.orders_accepted(5)
    metrics.order_outcomes([{"status": "credited"}], [1000.0], 1000.5)
    metrics.partner_circuit("acme-air", "closed")
    samples = _samples(api.exposition().decode())
    assert samples[("accrue_orders_accepted_total", ())] == 5
    assert samples[("accrue_orders_credited_total", ())] == 4  # 3 in ingest + 1 in api
    assert samples[("accrue_orders_held_total", ())] == 1
    assert samples[("accrue_ingest_lag_count", ())] == 5
    assert samples[("accrue_ingest_lag_sum", ())] == pytest.approx(4 * 2.0 + 0.5)
    assert samples[("accrue_ingest_lag_bucket", (("le", "1.0"),))] == 1  # the 0.5 s one
    assert samples[("accrue_ingest_lag_bucket", (("le", "2.5"),))] == 5
    assert samples[("accrue_ingest_lag_bucket", (("le", "+Inf"),))] == 5
    # A gauge's values from two processes are not added: one series per process.
    assert samples[("accrue_partner_circuit_state", (("partner", "acme-air"), ("process", "ingest")))] == 2
    assert samples[("accrue_partner_circuit_state", (("partner", "acme-air"), ("process", "api")))] == 0


def test_a_restarted_process_replaces_its_file_and_reset_local_empties_the_folder(processes, tmp_path) -> None:
    api, ingest = processes
    metrics.bind(ingest.provider)
    metrics.orders_accepted(7)
    ingest.reader.force_flush()
    again, provider = _process(tmp_path / "metrics", "ingest")  # the ingest process, restarted
    try:
        metrics.bind(provider)
        metrics.orders_accepted(1)
        again.reader.force_flush()
        assert _samples(api.exposition().decode())[("accrue_orders_accepted_total", ())] == 1
    finally:
        provider.shutdown()
    metrics.reset_local(tmp_path)
    assert list((tmp_path / "metrics").glob("*.json")) == []


def _get(platform, client_host: str) -> object:  # type: ignore[no-untyped-def]
    with TestClient(create_app(platform), base_url="http://accrue.test", client=(client_host, 40000)) as http:
        return http.get("/metrics")


def test_metrics_is_served_on_loopback_and_refused_elsewhere(platform, processes) -> None:
    api, _ = processes
    metrics.bind(api.provider)
    metrics.use_local(api)
    metrics.orders_accepted(2)
    for host in ("127.0.0.1", "::1"):
        answer = _get(platform, host)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        assert _samples(answer.text)[("accrue_orders_accepted_total", ())] == 2
    for host in ("10.0.0.7", "192.168.1.20", "testclient"):
        refused = _get(platform, host)
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("forbidden") and "loopback" in refused.json()["detail"]


def test_without_a_local_aggregation_metrics_is_a_404_problem(platform) -> None:
    metrics.use_local(None)
    answer = _get(platform, "127.0.0.1")
    assert answer.status_code == 404 and answer.json()["type"].endswith("not-found")


def test_metrics_is_not_in_the_openapi_document(platform) -> None:
    assert "/metrics" not in create_app(platform).openapi()["paths"]
