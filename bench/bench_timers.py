"""Benchmark of issue 16's timers and producer (short: a few seconds on one core).

* producer: 500 orders of 500 customers through ``EventHubsOrderBus`` over a
  stand-in producer that speaks the SDK's types (real ``EventDataBatch``) and
  takes ``--send-ms`` per ``send_batch`` (a service round trip), 32 partitions.
  Printed: batches sent and wall time, packed per partition and concurrent
  (as shipped) against one chain per customer sent one after another (the
  previous adapter's behaviour: ``use_partition_ids=False, max_concurrency=1``).
* idle webhook timer: store calls of one idle ``DeliveryWorker.run_once``
  (the outbox marker's point read) against a round that looks (no marker).

Usage: ``python bench/bench_timers.py [--send-ms 5]``. Prints the figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.eventhub import EventDataBatch  # noqa: E402

from shared.bus.eventhubs import EventHubsOrderBus  # noqa: E402
from shared.bus.port import BusMessage  # noqa: E402


class SlowProducer:
    def __init__(self, send_seconds: float, partitions: int = 32) -> None:
        self.send_seconds = send_seconds
        self.partitions = [str(n) for n in range(partitions)]
        self.sends = 0
        self._lock = threading.Lock()

    def get_partition_ids(self) -> list[str]:
        return self.partitions

    def create_batch(self, **kwargs: Any) -> EventDataBatch:
        return EventDataBatch(max_size_in_bytes=1024 * 1024, partition_id=kwargs.get("partition_id"),
                              partition_key=kwargs.get("partition_key"))

    def send_batch(self, batch: EventDataBatch, **kwargs: Any) -> None:
        time.sleep(self.send_seconds)  # the service's acknowledgement
        with self._lock:
            self.sends += 1

    def close(self) -> None:
        pass


def producer(send_ms: float) -> None:
    messages = [BusMessage(f"acme:c{n}", {"type": "order.received", "version": 1, "tenantId": "acme",
                                          "order": {"customerId": f"c{n}", "orderId": f"o{n}", "amount": "10.00"}})
                for n in range(500)]
    for label, options in (("one chain per customer, sequential (before)", {"use_partition_ids": False,
                                                                               "max_concurrency": 1}),
                           ("per partition, concurrent (now)", {})):
        fake = SlowProducer(send_ms / 1000)
        bus = EventHubsOrderBus(fake, **options)
        started = time.perf_counter()
        bus.publish(messages)
        elapsed = time.perf_counter() - started
        bus.close()
        print(f"producer, 500 orders of 500 customers, {send_ms:g} ms per send: {label}: "
              f"{fake.sends} batches, {elapsed * 1000:.0f} ms")


def idle_webhooks() -> None:
    from shared.platform import build_platform
    from shared.settings import Settings

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner, self.calls = inner, {"read": 0, "query": 0}

        def read(self, *a: Any, **k: Any) -> Any:
            self.calls["read"] += 1
            return self.inner.read(*a, **k)

        def query(self, *a: Any, **k: Any) -> Any:
            self.calls["query"] += 1
            return self.inner.query(*a, **k)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    with tempfile.TemporaryDirectory() as folder:
        platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": folder}))
        try:
            store = Counting(platform.store)
            platform.webhook_worker._store = store  # noqa: SLF001
            platform.webhooks.outbox._store = store  # noqa: SLF001
            platform.webhook_worker.run_once()
            print(f"webhook timer, first round (no marker yet: looks): {store.calls}")
            store.calls = {"read": 0, "query": 0}
            rounds = 1000
            started = time.perf_counter()
            for _ in range(rounds):
                platform.webhook_worker.run_once()
            elapsed = time.perf_counter() - started
            print(f"webhook timer, idle rounds: {store.calls['read'] / rounds:g} read and "
                  f"{store.calls['query'] / rounds:g} queries a round, {elapsed / rounds * 1e6:.0f} µs a round")
        finally:
            platform.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--send-ms", type=float, default=5.0)
    args = parser.parse_args()
    producer(args.send_ms)
    idle_webhooks()


if __name__ == "__main__":
    main()
