"""Cosmos DB calls are CLIENT spans named by operation, with the container, against
cosmosdb-server (the adapter is wrapped by ``tracing.traced``; errors mark the span)."""

from __future__ import annotations


import pytest
from opentelemetry import trace

from shared.errors import DocumentExists
from shared.store.layout import CUSTOMERS

pytestmark = pytest.mark.cosmos


def test_each_cosmos_call_is_a_client_span_with_its_container(cosmos_store, spans) -> None:
    doc = {"id": "c1", "pk": "t:c1", "docType": "customer"}
    cosmos_store.create(CUSTOMERS, doc)
    assert cosmos_store.read(CUSTOMERS, "t:c1", "c1")["id"] == "c1"
    with pytest.raises(DocumentExists):
        cosmos_store.create(CUSTOMERS, doc)
    create, read, refused = [s for s in spans.get_finished_spans() if s.name.startswith("cosmos ")]
    assert (create.name, read.name, refused.name) == ("cosmos create", "cosmos read", "cosmos create")
    assert all(s.kind is trace.SpanKind.CLIENT and s.attributes["db.collection.name"] == CUSTOMERS
               and s.attributes["db.system.name"] == "azure.cosmosdb" for s in (create, read, refused))
    assert refused.status.status_code is trace.StatusCode.ERROR and read.status.status_code is trace.StatusCode.UNSET
