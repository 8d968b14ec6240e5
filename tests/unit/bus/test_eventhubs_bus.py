"""The Event Hubs bus adapter, against the SDK's own objects.

No Event Hubs runs here, so the producer is a fake, but it speaks the SDK's
types: ``create_batch`` returns a real ``azure.eventhub.EventDataBatch`` (built
the way the SDK builds one, with a partition key and a size limit), the adapter
adds real ``EventData`` to it and the real batch enforces its size limit, and
failures are the SDK's real exception classes.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub._buffered_producer._partition_resolver import PartitionResolver
from azure.eventhub.exceptions import AuthenticationError, ConnectError, EventHubError, OperationTimeoutError

from shared.bus.eventhubs import EventHubsOrderBus, to_event
from shared.bus.port import BusMessage
from shared.errors import BusUnavailable, PayloadTooLarge


class FakeProducer:
    """Stands in for ``EventHubProducerClient``; records what would have been sent.

    Thread-safe like the client (the adapter sends partitions from several threads);
    ``send_delay`` keeps a send in flight a while so concurrency is observable."""

    def __init__(self, max_size_in_bytes: int = 1024 * 1024, fail_on_send: Exception | None = None,
                 fail_on_create: Exception | None = None, fail_after_sends: int = 0, partitions: int = 4,
                 send_delay: float = 0.0, fail_partition: str | None = None) -> None:
        self.max_size_in_bytes = max_size_in_bytes
        self.fail_on_send = fail_on_send
        self.fail_on_create = fail_on_create
        self.fail_after_sends = fail_after_sends
        self.fail_partition = fail_partition
        self.partitions = [str(n) for n in range(partitions)]
        self.send_delay = send_delay
        self.created: list[str | None] = []
        self.sent: list[EventDataBatch] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.in_flight_at_failure: list[int] = []
        self.closed = False
        self._lock = threading.Lock()

    def get_partition_ids(self) -> list[str]:
        return list(self.partitions)

    def create_batch(self, *, partition_id: str | None = None, partition_key: str | None = None,
                     **kwargs: Any) -> EventDataBatch:
        if self.fail_on_create is not None:
            raise self.fail_on_create
        with self._lock:
            self.created.append(partition_id if partition_id is not None else partition_key)
        return EventDataBatch(max_size_in_bytes=self.max_size_in_bytes, partition_id=partition_id,
                              partition_key=partition_key)

    def send_batch(self, event_data_batch: EventDataBatch, **kwargs: Any) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.send_delay)
            with self._lock:
                failing = self.fail_on_send is not None and len(self.sent) >= self.fail_after_sends and (
                    self.fail_partition is None or event_data_batch._partition_id == self.fail_partition)  # noqa: SLF001
                if not failing:
                    self.sent.append(event_data_batch)
                    return
            assert self.fail_on_send is not None
            raise self.fail_on_send
        finally:
            with self._lock:
                self.in_flight -= 1

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


def partition_of(producer: FakeProducer, key: str) -> str:
    return PartitionResolver(producer.partitions).get_partition_id_by_partition_key(key)


def sent_orders(producer: FakeProducer) -> list[tuple[str | None, str]]:
    """(partition, order id) in send order."""
    return [(batch._partition_id or batch._partition_key, event.body_as_json()["order"]["orderId"])  # noqa: SLF001
            for batch in producer.sent for event in events_of(batch)]


def orders_by_customer(producer: FakeProducer) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for batch in producer.sent:
        for event in events_of(batch):
            body = event.body_as_json()
            seen.setdefault(f"{body['tenantId']}:{body['order']['customerId']}", []).append(body["order"]["orderId"])
    return seen


def test_events_carry_json_body_content_type_and_schema_properties() -> None:
    producer = FakeProducer()
    bus = EventHubsOrderBus(producer)
    bus.publish([message("acme", "c1", "o1")])

    assert producer.created == [partition_of(producer, "acme:c1")]
    [batch] = producer.sent
    [event] = events_of(batch)
    assert event.body_as_json() == {"type": "order.received", "version": 1, "tenantId": "acme",
                                    "order": {"customerId": "c1", "orderId": "o1", "note": ""}}
    assert event.content_type == "application/json"
    assert event.properties == {"type": "order.received", "version": 1}
    assert batch._partition_id == partition_of(producer, "acme:c1")  # noqa: SLF001


def test_messages_are_grouped_by_partition_and_each_customer_keeps_its_order() -> None:
    producer = FakeProducer(partitions=2)
    bus = EventHubsOrderBus(producer)
    bus.publish([message("acme", "c1", "o1"), message("acme", "c2", "o2"), message("acme", "c1", "o3"),
                 message("globex", "c1", "o4"), message("acme", "c2", "o5")])

    # One batch per partition used, whatever the number of customers.
    keys = ["acme:c1", "acme:c2", "globex:c1"]
    assert sorted(producer.created) == sorted({partition_of(producer, k) for k in keys})
    assert orders_by_customer(producer) == {"acme:c1": ["o1", "o3"], "acme:c2": ["o2", "o5"], "globex:c1": ["o4"]}
    for partition, order in sent_orders(producer):  # each order went to its customer's partition
        key = {"o1": "acme:c1", "o3": "acme:c1", "o2": "acme:c2", "o5": "acme:c2", "o4": "globex:c1"}[order]
        assert partition == partition_of(producer, key)


def test_500_customers_go_in_one_batch_per_partition_not_one_per_customer() -> None:
    producer = FakeProducer(partitions=32)
    bus = EventHubsOrderBus(producer)
    messages = [message("acme", f"c{n}", f"o{n}") for n in range(500)]
    bus.publish(messages)

    assert len(producer.sent) <= 32
    assert sorted(o for _, o in sent_orders(producer)) == sorted(f"o{n}" for n in range(500))
    assert {p for p, _ in sent_orders(producer)} <= set(producer.partitions)


def test_partitions_are_sent_concurrently_and_publish_returns_after_every_ack() -> None:
    producer = FakeProducer(partitions=8, send_delay=0.05)
    bus = EventHubsOrderBus(producer, max_concurrency=8)
    bus.publish([message("acme", f"c{n}", f"o{n}") for n in range(64)])

    assert producer.most_in_flight > 1
    assert producer.in_flight == 0  # nothing still going out once publish returned
    assert len(sent_orders(producer)) == 64
    bus.close()


def test_a_customer_spread_over_many_batches_keeps_its_order_under_concurrency() -> None:
    probe = EventDataBatch(max_size_in_bytes=1 << 20, partition_id="0")
    for n in range(3):
        probe.add(to_event(message("acme", "c1", f"o{n}", pad=200)))
    producer = FakeProducer(max_size_in_bytes=probe.size_in_bytes, partitions=4, send_delay=0.002)
    bus = EventHubsOrderBus(producer)
    messages = [message("acme", f"c{n % 7}", f"o{n}", pad=200) for n in range(70)]
    bus.publish(messages)

    assert all(len(batch) <= 3 for batch in producer.sent)
    expected: dict[str, list[str]] = {}
    for m in messages:
        expected.setdefault(m.partition_key, []).append(m.body["order"]["orderId"])
    assert orders_by_customer(producer) == expected


def test_without_partition_ids_each_key_gets_its_own_ordered_chain() -> None:
    producer = FakeProducer()
    bus = EventHubsOrderBus(producer, use_partition_ids=False)
    bus.publish([message("acme", "c1", "o1"), message("acme", "c2", "o2"), message("acme", "c1", "o3")])
    assert sorted(producer.created) == ["acme:c1", "acme:c2"]
    assert orders_by_customer(producer) == {"acme:c1": ["o1", "o3"], "acme:c2": ["o2"]}


def test_the_sdk_partition_hash_is_stable_and_spreads_keys() -> None:
    # The adapter relies on this private SDK helper (pinned azure-eventhub): one key, one partition.
    resolver = PartitionResolver([str(n) for n in range(32)])
    first = [resolver.get_partition_id_by_partition_key(f"acme:c{n}") for n in range(1000)]
    again = [PartitionResolver([str(n) for n in range(32)]).get_partition_id_by_partition_key(f"acme:c{n}")
             for n in range(1000)]
    assert first == again
    assert len(set(first)) == 32


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
    assert sent_orders(producer) == [(partition_of(producer, "acme:c1"), f"o{n}") for n in range(5)]


def test_an_event_larger_than_an_empty_batch_is_refused_as_too_large() -> None:
    producer = FakeProducer(max_size_in_bytes=300)
    bus = EventHubsOrderBus(producer)
    with pytest.raises(PayloadTooLarge, match="acme:c1"):
        bus.publish([message("acme", "c2", "o0"), message("acme", "c1", "o1", pad=1000)])
    assert producer.sent == []  # not even the other customer's small order: nothing of the call went


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


def test_a_failure_part_way_names_the_customers_and_waits_for_the_other_sends() -> None:
    producer = FakeProducer(partitions=4, send_delay=0.02, fail_on_send=EventHubError("link detached"))
    keys = [f"acme:c{n}" for n in range(40)]
    producer.fail_partition = partition_of(producer, keys[0])
    bus = EventHubsOrderBus(producer)
    with pytest.raises(BusUnavailable) as caught:
        bus.publish([message("acme", k.split(":")[1], f"o{n}") for n, k in enumerate(keys)])
    assert "acme:c0" in caught.value.details["partition_key"]
    assert producer.in_flight == 0  # every other partition's send had ended before the error was raised
    sent = {o for _, o in sent_orders(producer)}
    assert sent == {f"o{n}" for n, k in enumerate(keys) if partition_of(producer, k) != producer.fail_partition}


def test_partition_ids_unavailable_is_bus_unavailable() -> None:
    producer = FakeProducer()
    producer.get_partition_ids = lambda: (_ for _ in ()).throw(ConnectError("getaddrinfo failed"))  # type: ignore[method-assign]
    with pytest.raises(BusUnavailable, match="could not connect"):
        EventHubsOrderBus(producer).publish([message("acme", "c1", "o1")])


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


def test_after_a_failed_send_the_partition_ids_are_read_again() -> None:
    producer = FakeProducer(partitions=2)
    asked = []
    real = producer.get_partition_ids
    producer.get_partition_ids = lambda: asked.append(1) or real()  # type: ignore[method-assign]
    bus = EventHubsOrderBus(producer)
    bus.publish([message("acme", "c1", "o1")])
    bus.publish([message("acme", "c1", "o2")])
    assert len(asked) == 1  # cached
    producer.fail_on_send = ConnectError("Invalid partition 1")
    with pytest.raises(BusUnavailable):
        bus.publish([message("acme", "c1", "o3")])
    producer.fail_on_send = None
    producer.partitions = [str(n) for n in range(4)]  # the hub grew
    bus.publish([message("acme", "c1", "o4")])
    assert len(asked) == 2
    assert producer.sent[-1]._partition_id == partition_of(producer, "acme:c1")  # noqa: SLF001
