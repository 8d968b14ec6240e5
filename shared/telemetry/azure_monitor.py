"""Azure Monitor: the ``azure-monitor-opentelemetry`` distro, on Azure only.

What it guarantees:

- Nothing happens unless ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the
  Function App's settings, ``bicep/modules/functionapp.bicep``): locally, and in
  tests, the distro is never imported and nothing leaves the machine.
- Ingestion authenticates with Entra ID when
  ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says ``Authorization=AAD`` (the
  component has local auth off): the app's managed identity, system-assigned, or
  the user-assigned one named by ``ClientId=...``. That is the format the
  Functions host reads too, so one setting serves both.
- One span per HTTP request: our own middleware (``shared.telemetry.tracing``)
  names request spans by route template, so the distro's own FastAPI, Flask,
  Django, requests and urllib/urllib3 instrumentations are off (they would add a
  second server span per request, or a second client span under every Azure SDK
  call). The Azure SDK instrumentation (Cosmos DB, Event Hubs, Key Vault, Blob
  calls as dependencies) and httpx (webhook deliveries, partner calls) stay on.
- It joins the providers the other telemetry modules set up rather than
  replacing them: the OpenTelemetry API refuses a second global provider, so when
  ``tracing`` already set a tracer provider the Azure exporter is added to it,
  and the metrics module takes the Azure reader from ``metric_readers()`` when
  it builds its meter provider. Logs (the OpenTelemetry handler on the root
  logger, next to the JSON one) are the distro's own.
- A failure here is logged and the process goes on without Azure Monitor.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, Mapping

from shared.telemetry.logs import fields

log = logging.getLogger("accrue.telemetry")

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
# The distro's instrumentations (its library names) this platform keeps off; see the docstring.
DISABLED_INSTRUMENTATIONS = ("fastapi", "flask", "django", "requests", "urllib", "urllib3", "psycopg2")
ENABLED_INSTRUMENTATIONS = ("azure_sdk", "httpx")
SERVICE_NAME = "accrue"

_metric_readers_given = False


def connection_string(env: Mapping[str, str] | None = None) -> str | None:
    value = (os.environ if env is None else env).get(CONNECTION_STRING, "").strip()
    return value or None


def managed_identity_client_id(env: Mapping[str, str] | None = None) -> tuple[bool, str | None]:
    """(use Entra ID?, user-assigned client id or None) from the authentication string.

    ``Authorization=AAD`` or ``Authorization=AAD;ClientId=<id>``; anything else
    (or nothing) means no Entra token, which a component with local auth off refuses."""
    raw = (os.environ if env is None else env).get(AUTHENTICATION_STRING, "").strip()
    if not raw:
        return False, None
    pairs: dict[str, str] = {}
    for part in raw.split(";"):
        if "=" in part:
            key, _, value = part.partition("=")
            pairs[key.strip().lower()] = value.strip()
    if pairs.get("authorization", "").upper() != "AAD":
        return False, None
    return True, pairs.get("clientid") or None


def _credential(env: Mapping[str, str] | None = None) -> Any:
    use_entra, client_id = managed_identity_client_id(env)
    if not use_entra:
        return None
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def distro_options(process: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``configure_azure_monitor`` for this process."""
    from opentelemetry.sdk.resources import Resource

    options: dict[str, Any] = {
        "connection_string": connection_string(env),
        "instrumentation_options": {
            **{name: {"enabled": False} for name in DISABLED_INSTRUMENTATIONS},
            **{name: {"enabled": True} for name in ENABLED_INSTRUMENTATIONS},
        },
        "resource": Resource.create({"service.name": SERVICE_NAME, "accrue.process": process}),
        # Our JSON handler formats the console; the distro's handler sends the records.
        "logger_name": "",
    }
    credential = _credential(env)
    if credential is not None:
        options["credential"] = credential
    return options


def metric_readers(env: Mapping[str, str] | None = None) -> list[Any]:
    """The Azure Monitor metric reader for a meter provider being built (empty when not on Azure)."""
    global _metric_readers_given
    if connection_string(env) is None:
        return []
    from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter_options: dict[str, Any] = {"connection_string": connection_string(env)}
    credential = _credential(env)
    if credential is not None:
        exporter_options["credential"] = credential
    _metric_readers_given = True
    return [PeriodicExportingMetricReader(AzureMonitorMetricExporter(**exporter_options))]


@contextlib.contextmanager
def _exporters_off(names: list[str]) -> Iterator[None]:
    """The distro takes ``disable_tracing``/``disable_metrics`` from the standard
    ``OTEL_*_EXPORTER=none`` variables only (its keyword arguments are overwritten),
    so they are set for the call and restored after it."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        for name in names:
            os.environ[name] = "none"
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def configure(process: str) -> bool:
    """Set up Azure Monitor for the process named ``process``; True if it was set up."""
    if connection_string() is None:
        return False
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        options = distro_options(process)
        off: list[str] = []
        tracer_provider = trace.get_tracer_provider()
        if isinstance(tracer_provider, TracerProvider):
            _join_tracer_provider(tracer_provider, options)
            off.append("OTEL_TRACES_EXPORTER")
        if isinstance(metrics.get_meter_provider(), MeterProvider):
            off.append("OTEL_METRICS_EXPORTER")
            if not _metric_readers_given:
                log.warning("a meter provider without the Azure Monitor reader exists: metrics are not exported "
                            "to Application Insights", extra=fields(source=process, error="no-azure-reader"))
        with _exporters_off(off):
            configure_azure_monitor(**options)
        return True
    except Exception as exc:  # noqa: BLE001 - telemetry never stops the platform
        log.error("Azure Monitor could not be set up: %s", type(exc).__name__,
                  extra=fields(source=process, error=type(exc).__name__))
        return False


def _join_tracer_provider(provider: Any, options: dict[str, Any]) -> None:
    """Add the Azure exporter to an existing tracer provider, and send Azure SDK spans to it."""
    from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter_options = {k: options[k] for k in ("connection_string", "credential") if k in options}
    provider.add_span_processor(BatchSpanProcessor(AzureMonitorTraceExporter(**exporter_options)))
    # What the distro's tracing setup would have done: Azure SDK calls as OpenTelemetry spans.
    from azure.core.settings import settings
    from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan

    settings.tracing_implementation = OpenTelemetrySpan
