"""Metrics: the platform's SLO and operations metrics, recorded through the
OpenTelemetry metrics API, and on the local platform one Prometheus exposition
that covers its three processes.

Recording: the domain calls the small functions below (``order_outcomes``,
``ingest_lag`` ...), one line at the place where the thing happens. They never
raise and never change what the platform does. Names are in
``shared.telemetry.names``; attributes are few and bounded (an outcome, a
reason code, an evaluator, a job name); no tenant, customer or order id ever
becomes an attribute: tenants grow without bound and per-tenant views belong
to the API and the logs.

Where the numbers go:

* **Azure**: the Azure Monitor distro (``shared.telemetry.azure_monitor``)
  installs the global meter provider; the instruments here are created on the
  API's proxy meter, so they follow whichever provider is installed.
* **Locally**: ``configure`` installs a meter provider whose reader writes the
  process's cumulative snapshot every ``EXPORT_SECONDS`` to
  ``<data>/metrics/<process>.json`` (atomic rename). The API's ``/metrics``
  flushes its own process and merges every process's file: counters, up-down
  counters and histograms summed, gauges kept per process (``process`` label).
  Why files rather than prometheus-client's multiprocess mode: recording goes
  through one API (OpenTelemetry) whatever the exporter, so the same calls feed
  OTLP and Azure Monitor; prometheus-client's mode would need a second set of
  instruments and its value class fixed before import. A worker's figures are
  at most ``EXPORT_SECONDS`` old; a restarted worker starts from zero, which
  Prometheus reads as a counter reset. The folder is emptied when the platform
  starts (``reset_local``).
* **OTLP**: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its metrics variant) set,
  a second reader exports the same metrics over OTLP/HTTP.

The state gauges (bus backlog, poison pending, failing and disabled webhook
endpoints, projection lag now) are observable gauges fed by
``shared.telemetry.status`` for the platform given to ``watch``: the API
process locally, the Functions worker on Azure.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from opentelemetry import metrics as otel
from opentelemetry.metrics import CallbackOptions, Observation

from shared.telemetry import names
from shared.telemetry.logs import fields

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider

    from shared.platform import Platform

log = logging.getLogger("accrue.telemetry")

METER = "accrue"
EXPORT_SECONDS = 1.0
SNAPSHOT_DIR = "metrics"
# Seconds: lags and latencies from 5 ms to 10 min (the projection-lag alert is at 30 s).
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# Rule evaluation: microseconds to a wasm call's worst case.
EVALUATION_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
# Request units per Cosmos operation.
RU_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}
# How long the observable gauges reuse one status reading (each reading queries the store).
STATUS_TTL_SECONDS = 10.0


class Instruments:
    """Every instrument of the platform, made on one meter."""

    def __init__(self, meter: otel.Meter) -> None:
        self.orders_accepted = meter.create_counter(
            names.ORDERS_ACCEPTED, "{order}", "orders accepted by the API (new claims, published to the bus)")
        self.orders_credited = meter.create_counter(
            names.ORDERS_CREDITED, "{order}", "orders credited by ingestion")
        self.orders_held = meter.create_counter(
            names.ORDERS_HELD, "{order}", "orders held for review by the fraud controls")
        self.orders_rejected = meter.create_counter(
            names.ORDERS_REJECTED, "{order}", "orders rejected by ingestion, by reason code")
        self.ingest_lag = meter.create_histogram(
            names.INGEST_LAG, "s", "order accepted by the API -> its ledger transaction committed",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.projection_lag = meter.create_histogram(
            names.PROJECTION_LAG, "s", "ledger transaction committed -> its read models written",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.poison_items = meter.create_counter(
            names.POISON_ITEMS, "{item}", "items put in the poison store or the queue's poison table, by source")
        self.deferred_batches = meter.create_counter(
            names.DEFERRED_BATCHES, "{batch}", "ingest batches that failed and were given back for a retry")
        self.rule_evaluation = meter.create_histogram(
            names.RULE_EVALUATION_TIME, "s", "mean rule evaluation time of one order, per ingest batch and evaluator",
            explicit_bucket_boundaries_advisory=EVALUATION_BUCKETS)
        self.webhook_attempts = meter.create_counter(
            names.WEBHOOK_ATTEMPTS, "{attempt}", "webhook delivery attempts, by outcome")
        self.webhook_latency = meter.create_histogram(
            names.WEBHOOK_DELIVERY_LATENCY, "s", "webhook event created -> delivered (2xx)",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.redemptions = meter.create_counter(
            names.REDEMPTIONS, "{redemption}", "redemption requests and settlements, by outcome")
        self.partner_circuit = meter.create_gauge(
            names.PARTNER_CIRCUIT_STATE, "1", "a partner's circuit breaker: 0 closed, 1 half-open, 2 open")
        self.reconciliation_drift = meter.create_counter(
            names.RECONCILIATION_DRIFT, "{balance}", "balances found drifting from their ledger by reconciliation")
        self.job_runs = meter.create_counter(names.JOB_RUNS, "{run}", "timer job runs, by job and outcome")
        self.job_duration = meter.create_histogram(
            names.JOB_DURATION, "s", "timer job run time, by job", explicit_bucket_boundaries_advisory=SECONDS_BUCKETS)
        self.job_progress = meter.create_counter(
            names.JOB_PROGRESS, "{item}", "items a timer job processed, by job and item kind")
        self.cosmos_charge = meter.create_histogram(
            names.COSMOS_REQUEST_CHARGE, "{RU}", "Cosmos DB request charge per request, by operation kind",
            explicit_bucket_boundaries_advisory=RU_BUCKETS)
        meter.create_observable_gauge(names.BUS_BACKLOG, [_observe("backlog")], "{message}",
                                      "messages waiting on the local queue")
        meter.create_observable_gauge(names.POISON_PENDING, [_observe("poison")], "{item}",
                                      "items resting in the poison stores, waiting for replay")
        meter.create_observable_gauge(names.WEBHOOK_ENDPOINTS_FAILING, [_observe("failing")], "{endpoint}",
                                      "webhook endpoints failing (no success since failingSince)")
        meter.create_observable_gauge(names.WEBHOOK_ENDPOINTS_DISABLED, [_observe("disabled")], "{endpoint}",
                                      "webhook endpoints disabled (410 Gone or failing for days)")
        meter.create_observable_gauge(names.PROJECTION_BEHIND, [_observe("projection")], "s",
                                      "age of the oldest ledger change not yet projected (0 when caught up)")


# --- the state gauges (observable) ------------------------------------------------------


@dataclass
class _Watch:
    platform: Platform
    read_at: float = 0.0
    reading: dict[str, float | None] | None = None


_watch: _Watch | None = None
_watch_lock = threading.Lock()


def watch(platform: Platform | None) -> None:
    """Feed the state gauges from this platform's status (None: stop)."""
    global _watch
    with _watch_lock:
        _watch = _Watch(platform) if platform is not None else None


def _gauges(fresh: bool = False) -> dict[str, float | None]:
    with _watch_lock:
        current = _watch
        if current is None:
            return {}
        if fresh or current.reading is None or time.monotonic() - current.read_at >= STATUS_TTL_SECONDS:
            from shared.telemetry.status import gauges

            try:
                current.reading = gauges(current.platform)
            except Exception:  # noqa: BLE001 - a metric is never worth a failure
                log.warning("could not read the platform's status for the metrics", exc_info=True, extra=fields())
                current.reading = {}
            current.read_at = time.monotonic()
        return current.reading


def _observe(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        value = _gauges().get(key)
        return [] if value is None else [Observation(value)]

    return callback


# --- the instruments in use -------------------------------------------------------------

_instruments = Instruments(otel.get_meter(METER))
_local: "LocalAggregation | None" = None


def bind(provider: "MeterProvider | None") -> None:
    """Record on this provider's meter (tests: an in-memory reader); None: the global one."""
    global _instruments
    _instruments = Instruments(provider.get_meter(METER) if provider is not None else otel.get_meter(METER))


def _safe(record: Callable[[Instruments], object]) -> None:
    try:
        record(_instruments)
    except Exception:  # noqa: BLE001 - telemetry never changes what the platform does
        log.debug("metric not recorded", exc_info=True, extra=fields())


# --- recording (one call where the thing happens) ---------------------------------------


def orders_accepted(count: int) -> None:
    if count:
        _safe(lambda i: i.orders_accepted.add(count))


def order_outcomes(outcomes: Sequence[Mapping[str, Any]], accepted_at: Sequence[float], now: float) -> None:
    """Ingest's committed outcomes (duplicates excluded) and the time each order was accepted;
    ``now`` is the commit's time (epoch seconds, on the ledger's clock)."""
    def record(i: Instruments) -> None:
        # Counted per batch (one add per kind), the lag per order (its p99 is the SLO).
        credited = held = 0
        rejected: dict[str, int] = {}
        for outcome, accepted in zip(outcomes, accepted_at):
            status = outcome.get("status")
            if status == "held":
                held += 1
            elif status == "rejected":
                code = str((outcome.get("reason") or {}).get("code", "unknown"))
                rejected[code] = rejected.get(code, 0) + 1
            else:
                credited += 1
            i.ingest_lag.record(max(0.0, now - accepted))
        if credited:
            i.orders_credited.add(credited)
        if held:
            i.orders_held.add(held)
        for code, count in rejected.items():
            i.orders_rejected.add(count, {"reason": code})

    if outcomes:
        _safe(record)


def order_refused(code: str) -> None:
    """An order the ledger refused (its key or id used otherwise): rejected, by the error's code."""
    _safe(lambda i: i.orders_rejected.add(1, {"reason": code}))


def projection_lag(committed_at: Iterable[str], now: float) -> None:
    """One observation per ledger transaction projected: ``committed_at`` its createdAt (ISO)."""
    from shared.clock import parse_iso

    def record(i: Instruments) -> None:
        for created in committed_at:
            i.projection_lag.record(max(0.0, now - parse_iso(created).timestamp()))

    _safe(record)


def poisoned(source: str, count: int = 1) -> None:
    _safe(lambda i: i.poison_items.add(count, {"source": source}))


def batch_deferred(source: str) -> None:
    """A batch given back for a retry (``source``: ingest, projections)."""
    _safe(lambda i: i.deferred_batches.add(1, {"source": source}))


def rule_evaluations(timings: Mapping[str, Sequence[float]]) -> None:
    """An ingest batch's evaluations: evaluator -> (seconds, orders). One observation per
    batch and evaluator, the mean time of one order: a record per order cost more than
    the closures it measured (bench/bench_metrics.py)."""
    def record(i: Instruments) -> None:
        for evaluator, (seconds, orders) in timings.items():
            if orders:
                i.rule_evaluation.record(seconds / orders, {"evaluator": evaluator})

    if timings:
        _safe(record)


def webhook_attempt(outcome: str) -> None:
    """``outcome``: succeeded | failed | gone (410) | error (no HTTP answer)."""
    _safe(lambda i: i.webhook_attempts.add(1, {"outcome": outcome}))


def webhook_delivered(seconds: float) -> None:
    _safe(lambda i: i.webhook_latency.record(max(0.0, seconds)))


def redemption(outcome: str, stage: str) -> None:
    """``stage`` request: what a redeem call left (reserved, completed, in-review, confirmed by a
    partner, refused:<code>, replayed); settlement: how a reservation ended (confirmed, cancelled,
    expired, rejected ...)."""
    _safe(lambda i: i.redemptions.add(1, {"outcome": outcome, "stage": stage}))


def partner_circuit(partner_id: str, state: str) -> None:
    # Partners are registered by the platform admin: a short, bounded list.
    _safe(lambda i: i.partner_circuit.set(CIRCUIT_STATES.get(state, 2), {"partner": partner_id}))


def reconciliation_drift(count: int) -> None:
    _safe(lambda i: i.reconciliation_drift.add(count))


def job_run(job: str, outcome: str, seconds: float, progress: Mapping[str, int]) -> None:
    def record(i: Instruments) -> None:
        i.job_runs.add(1, {"job": job, "outcome": outcome})
        i.job_duration.record(seconds, {"job": job})
        for item, count in progress.items():
            i.job_progress.add(count, {"job": job, "item": item})

    _safe(record)


def cosmos_charge(operation: str, charge: float) -> None:
    _safe(lambda i: i.cosmos_charge.record(charge, {"operation": operation}))


# --- setup --------------------------------------------------------------------------------


def configure(process: str) -> None:
    """Set up metrics for the process named ``process`` (``api``, ``ingest``, ``project``,
    ``functions``). On Azure (an Application Insights connection string in the settings) the
    Azure Monitor distro installs the provider; elsewhere a provider with the local
    snapshot reader (and OTLP when configured) becomes the global one."""
    global _local
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    from shared.settings import Settings

    readers: list[Any] = []
    local = LocalAggregation(Settings.from_env().data_dir / SNAPSHOT_DIR, process)
    readers.append(local.reader)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    provider = MeterProvider(metric_readers=readers,
                             resource=Resource.create({"service.name": "accrue", "accrue.process": process}))
    otel.set_meter_provider(provider)
    local.provider = provider
    _local = local


def local() -> "LocalAggregation | None":
    """The local aggregation of this process (None on Azure or when not configured)."""
    return _local


def use_local(aggregation: "LocalAggregation | None") -> None:
    """Make ``aggregation`` this process's (tests, with ``bind`` to its provider)."""
    global _local
    _local = aggregation


def reset_local(data_dir: Path) -> None:
    """Empty the snapshot folder: called once when the local platform starts, before its
    worker processes, so no figure of an earlier run is served."""
    folder = data_dir / SNAPSHOT_DIR
    if folder.is_dir():
        for path in folder.glob("*.json"):
            path.unlink(missing_ok=True)


class LocalAggregation:
    """One process's share of the local ``/metrics``: its reader writes the snapshot file;
    ``exposition`` merges every process's file into Prometheus text."""

    def __init__(self, folder: Path, process: str, export_seconds: float = EXPORT_SECONDS) -> None:
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        from shared.telemetry.snapshots import SnapshotExporter

        assert process and "/" not in process, process
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder, self.process = folder, process
        self.reader = PeriodicExportingMetricReader(SnapshotExporter(folder / f"{process}.json", process),
                                                    export_interval_millis=export_seconds * 1000)
        self.provider: MeterProvider | None = None

    def exposition(self) -> bytes:
        """Prometheus text format of every process's latest snapshot, this one's fresh."""
        from shared.telemetry.snapshots import render

        _gauges(fresh=True)
        self.reader.force_flush(timeout_millis=5000)
        return render(self.folder)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
        else:
            self.reader.shutdown()
