"""The Cosmos DB adapter's cold start and TTL, against cosmosdb-server.

* Start-up reads container metadata once (a listing of the database's containers),
  not once per container, and the first request to a container reads none.
* A write to a container with a TTL rule carries ``ttl`` to the service (the
  raw item has it), and the adapter never returns it; the ledger gets none.
* Containers the adapter creates carry the layout's default TTL and indexing.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
from azure.cosmos import CosmosClient

from shared.store.cosmos import CosmosDocumentStore
from shared.store.layout import (
    CONTAINERS,
    DAY_SECONDS,
    LEDGER,
    ORDER_STATUS,
    SYSTEM,
    WEBHOOK_ATTEMPTS,
    container_default_ttl,
    indexing_policy,
)
from shared.store.port import Create, Query, read_many

pytestmark = pytest.mark.cosmos


@pytest.fixture
def raw(cosmos_endpoint: str, cosmos_credential: str) -> Iterator[CosmosClient]:
    client = CosmosClient(cosmos_endpoint, cosmos_credential, connection_verify=False)
    yield client
    client.close()


def open_store(endpoint: str, credential: str, database: str) -> CosmosDocumentStore:
    return CosmosDocumentStore(endpoint, database, CONTAINERS, credential=credential, connection_verify=False)


def test_a_cold_start_reads_metadata_once_not_per_container(cosmos_store, cosmos_endpoint, cosmos_credential) -> None:
    store = open_store(cosmos_endpoint, cosmos_credential, cosmos_store.database)
    try:
        at_start, _ = store.meter.snapshot()
        # One listing of the containers: one read per container and the database would be 21.
        assert at_start.get("container", 0) == 1, at_start
        assert len(CONTAINERS) >= 20
        for spec in CONTAINERS:  # the first request to each container: no container read first
            store.read(spec.name, "p", "missing")
        store.query(LEDGER, Query(pk="p"))
        read_many(store, LEDGER, [("p", "a"), ("q", "b")])
        after, _ = store.meter.snapshot()
        assert after.get("container", 0) == 1, after
        assert after["document"] >= len(CONTAINERS) + 1
    finally:
        store.close()


def test_read_many_is_answered_in_the_order_asked(cosmos_store) -> None:
    cosmos_store.batch(LEDGER, "t:c1", [Create({"id": "a", "pk": "t:c1"}), Create({"id": "b", "pk": "t:c1"})])
    cosmos_store.create(LEDGER, {"id": "a", "pk": "t:c2"})
    docs = read_many(cosmos_store, LEDGER, [("t:c1", "b"), ("t:c9", "a"), ("t:c2", "a"), ("t:c1", "a")])
    assert [(d["pk"], d["id"]) if d else None for d in docs] == [("t:c1", "b"), None, ("t:c2", "a"), ("t:c1", "a")]


def test_read_many_survives_the_sdks_shared_headers_race(cosmos_store, monkeypatch) -> None:
    # azure-cosmos's read_items can fail with "OrderedDict mutated during iteration" when
    # threads share a client (its response headers are one dict): the same keys are then
    # answered by point reads against the emulator. Any other RuntimeError still surfaces.
    from azure.cosmos import ContainerProxy

    cosmos_store.create(LEDGER, {"id": "a", "pk": "t:c1"})
    keys = [("t:c1", "a"), ("t:c9", "a"), ("t:c1", "a")]

    def racing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("OrderedDict mutated during iteration")

    monkeypatch.setattr(ContainerProxy, "read_items", racing)
    docs = read_many(cosmos_store, LEDGER, keys)
    assert [(d["pk"], d["id"]) if d else None for d in docs] == [("t:c1", "a"), None, ("t:c1", "a")]
    assert docs[0] is not docs[2]

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("something else")

    monkeypatch.setattr(ContainerProxy, "read_items", broken)
    with pytest.raises(RuntimeError, match="something else"):
        read_many(cosmos_store, LEDGER, keys)


def test_a_query_survives_the_sdks_shared_headers_race(cosmos_store, monkeypatch) -> None:
    # The same race as read_items' (above) in query_items, seen under concurrent pool
    # hand-outs: the query is asked again; a race every time, or any other RuntimeError, surfaces.
    from azure.cosmos import ContainerProxy

    from shared.store import cosmos
    from shared.store.port import Query

    cosmos_store.create(LEDGER, {"id": "a", "pk": "t:c1"})
    real = ContainerProxy.query_items
    races = iter([True, True])

    def racing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if next(races, False):
            raise RuntimeError("OrderedDict mutated during iteration")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ContainerProxy, "query_items", racing)
    assert [d["id"] for d in cosmos_store.query(LEDGER, Query(pk="t:c1", limit=10))] == ["a"]

    def always(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("OrderedDict mutated during iteration")

    monkeypatch.setattr(ContainerProxy, "query_items", always)
    with pytest.raises(RuntimeError, match="mutated"):
        cosmos_store.query(LEDGER, Query(pk="t:c1", limit=10))
    assert cosmos.QUERY_TRIES >= 2

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("something else")

    monkeypatch.setattr(ContainerProxy, "query_items", broken)
    with pytest.raises(RuntimeError, match="something else"):
        cosmos_store.query(LEDGER, Query(pk="t:c1", limit=10))


def test_writes_carry_the_policys_ttl_and_reads_never_return_it(cosmos_store, raw) -> None:
    written = cosmos_store.create(WEBHOOK_ATTEMPTS, {"id": "a1", "pk": "acme:2027-01-15"})
    cosmos_store.batch(ORDER_STATUS, "acme:o1", [Create({"id": "o1", "pk": "acme:o1", "publishDue": "x"})])
    cosmos_store.upsert(SYSTEM, {"id": "window", "pk": "ratelimit:acme", "docType": "ratelimit"})
    cosmos_store.create(LEDGER, {"id": "e1", "pk": "acme:c1"})
    assert "ttl" not in written
    assert "ttl" not in cosmos_store.read(ORDER_STATUS, "acme:o1", "o1")
    assert "ttl" not in cosmos_store.query(SYSTEM, Query(pk="ratelimit:acme"))[0]

    db = raw.get_database_client(cosmos_store.database)

    def stored(container: str, pk: str, id: str) -> dict:
        return db.get_container_client(container).read_item(id, partition_key=pk)

    assert stored(WEBHOOK_ATTEMPTS, "acme:2027-01-15", "a1")["ttl"] == 30 * DAY_SECONDS
    assert stored(ORDER_STATUS, "acme:o1", "o1")["ttl"] == -1  # a claim not yet published never expires
    assert stored(SYSTEM, "ratelimit:acme", "window")["ttl"] == 2 * DAY_SECONDS
    assert "ttl" not in stored(LEDGER, "acme:c1", "e1")


def test_created_containers_carry_the_layouts_ttl_and_indexing(cosmos_store, raw) -> None:
    db = raw.get_database_client(cosmos_store.database)
    for container in (WEBHOOK_ATTEMPTS, SYSTEM, LEDGER):
        props = db.get_container_client(container).read()
        assert props["partitionKey"]["paths"] == ["/pk"]
        if "indexingPolicy" in props:
            excluded = {p["path"] for p in props["indexingPolicy"].get("excludedPaths", [])}
            assert {p["path"] for p in indexing_policy(container)["excludedPaths"]} <= excluded
        assert props.get("defaultTtl") == container_default_ttl(container), container
