"""Traces: W3C context crosses the bus and the ledger, so one order sent over
HTTP is one connected trace (in-memory exporter, real SQLite platform)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

from shared.bus.eventhubs import to_event
from shared.bus.local_queue import LocalQueue
from shared.bus.port import BusMessage
from shared.telemetry import tracing
from tests.conftest import auth, drain, order_body


def hexid(value: int, width: int = 16) -> str:
    return format(value, f"0{width}x")


def by_name(finished: Any) -> dict[str, list[Any]]:
    named: dict[str, list[Any]] = {}
    for span in finished:
        named.setdefault(span.name, []).append(span)
    return named


def test_the_local_queue_stores_the_publish_spans_context_on_each_message(tmp_path: Path, spans) -> None:
    queue = LocalQueue(tmp_path / "q.db", synchronous="NORMAL")
    try:
        with tracing.span("outer") as outer:
            queue.publish([BusMessage("t:c1", {"n": 1}), BusMessage("t:c2", {"n": 2})])
        deliveries = queue.claim(10)
    finally:
        queue.close()
    publish = by_name(spans.get_finished_spans())["publish"][0]
    assert publish.kind is trace.SpanKind.PRODUCER
    assert publish.parent.span_id == outer.get_span_context().span_id
    expected = f"00-{hexid(publish.context.trace_id, 32)}-{hexid(publish.context.span_id)}-" \
        f"{int(publish.context.trace_flags):02x}"
    assert [d.traceparent for d in deliveries] == [expected, expected]


def test_an_existing_queue_file_gains_the_column_and_its_messages_still_flow(tmp_path: Path, spans) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, partition_key TEXT NOT NULL,
            body TEXT NOT NULL, enqueued_at REAL NOT NULL, visible_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, lease_token TEXT, last_error TEXT);
        CREATE TABLE poison (seq INTEGER PRIMARY KEY, partition_key TEXT NOT NULL, body TEXT NOT NULL,
            enqueued_at REAL NOT NULL, failed_at REAL NOT NULL, attempts INTEGER NOT NULL, last_error TEXT NOT NULL);
        INSERT INTO messages (partition_key, body, enqueued_at, visible_at) VALUES ('t:c1', '{"old":true}', 0, 0);
    """)
    conn.commit()
    conn.close()
    queue = LocalQueue(path, synchronous="NORMAL", max_attempts=1)
    try:
        [old] = queue.claim(10)
        assert old.body == {"old": True} and old.traceparent is None
        queue.fail(old, "boom")  # to poison, and back: the context column travels with it
        assert queue.replay_poison() == 1
        queue.publish([BusMessage("t:c2", {"new": True})])
        claimed = queue.claim(10)
    finally:
        queue.close()
    assert [d.body for d in claimed] == [{"old": True}, {"new": True}]
    assert claimed[0].traceparent is None and claimed[1].traceparent is not None
    # Opening the migrated file again migrates nothing twice.
    LocalQueue(path, synchronous="NORMAL").close()


def test_event_hubs_events_carry_the_traceparent_application_property() -> None:
    context = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = to_event(BusMessage("t:c1", {"type": "order.received", "version": 1}), context)
    assert event.properties["traceparent"] == context
    assert "traceparent" not in to_event(BusMessage("t:c1", {"type": "x"})).properties


def test_malformed_or_absent_contexts_start_no_link_and_raise_nothing() -> None:
    assert tracing.context_from("garbage") is None
    assert tracing.context_from(None) is None
    assert tracing.links_from(["nope", None, ""]) == []
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert len(tracing.links_from([good, good, "bad"])) == 1, "duplicates collapse to one link"
    assert len(tracing.links_from([f"00-{n:032x}-{n:016x}-01" for n in range(1, 300)])) == tracing.MAX_LINKS


def test_one_order_over_http_is_one_connected_trace_to_its_projection(client, platform, tenant, spans) -> None:
    response = client.post("/v1/orders", json=order_body(), headers=auth(tenant.merchant))
    assert response.status_code == 202, response.text
    drain(platform)
    finished = spans.get_finished_spans()
    named = by_name(finished)
    assert not [s for s in finished if s.name.startswith("fastapi.")], "FastAPI's own spans stay off"
    [http] = named["POST /v1/orders"]
    [intake] = named["intake"]
    [publish] = named["publish"]
    [batch] = named["ingest batch"]
    [append] = named["ledger append"]
    [projection] = named["projection"]
    assert http.kind is trace.SpanKind.SERVER and http.parent is None
    assert http.attributes["http.route"] == "/v1/orders" and http.attributes["http.response.status_code"] == 202
    assert http.attributes["accrue.tenant"] == "acme"
    trace_id = http.context.trace_id
    for child, parent in ((intake, http), (publish, intake), (append, publish), (projection, append)):
        assert child.context.trace_id == trace_id, child.name
        assert child.parent is not None and child.parent.span_id == parent.context.span_id, child.name
    # The consumer's batch span is its own trace, linked to the producer span.
    assert batch.kind is trace.SpanKind.CONSUMER
    assert [(link.context.trace_id, link.context.span_id) for link in batch.links] == \
        [(trace_id, publish.context.span_id)]
    assert append.attributes["accrue.outcome"] == "credited" and append.attributes["accrue.order_id"] == "o1"
    assert append.attributes["accrue.rules.evaluation_ms"] >= 0
    entries = platform.ledger.entries("acme", "c1")
    assert entries and all(e["traceContext"] == tracing.traceparent(append) for e in entries)


def test_with_tracing_off_nothing_is_stamped_on_messages_or_entries(client, platform, tenant) -> None:
    assert not tracing.enabled()
    assert client.post("/v1/orders", json=order_body(), headers=auth(tenant.merchant)).status_code == 202
    drain(platform)
    entries = platform.ledger.entries("acme", "c1")
    assert entries and all("traceContext" not in e for e in entries)


def test_an_unmatched_path_is_named_without_the_raw_path(client, spans) -> None:
    client.get("/no/such/thing/12345")
    [server] = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert server.name == "GET (unmatched)"


def test_the_event_hub_trigger_reads_each_events_traceparent_from_the_batch_metadata() -> None:
    import json

    import azure.functions as func
    from azure.functions.meta import Datum

    from functions.ingest import traceparents

    context = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    metadata = {"PropertiesArray": Datum(json.dumps([{"traceparent": context, "type": "order.received"},
                                                     {"type": "order.received"}]), "json")}
    events = [func.EventHubEvent(body=b"{}", trigger_metadata=metadata) for _ in range(2)]
    assert traceparents(events) == [context, None]
    assert traceparents([func.EventHubEvent(body=b"{}")]) == [None], "no metadata: no context, no error"
    assert traceparents([]) == []


def test_a_traced_adapter_call_is_a_span_with_its_arguments_and_its_error(spans) -> None:
    class Adapter:
        @tracing.traced("store read", tracing.CLIENT, {"db.collection.name": "container"}, system="x")
        def read(self, container: str, key: str) -> str:
            if key == "bad":
                raise ValueError("nope")
            return key

    adapter = Adapter()
    assert adapter.read("ledger", "k1") == "k1"
    with pytest.raises(ValueError):
        adapter.read(container="balances", key="bad")
    first, second = spans.get_finished_spans()
    assert first.name == "store read" and first.kind is trace.SpanKind.CLIENT
    assert first.attributes == {"db.collection.name": "ledger", "accrue.system": "x"}
    assert second.attributes["db.collection.name"] == "balances"
    assert second.status.status_code is trace.StatusCode.ERROR


def test_configure_reuses_a_provider_already_installed(monkeypatch, tmp_path: Path, spans) -> None:
    provider = trace.get_tracer_provider()
    monkeypatch.setenv(tracing.TRACE_FILE_VARIABLE, str(tmp_path / "t.jsonl"))
    tracing.configure("api")
    assert trace.get_tracer_provider() is provider, "no second provider (the Azure Monitor distro's composes)"
    with tracing.span("filed"):
        pass
    trace.get_tracer_provider().force_flush()
    import json

    [line] = (tmp_path / "t.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "filed"


def test_a_batch_request_is_one_append_span_and_one_projection_span_for_all_its_orders(
        client, platform, tenant, spans) -> None:
    orders = [order_body(customer_id=f"c{n}", order_id=f"b{n}") for n in (1, 2, 3)]
    response = client.post("/v1/orders/batch", json={"orders": orders}, headers=auth(tenant.merchant))
    assert response.status_code == 202, response.text
    drain(platform)
    named = by_name(spans.get_finished_spans())
    [publish], [append], [projection] = named["publish"], named["ledger append"], named["projection"]
    assert append.parent.span_id == publish.context.span_id
    assert append.attributes["accrue.orders"] == 3 and append.attributes["accrue.outcome.credited"] == 3
    assert "accrue.order_id" not in append.attributes
    assert projection.parent.span_id == append.context.span_id
    contexts = {e["traceContext"] for n in (1, 2, 3) for e in platform.ledger.entries("acme", f"c{n}")}
    assert contexts == {tracing.traceparent(append)}


def test_orders_from_two_requests_in_one_ingest_batch_stay_in_their_own_traces(client, platform, tenant,
                                                                              spans) -> None:
    for n in (1, 2):
        assert client.post("/v1/orders", json=order_body(customer_id=f"c{n}", order_id=f"s{n}"),
                           headers=auth(tenant.merchant)).status_code == 202
    drain(platform)  # one claim takes both messages: one ingest batch
    named = by_name(spans.get_finished_spans())
    [batch] = named["ingest batch"]
    requests = named["POST /v1/orders"]
    assert len(batch.links) == 2 and len(named["ledger append"]) == 2 and len(named["projection"]) == 2
    assert {a.context.trace_id for a in named["ledger append"]} == {r.context.trace_id for r in requests}
    assert {p.context.trace_id for p in named["projection"]} == {r.context.trace_id for r in requests}


def test_a_message_not_sampled_at_the_request_gets_no_span_link_or_trace_context(platform, tenant, spans) -> None:
    from tests.conftest import claimed
    from tests.unit.app.test_ingest import message

    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    sampled = "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-01"
    report = platform.ingest.handle([claimed(platform, message(customer="c1", order_id="u1")),
                                     claimed(platform, message(customer="c2", order_id="s1"))],
                                    [unsampled, sampled])
    assert report.credited == 2
    drain(platform)
    named = by_name(spans.get_finished_spans())
    [batch], [append] = named["ingest batch"], named["ledger append"]
    assert [format(link.context.span_id, "016x") for link in batch.links] == ["b7ad6b7169203332"]
    assert append.attributes["accrue.order_id"] == "s1"
    assert all("traceContext" not in e for e in platform.ledger.entries("acme", "c1"))
    assert all(e["traceContext"] == tracing.traceparent(append) for e in platform.ledger.entries("acme", "c2"))
    assert len(named["projection"]) == 1


def test_the_request_span_continues_a_callers_traceparent(client, tenant, spans) -> None:
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = client.get("/v1/customers/c1/balance", headers={**auth(tenant.merchant), "traceparent": caller})
    assert response.status_code == 200, response.text
    [server] = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert server.name == "GET /v1/customers/{customerId}/balance"
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(server.parent.span_id, "016x") == "b7ad6b7169203331"


def test_event_hubs_publish_is_a_producer_span_whose_context_every_event_carries(spans) -> None:
    from azure.core.exceptions import ServiceRequestError

    from shared.bus.eventhubs import EventHubsOrderBus
    from shared.errors import BusUnavailable
    from tests.unit.bus.test_eventhubs_bus import FakeProducer, events_of, message

    producer = FakeProducer()
    bus = EventHubsOrderBus(producer, eventhub_name="orders", namespace="ns")
    bus.publish([message("t", "c1", "o1"), message("t", "c2", "o2"), message("t", "c1", "o3")])
    [publish] = spans.get_finished_spans()
    assert publish.name == "publish" and publish.kind is trace.SpanKind.PRODUCER
    assert publish.attributes["messaging.system"] == "eventhubs" and publish.attributes["accrue.messages"] == 3
    carried = {event.properties["traceparent"] for batch in producer.sent for event in events_of(batch)}
    assert carried == {tracing.traceparent(publish)}
    failing = EventHubsOrderBus(FakeProducer(fail_on_send=ServiceRequestError("down")))
    with pytest.raises(BusUnavailable):
        failing.publish([message("t", "c1", "o4")])
    assert spans.get_finished_spans()[-1].status.status_code is trace.StatusCode.ERROR


def test_a_provider_installed_after_configure_is_picked_up_at_the_first_span(monkeypatch, spans) -> None:
    # As on Azure: tracing.configure found no provider and no exporter (stayed off); the
    # Azure Monitor distro then installed its SDK provider (here: the test's).
    monkeypatch.setattr(tracing, "_enabled", False)
    with tracing.span("after the distro"):
        pass
    assert tracing.enabled()
    assert [s.name for s in spans.get_finished_spans()] == ["after the distro"]
