"""What recording the metrics costs on the hot path of ingestion: the same
batches of orders through ``IngestHandler.handle`` and ``Projector.apply`` on
the embedded store, with the instruments on an SDK meter provider (as the local
platform runs) and on the API's no-op meter (telemetry off), interleaved, in one
run. Prints orders/s for each and the cost per order.

    python bench/bench_metrics.py [--batches 10] [--batch 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

from shared.app.auth import Role  # noqa: E402,F401
from shared.app.claims import order_claim, published  # noqa: E402
from shared.app.customers import CustomerProfile  # noqa: E402
from shared.app.messages import order_message  # noqa: E402
from shared.domain.orders import Order  # noqa: E402
from shared.domain.tenants import TenantSettings  # noqa: E402
from shared.ledger.service import fingerprint_of  # noqa: E402
from shared.platform import build_platform  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.store.layout import LEDGER, ORDER_STATUS  # noqa: E402
from shared.telemetry import metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=10, help="batches per mode (default 10)")
    parser.add_argument("--batch", type=int, default=500, help="orders per batch (default 500)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": folder}))
        platform.tenants.save(TenantSettings(tenantId="t", name="t", currency="EUR", timeZone="UTC",
                                             pointsPerUnit=Decimal(10)))
        for n in range(args.batch):
            platform.customers.register("t", CustomerProfile(customerId=f"c{n}", joinDate=date(2025, 1, 1)))
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        seconds: dict[str, list[float]] = {"on": [], "off": []}
        lsn, sequence = 0, 0
        for round_no in range(args.batches * 2):
            # off, on, on, off, off, on ...: the store grows as it goes, and neither mode always runs later.
            mode = "on" if (round_no % 4) in (1, 2) else "off"
            metrics.bind(provider if mode == "on" else None)
            bodies = []
            now = datetime.now(timezone.utc)
            for n in range(args.batch):
                sequence += 1
                order = Order(customerId=f"c{n}", orderId=f"o{sequence}", amount=Decimal("10.00"), currency="EUR",
                              timestamp=now)
                body = order_message("t", order, now).to_body()
                payload = order.to_message()
                platform.store.create(ORDER_STATUS, published(order_claim("t", order, payload, fingerprint_of(payload),
                                                                          now.isoformat(), now.isoformat())))
                bodies.append(body)
            started = time.perf_counter()
            platform.ingest.handle(bodies)
            changes = platform.store.changes(LEDGER, lsn, 100_000)
            platform.projector.apply([c.doc for c in changes])
            seconds[mode].append(time.perf_counter() - started)
            lsn = changes[-1].lsn
        metrics.bind(None)
        platform.close()
    # Medians of the batches: a shared machine's other work lands on a few batches, not on a mode.
    off, on = (args.batch / statistics.median(seconds[mode]) for mode in ("off", "on"))
    print(f"ingest + projection, {args.batches} batches of {args.batch} orders per mode (median batch)")
    print(f"telemetry off: {off:,.0f} orders/s")
    print(f"telemetry on:  {on:,.0f} orders/s")
    print(f"cost: {(1 / on - 1 / off) * 1e6:.1f} µs per order, {(1 - on / off) * 100:.1f} % of throughput")
    # The recording calls alone, as ingestion and projection make them for one batch (stabler than the difference).
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    metrics.bind(provider)
    outcomes = [{"status": "credited"}] * args.batch
    accepted = [datetime.now(timezone.utc).isoformat()] * args.batch
    started = time.perf_counter()
    for _ in range(20):
        metrics.order_outcomes(outcomes, [time.time()] * args.batch, time.time())
        metrics.rule_evaluations({"closure": [0.01, args.batch]})
        metrics.projection_lag(accepted, time.time())
    per_order = (time.perf_counter() - started) / (20 * args.batch)
    metrics.bind(None)
    print(f"the recording calls alone: {per_order * 1e6:.1f} µs per order "
          f"({per_order * off * 100:.1f} % of the telemetry-off time per order)")


if __name__ == "__main__":
    main()
