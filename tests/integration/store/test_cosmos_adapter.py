"""What only the Cosmos DB adapter does: start-up checks, service limits, SQL text.

The shared behaviour is in ``test_store_contract.py``; these tests pin the
adapter's own promises: a bad endpoint, database or certificate fails at start
naming the setting to fix, and batches beyond the service's limits are refused
before any request is sent (so nothing of them is written).
"""

from __future__ import annotations

import uuid

import pytest

from shared.errors import ConfigurationError, StoreError
from shared.store.cosmos import MAX_BATCH_OPERATIONS, CosmosDocumentStore, build_sql
from shared.store.layout import CONTAINERS, CUSTOMERS
from shared.store.port import Create, Filter, PartitionBatch, Query
from tests.emulators import free_port

pytestmark = pytest.mark.cosmos


def test_an_unreachable_endpoint_fails_at_start_naming_the_setting(cosmos_credential: str) -> None:
    endpoint = f"https://127.0.0.1:{free_port()}/"
    with pytest.raises(ConfigurationError, match="COSMOS_ENDPOINT"):
        CosmosDocumentStore(endpoint, "accrue", CONTAINERS, credential=cosmos_credential, connection_verify=False)


def test_an_untrusted_certificate_fails_at_start_naming_the_setting(
    cosmos_endpoint: str, cosmos_credential: str
) -> None:
    # The emulator's certificate is self-signed: with verification on, refused.
    with pytest.raises(ConfigurationError, match="COSMOS_ENDPOINT"):
        CosmosDocumentStore(cosmos_endpoint, "accrue", CONTAINERS, credential=cosmos_credential)


def test_a_missing_database_fails_at_start_naming_the_setting(cosmos_endpoint: str, cosmos_credential: str) -> None:
    with pytest.raises(ConfigurationError, match="COSMOS_DATABASE"):
        CosmosDocumentStore(
            cosmos_endpoint, f"missing-{uuid.uuid4().hex[:8]}", CONTAINERS,
            credential=cosmos_credential, connection_verify=False,
        )


def test_an_existing_database_opens_without_creating(
    cosmos_store: CosmosDocumentStore, cosmos_endpoint: str, cosmos_credential: str
) -> None:
    cosmos_store.create(CUSTOMERS, {"id": "a", "pk": "p"})
    other = CosmosDocumentStore(cosmos_endpoint, cosmos_store.database, CONTAINERS,
                                credential=cosmos_credential, connection_verify=False)
    try:
        assert other.read(CUSTOMERS, "p", "a") is not None
    finally:
        other.close()


def test_a_batch_over_the_operation_limit_is_refused_before_sending(cosmos_store: CosmosDocumentStore) -> None:
    ops = [Create({"id": f"d{i}", "pk": "p"}) for i in range(MAX_BATCH_OPERATIONS + 1)]
    with pytest.raises(StoreError, match=str(MAX_BATCH_OPERATIONS)):
        cosmos_store.batch(CUSTOMERS, "p", ops)
    assert cosmos_store.read(CUSTOMERS, "p", "d0") is None

    cosmos_store.batch(CUSTOMERS, "p", ops[:MAX_BATCH_OPERATIONS])  # exactly at the limit: accepted
    assert cosmos_store.read(CUSTOMERS, "p", f"d{MAX_BATCH_OPERATIONS - 1}") is not None


def test_a_batch_over_the_size_limit_is_refused_before_sending(cosmos_store: CosmosDocumentStore) -> None:
    big = "x" * (700 * 1024)
    ops = [Create({"id": f"big{i}", "pk": "p", "blob": big}) for i in range(3)]
    with pytest.raises(StoreError, match="bytes"):
        cosmos_store.batch(CUSTOMERS, "p", ops)
    assert cosmos_store.read(CUSTOMERS, "p", "big0") is None


def test_an_oversized_batch_among_batches_is_refused_before_any_is_sent(cosmos_store: CosmosDocumentStore) -> None:
    works = [
        PartitionBatch("a", [Create({"id": "ok", "pk": "a"})]),
        PartitionBatch("b", [Create({"id": f"d{i}", "pk": "b"}) for i in range(MAX_BATCH_OPERATIONS + 1)]),
    ]
    with pytest.raises(StoreError):
        cosmos_store.batches(CUSTOMERS, works)
    assert cosmos_store.read(CUSTOMERS, "a", "ok") is None


def test_sql_splices_only_bracketed_field_paths_and_binds_every_value() -> None:
    sql, params = build_sql(Query(
        pk="t:c",
        filters=(Filter("meta.region", "=", "eu' OR 1=1"), Filter("age", "in", [1, 2]), Filter("tier", "=", None)),
        order_by="createdAt", descending=True, limit=7,
    ))
    assert sql == (
        'SELECT TOP @limit * FROM c WHERE c["pk"] = @p0 AND c["meta"]["region"] = @p1'
        ' AND c["age"] IN (@p2, @p3) AND (NOT IS_DEFINED(c["tier"]) OR IS_NULL(c["tier"]))'
        ' ORDER BY c["createdAt"] DESC'
    )
    assert params == [
        {"name": "@limit", "value": 7}, {"name": "@p0", "value": "t:c"}, {"name": "@p1", "value": "eu' OR 1=1"},
        {"name": "@p2", "value": 1}, {"name": "@p3", "value": 2},
    ]
