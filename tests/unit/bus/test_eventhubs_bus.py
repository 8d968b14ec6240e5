"""The Event Hubs bus adapter, against the SDK's own objects.

No Event Hubs runs here, so the producer is a fake, but it speaks the SDK's
types: ``create_batch`` returns a real ``azure.eventhub.EventDataBatch`` (built
the way the SDK builds one, with a partition key and a size limit), the adapter
adds real ``EventData`` to it and the real batch enforces its size limit, and
failures are the SDK's real exception classes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.exceptions import AuthenticationError, ConnectError, EventHubError, OperationTimeoutError

from shared.bus.eventhubs import EventHubsOrderBus, to_event
from shared.bus.port import BusMessage
from shared.errors import BusUnavailable, PayloadTooLarge


class FakeProducer:
    """Stands in for ``EventHubProducerClient``; records what would have been sent."""

    def __init__(self, max_size_in_bytes: int = 1024 * 1024, fail_on_send: Exception | None = None,
                 fail_on_create: Exception | None = None, fail_after_sends: int = 0) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.fail_on_send = fail_on_send
        self.fail_on_create = fail_on_create
        self.fail_after_sends = fail_after_sends
        self.created: list[str | None] = []
        self.sent: list[EventDataBatch] = []
        self.closed = False

    def create_batch(self, *, partition_key: str | None = None, **kwargs: Any) -> EventDataBatch:
        if self.fail_on_create is not None:
            raise self.fail_on_create
        self.created.append(partition_key)
        return EventDataBatch(max_size_in_bytes=self.max_size_in_bytes, partition_key=partition_key)

    def send_batch(self, event_data_batch: EventDataBatch, **kwargs: Any) -> None:
        if self.fail_on_send is not None and len(self.sent) >= self.fail_after_sends:
            raise self.fail_on_send
        self.sent.append(event_data_batch)

    def close(self) -> None:
        self.closed = True


def events_of(batch: EventDataBatch) -> list[EventData]:
    # The SDK keeps the added events on the batch; there is no public reader.
    events = list(batch._internal_events)  # noqa: SLF001
    assert len(events) == len(batch)
    return events


def message(tenant: str, customer: str, order: str, pad: int = 0) -> BusMessage:
    body = {"type": "order.received", "version": 1, "tenantId": tenant,
            "order": {"customerId": customer, "orderId": order, "note": "x" * pad}}
    return BusMessage(partition_key=f"{tenant}:{customer}", body=body)


def sent_orders(producer: FakeProducer) -> list[tuple[str | None, str]]:
    return [(batch._partition_key, event.body_as_json()["order"]["orderId"])  # noqa: SLF001
            for batch in producer.sent for event in events_of(batch)]


def test_events_carry_json_body_content_type_and_schema_properties() -> None:
    producer = FakeProducer()
    bus = EventHubsOrderBus(producer)
    bus.publish([message("acme", "c1", "o1")])

    assert producer.created == ["acme:c1"]
    [batch] = producer.sent
    [event] = events_of(batch)
    assert event.body_as_json() == {"type": "order.received", "version": 1, "tenantId": "acme",
                                    "order": {"customerId": "c1", "orderId": "o1", "note": ""}}
    assert event.content_type == "application/json"
    assert event.properties == {"type": "order.received", "version": 1}
    assert batch._partition_key == "acme:c1"  # noqa: SLF001


def test_messages_are_grouped_by_customer_and_keep_their_order() -> None:
    producer = FakeProducer()
    bus = EventHubsOrderBus(producer)
    bus.publish([message("acme", "c1", "o1"), message("acme", "c2", "o2"), message("acme", "c1", "o3"),
                 message("globex", "c1", "o4"), message("acme", "c2", "o5")])

    assert producer.created == ["acme:c1", "acme:c2", "globex:c1"]
    assert sent_orders(producer) == [("acme:c1", "o1"), ("acme:c1", "o3"), ("acme:c2", "o2"),
                                     ("acme:c2", "o5"), ("globex:c1", "o4")]


def test_a_full_batch_is_sent_and_the_rest_goes_in_the_next_one() -> None:
    # Measure what two events take in a real batch, and allow just that.
    probe = EventDataBatch(max_size_in_bytes=1 << 20, partition_key="acme:c1")
    for n in range(2):
        probe.add(to_event(message("acme", "c1", f"o{n}", pad=400)))
    limit = probe.size_in_bytes
    producer = FakeProducer(max_size_in_bytes=limit)
    bus = EventHubsOrderBus(producer)
    bus.publish([message("acme", "c1", f"o{n}", pad=400) for n in range(5)])

    assert [len(batch) for batch in producer.sent] == [2, 2, 1]
    assert all(batch.size_in_bytes <= limit for batch in producer.sent)
    assert sent_orders(producer) == [("acme:c1", f"o{n}") for n in range(5)]


def test_an_event_larger_than_an_empty_batch_is_refused_as_too_large() -> None:
    producer = FakeProducer(max_size_in_bytes=300)
    bus = EventHubsOrderBus(producer)
    with pytest.raises(PayloadTooLarge, match="acme:c1"):
        bus.publish([message("acme", "c1", "o1", pad=1000)])
    assert producer.sent == []


def test_nothing_to_publish_touches_nothing() -> None:
    producer = FakeProducer()
    EventHubsOrderBus(producer).publish([])
    assert producer.created == [] and producer.sent == []


@pytest.mark.parametrize("error, says", [
    (ConnectError("amqp:connection refused"), "could not connect"),
    (AuthenticationError("token refused"), "identity was refused"),
    (OperationTimeoutError("send timed out"), "timed out"),
    (EventHubError("amqp:internal-error"), "send failed"),
    (ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token"), "identity was refused"),
])
def test_sdk_errors_on_send_become_bus_unavailable(error: Exception, says: str) -> None:
    bus = EventHubsOrderBus(FakeProducer(fail_on_send=error), eventhub_name="orders",
                            namespace="accrue-eu.servicebus.windows.net")
    with pytest.raises(BusUnavailable) as caught:
        bus.publish([message("acme", "c1", "o1")])
    assert says in caught.value.message
    assert "orders" in caught.value.message and "accrue-eu.servicebus.windows.net" in caught.value.message
    assert caught.value.__cause__ is error
    assert caught.value.status == 503


def test_sdk_errors_on_create_batch_become_bus_unavailable() -> None:
    bus = EventHubsOrderBus(FakeProducer(fail_on_create=ConnectError("getaddrinfo failed")))
    with pytest.raises(BusUnavailable, match="could not connect"):
        bus.publish([message("acme", "c1", "o1")])


def test_a_failure_part_way_names_the_partition_that_failed() -> None:
    producer = FakeProducer(fail_on_send=EventHubError("link detached"), fail_after_sends=1)
    bus = EventHubsOrderBus(producer)
    with pytest.raises(BusUnavailable) as caught:
        bus.publish([message("acme", "c1", "o1"), message("acme", "c2", "o2")])
    assert sent_orders(producer) == [("acme:c1", "o1")]
    assert caught.value.details["partition_key"] == "acme:c2"


def test_body_is_compact_utf8_json() -> None:
    producer = FakeProducer()
    body = {"type": "order.received", "version": 1, "tenantId": "café"}
    EventHubsOrderBus(producer).publish([BusMessage("café:c1", body)])
    [event] = events_of(producer.sent[0])
    assert b"".join(event.body) == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_close_closes_the_producer_and_from_namespace_does_not_connect() -> None:
    producer = FakeProducer()
    EventHubsOrderBus(producer).close()
    assert producer.closed

    # Building the real client must not open a connection (it connects on first send).
    bus = EventHubsOrderBus.from_namespace("accrue-test.servicebus.windows.net", "orders", credential=object())
    assert isinstance(bus, EventHubsOrderBus)
    bus.close()
