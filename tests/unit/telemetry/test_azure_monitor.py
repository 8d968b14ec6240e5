"""The Azure Monitor setup: off without a connection string, Entra ID from the
authentication string, the distro's HTTP instrumentations off, failures contained.

The distro is never run for real here: it would call Microsoft's endpoints
(settings, statsbeat); its own option parser judges what our options enable."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.identity import ManagedIdentityCredential

from shared.telemetry import azure_monitor

ROOT = Path(__file__).resolve().parents[3]
FAKE = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"


def test_without_a_connection_string_nothing_is_imported_or_set_up() -> None:
    env = {k: v for k, v in os.environ.items() if k != azure_monitor.CONNECTION_STRING}
    code = ("import sys; from shared.telemetry import azure_monitor as m; print(m.configure('api'), "
            "'azure.monitor.opentelemetry' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("raw, expected", [
    ("Authorization=AAD", (True, None)),
    ("Authorization=AAD;ClientId=1b2c3d", (True, "1b2c3d")),
    (" authorization=aad ; clientid=9f ", (True, "9f")),
    ("", (False, None)),
    ("Authorization=Key", (False, None)),
    ("garbage", (False, None)),
])
def test_the_authentication_string_selects_the_managed_identity(raw, expected) -> None:
    assert azure_monitor.managed_identity_client_id({azure_monitor.AUTHENTICATION_STRING: raw}) == expected


def test_the_options_carry_the_connection_string_and_a_managed_identity_credential() -> None:
    env = {azure_monitor.CONNECTION_STRING: FAKE, azure_monitor.AUTHENTICATION_STRING: "Authorization=AAD"}
    options = azure_monitor.distro_options("functions", env)
    assert options["connection_string"] == FAKE
    assert isinstance(options["credential"], ManagedIdentityCredential)
    assert options["resource"].attributes["service.name"] == "accrue"
    assert options["resource"].attributes["accrue.process"] == "functions"
    assert "credential" not in azure_monitor.distro_options("functions", {azure_monitor.CONNECTION_STRING: FAKE})


def test_the_distro_reads_our_options_as_fastapi_and_requests_off_azure_sdk_on() -> None:
    from azure.monitor.opentelemetry._constants import _ALL_SUPPORTED_INSTRUMENTED_LIBRARIES
    from azure.monitor.opentelemetry._utils.configurations import _get_configurations, _is_instrumentation_enabled

    configurations = _get_configurations(**azure_monitor.distro_options("api", {azure_monitor.CONNECTION_STRING: FAKE}))
    enabled = {name for name in _ALL_SUPPORTED_INSTRUMENTED_LIBRARIES if _is_instrumentation_enabled(configurations, name)}
    assert {"fastapi", "requests", "urllib3", "flask", "django"}.isdisjoint(enabled), enabled
    assert {"azure_sdk", "httpx"} <= enabled


def test_a_failing_distro_is_logged_and_the_process_goes_on(monkeypatch, caplog) -> None:
    import azure.monitor.opentelemetry as distro

    def broken(**_: object) -> None:
        raise RuntimeError("no network")

    monkeypatch.setenv(azure_monitor.CONNECTION_STRING, FAKE)
    monkeypatch.setattr(distro, "configure_azure_monitor", broken)
    # Not the real join: with a tracer provider installed by an earlier test it would add a
    # live Azure exporter (retrying a dead endpoint) and Azure SDK spans to the whole session.
    monkeypatch.setattr(azure_monitor, "_join_tracer_provider", lambda provider, options: None)
    with caplog.at_level(logging.ERROR, "accrue.telemetry"):
        assert azure_monitor.configure("api") is False
    assert any(getattr(r, "accrue.error", None) == "RuntimeError" for r in caplog.records)


def test_an_existing_tracer_provider_is_joined_not_replaced(monkeypatch) -> None:
    import azure.monitor.opentelemetry as distro
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    ours = TracerProvider()
    seen: dict[str, object] = {}
    monkeypatch.setenv(azure_monitor.CONNECTION_STRING, FAKE)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: ours)
    monkeypatch.setattr(azure_monitor, "_join_tracer_provider", lambda p, o: seen.update(joined=p))
    monkeypatch.setattr(distro, "configure_azure_monitor",
                        lambda **o: seen.update(traces=os.environ.get("OTEL_TRACES_EXPORTER"), options=o))
    assert azure_monitor.configure("api") is True
    assert seen["joined"] is ours and seen["traces"] == "none"
    assert "OTEL_TRACES_EXPORTER" not in os.environ  # restored after the call
