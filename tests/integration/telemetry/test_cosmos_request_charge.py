"""The Cosmos request charge, read from each response's ``x-ms-request-charge``
header by the store client's ``raw_response_hook``, against cosmosdb-server
(which answers 1 RU for every request): each kind of store call lands under its
operation kind."""

from __future__ import annotations

from typing import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.store.layout import SYSTEM
from shared.store.port import Create, Query, Upsert
from shared.telemetry import metrics, names

pytestmark = pytest.mark.cosmos


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.bind(provider)
    yield reader
    metrics.bind(None)
    provider.shutdown()


def _by_kind(reader: InMemoryMetricReader) -> dict[str, tuple[int, float]]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {point.attributes["operation"]: (point.count, point.sum)
            for resource in data.resource_metrics for scope in resource.scope_metrics for metric in scope.metrics
            if metric.name == names.COSMOS_REQUEST_CHARGE for point in metric.data.data_points}


def test_every_store_call_records_its_charge_under_its_kind(reader, cosmos_store) -> None:
    before = _by_kind(reader)
    cosmos_store.create(SYSTEM, {"id": "a", "pk": "p"})
    cosmos_store.upsert(SYSTEM, {"id": "a", "pk": "p", "v": 2})
    assert cosmos_store.read(SYSTEM, "p", "a")["v"] == 2
    cosmos_store.query(SYSTEM, Query(pk="p"))
    cosmos_store.batch(SYSTEM, "p", [Create({"id": "b", "pk": "p"}), Upsert({"id": "c", "pk": "p"})])
    cosmos_store.delete(SYSTEM, "p", "a")
    after = _by_kind(reader)
    grew = {kind: after[kind][0] - before.get(kind, (0, 0.0))[0] for kind in after}
    for kind in ("create", "upsert", "read", "query", "batch", "delete"):
        assert grew.get(kind, 0) >= 1, (kind, after)
    # cosmosdb-server charges 1 RU a request: the sum is the count.
    assert all(total == pytest.approx(count) for count, total in after.values())
    assert before.get("metadata", (0, 0))[0] >= 1  # the start's database and container checks
